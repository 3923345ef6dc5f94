// The Generate page: txt2img, img2img, inpainting and upscaling; the request it builds, the job
// it follows (progress, live preview, cancel) and the images that come back.

import { api, ApiError } from "./api.js";
import { $, h, say, showError, clearFieldErrors } from "./dom.js";
import { ImageInput } from "./painter.js";
import { jobs, remember, subscribe, fetchJob, cancelJob, isLive } from "./live.js";
import {
  loadOptions, updateSizePresets, matchSizePreset, applySizePreset, loraRow, loras, catalog, applyTemplate,
} from "./options.js";
import { openViewer } from "./viewer.js";

const FORM_KEY = "sdrest-generate-form";
const form = $("#gen-form");
const input = new ImageInput($("#image-input"));
let following = null; // the job id this page shows progress for
let lastSeed = null;
let previewUrl = null;
const shownResults = new Set();

export function mode() { return form.elements.mode.value; }

export function setMode(value) {
  form.elements.mode.value = value;
  const needsImage = value !== "txt2img";
  $("#image-input").hidden = !needsImage;
  input.setMaskMode(value === "inpaint");
  form.querySelector(".only-gen").hidden = value === "upscale";
  form.querySelector(".only-upscale").hidden = value !== "upscale";
  for (const el of form.querySelectorAll(".only-img")) el.hidden = value !== "img2img" && value !== "inpaint";
  $("#generate-button").textContent = value === "upscale" ? "Upscale" : "Generate";
  save();
}

// -- the form's content survives reloads and sign-ins -----------------------------------------

function save() {
  const values = {};
  for (const element of form.elements) {
    if (!element.name || element.type === "file") continue;
    if (element.type === "radio") { if (element.checked) values[element.name] = element.value; continue; }
    values[element.name] = element.type === "checkbox" ? element.checked : element.value;
  }
  values.loras = loras();
  values.seedLock = $("#seed-lock").checked;
  localStorage.setItem(FORM_KEY, JSON.stringify(values));
}

function restore() {
  let values;
  try { values = JSON.parse(localStorage.getItem(FORM_KEY) || "null"); } catch { values = null; }
  if (!values) return false;
  for (const [name, value] of Object.entries(values)) {
    const element = form.elements.namedItem(name);
    if (!element || name === "mode") continue;
    if (element.type === "checkbox") element.checked = Boolean(value);
    else if (element instanceof HTMLSelectElement && ![...element.options].some((o) => o.value === value)) {
      element.dataset.wanted = value; // options arrive later
    } else element.value = value;
  }
  for (const lora of values.loras || []) $("#lora-list").append(loraRow(lora.path, lora.multiplier));
  $("#seed-lock").checked = Boolean(values.seedLock);
  setMode(values.mode || "txt2img");
  return true;
}

function settleWanted() {
  for (const element of form.querySelectorAll("select[data-wanted]")) {
    if ([...element.options].some((o) => o.value === element.dataset.wanted)) element.value = element.dataset.wanted;
    delete element.dataset.wanted;
  }
}

// -- building and sending the request ---------------------------------------------------------

function number(name) {
  const value = form.elements[name].value.trim();
  return value === "" ? undefined : Number(value);
}

function generationBody() {
  const f = form.elements;
  const body = {
    prompt: f.prompt.value,
    negative_prompt: f.negative_prompt.value,
    width: number("width"),
    height: number("height"),
    batch_count: number("batch_count"),
    seed: Number(f.seed.value.trim() || -1),
    sample_params: { sample_steps: number("steps"), guidance: { txt_cfg: number("cfg_scale") } },
  };
  if (!Number.isInteger(body.seed)) throw new ApiError("the seed is a whole number (-1: random)", 400, "seed");
  if (f.model.value) body.model = f.model.value;
  if (f.sampler.value) body.sample_params.sample_method = f.sampler.value;
  if (f.scheduler.value) body.sample_params.scheduler = f.scheduler.value;
  const chosen = loras();
  if (chosen.length) body.lora = chosen;
  if (f.hires.checked) {
    const upscaler = f.hires_upscaler.value;
    body.hires = {
      enabled: true,
      scale: number("hires_scale"),
      steps: number("hires_steps") || 0,
      denoising_strength: number("hires_denoise"),
      upscaler: upscaler.startsWith("model:") ? "model" : upscaler,
      upscaler_model: upscaler.startsWith("model:") ? upscaler.slice(6) : "",
    };
  }
  if (mode() === "img2img" || mode() === "inpaint") {
    if (!input.dataUrl) throw new ApiError("choose an input image first", 400, "image");
    body.init_image = input.dataUrl;
    body.strength = number("strength");
    if (mode() === "inpaint") {
      if (!input.masked) throw new ApiError("paint over the part of the image to repaint", 400, "image");
      body.mask_image = input.maskDataUrl();
    }
  }
  return body;
}

async function submit(event) {
  event?.preventDefault();
  clearFieldErrors(form);
  say("gen-error", "");
  const button = $("#generate-button");
  button.disabled = true;
  try {
    if (mode() === "upscale") await upscale();
    else {
      const body = generationBody();
      const answer = await api("/sdcpp/v1/img_gen", { method: "POST", body });
      follow(remember({ id: answer.id, status: "queued", prompt: body.prompt, local: true,
        queued_time: Date.now() / 1000, type: "generation" }).id);
    }
  } catch (error) {
    showError(form, error, "gen-error");
  } finally {
    button.disabled = false;
  }
}

async function upscale() {
  if (!input.dataUrl) throw new ApiError("choose an image to upscale first", 400, "image");
  const upscaler = form.elements.upscaler.value;
  if (upscaler !== "resample") {
    const answer = await api("/api/generate/upscale", {
      method: "POST",
      body: { image: input.dataUrl, esrgan_model: upscaler, repeats: Number(form.elements.factor.value) >= 4 ? 2 : 1 },
    });
    follow(remember({ id: answer.request_id, status: "queued", prompt: `upscale with ${upscaler}`,
      local: true, queued_time: Date.now() / 1000, type: "upscale" }).id);
    return;
  }
  const factor = Number(form.elements.factor.value);
  const image = $("#init-preview");
  const answer = await api("/api/image/resize", {
    method: "POST",
    body: { image: input.dataUrl, width: Math.round(image.naturalWidth * factor),
      height: Math.round(image.naturalHeight * factor), mode: "stretch" },
  });
  const url = `data:${answer.mime_type};base64,${answer.image}`;
  showResult({ url, thumb: url, width: answer.width, height: answer.height, label: `Upscaled ${answer.width} × ${answer.height}` });
}

// -- following a job -------------------------------------------------------------------------

function follow(id) {
  following = id;
  $("#progress-box").hidden = false;
  render(jobs.get(id));
}

function describe(job) {
  if (job.status === "queued") return job.position ? `Queued, position ${job.position}` : "Queued";
  if (job.phase === "loading") return "Loading the model…";
  if (job.total_steps) {
    const parts = [`Step ${job.current_step || 0} of ${job.total_steps}`];
    if (job.speed) parts.push(`${Number(job.speed).toFixed(2)} steps/s`);
    if (job.time_remaining) parts.push(`about ${Math.ceil(job.time_remaining / 1000)} s left`);
    if (job.phase && job.phase !== "sampling") parts.push(job.phase);
    return parts.join(" · ");
  }
  return job.phase ? `${job.phase}…` : "Working…";
}

async function showPreview(job) {
  if (!job.preview_url || job.preview_url === previewUrl) return;
  previewUrl = job.preview_url;
  try {
    const response = await api(job.preview_url, { raw: true });
    const blob = await response.blob();
    const img = $("#live-preview");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.hidden = following !== job.id || !isLive(job);
  } catch { /* no preview for this step: the next one will come */ }
}

function render(job) {
  if (!job || job.id !== following) return;
  const live = isLive(job);
  $("#progress-box").hidden = !live;
  $("#progress").value = job.status === "completed" ? 1 : job.progress || 0;
  $("#progress-text").textContent = describe(job);
  if (live) showPreview(job);
  else $("#live-preview").hidden = true;
  if (job.status === "completed") {
    if (!job.full) { fetchJob(job.id).catch(() => {}); return; }
    const seed = job.parameters?.seed ?? job.outputs?.[0]?.seed;
    if (seed !== undefined) {
      lastSeed = seed;
      if ($("#seed-lock").checked && form.elements.seed.value.trim() === "-1") { form.elements.seed.value = String(seed); save(); }
    }
    for (const output of job.outputs || []) {
      const key = `${job.id}/${output.filename}`;
      if (shownResults.has(key)) continue;
      shownResults.add(key);
      showResult({ url: output.url, thumb: output.thumbnail_url || `${output.url}?thumb=true&size=320`,
        width: output.width, height: output.height, job, index: output.index,
        label: `Result ${output.width} × ${output.height}, seed ${output.seed}` });
    }
  } else if (job.status === "failed" || job.status === "cancelled") {
    const why = job.error?.message || "";
    say("gen-error", job.status === "cancelled" ? "Cancelled." : `The job failed: ${why || "no reason given"}`);
    following = null;
  }
}

function showResult({ url, thumb, label, job, index }) {
  $("#results-empty").hidden = true;
  const open = job ? () => openViewer(job, index) : () => window.open(url, "_blank");
  const button = h("button", { type: "button", class: "thumb", "aria-label": `Open ${label}`, onclick: open },
    h("img", { src: thumb, alt: label, loading: "lazy" }));
  $("#results").prepend(button);
}

// -- what the gallery sends here ---------------------------------------------------------------

/** Copy a finished job's settings into the form (the seed too, unless the seed is locked). */
export function useSettings(job) {
  const f = form.elements;
  const p = job.parameters || {};
  if (job.prompt !== undefined) f.prompt.value = job.prompt;
  if (job.negative_prompt !== undefined) f.negative_prompt.value = job.negative_prompt;
  if ([...f.model.options].some((o) => o.value === job.model)) f.model.value = job.model;
  const set = (name, value) => { if (value !== undefined && value !== null) f[name].value = value; };
  set("width", p.width); set("height", p.height); set("steps", p.steps); set("cfg_scale", p.cfg_scale);
  set("batch_count", p.batch_count); set("strength", p.strength);
  set("sampler", p.sampling_method || ""); set("scheduler", p.scheduler || "");
  if (!$("#seed-lock").checked && p.seed !== undefined) f.seed.value = p.seed;
  $("#lora-list").replaceChildren(...(p.lora || []).map((l) => loraRow(l.path, l.multiplier)));
  f.hires.checked = p.hires_scale !== undefined;
  if (p.hires_scale !== undefined) f.hires_scale.value = p.hires_scale;
  matchSizePreset(form);
  if (job.type === "generation") setMode("txt2img");
  save();
  location.hash = "#generate";
}

export async function sendImage(url, target) {
  setMode(target);
  location.hash = "#generate";
  await input.loadUrl(url);
}

// -- wiring ----------------------------------------------------------------------------------

/** Wire the form; ``queueLoaded`` settles once the queue is known (to re-attach to a job). */
export async function initGenerate(queueLoaded) {
  if (!restore()) setMode(mode());
  form.addEventListener("submit", submit);
  form.addEventListener("input", save);
  form.addEventListener("change", (event) => {
    if (event.target.name === "mode") setMode(event.target.value);
    if (event.target.name === "model") updateSizePresets(form);
    if (event.target.name === "width" || event.target.name === "height") matchSizePreset(form);
    save();
  });
  $("#size-preset").addEventListener("change", () => { applySizePreset(form); save(); });
  $("#prompt-template").addEventListener("change", () => {
    applyTemplate(form).catch((error) => say("gen-error", `cannot read the template: ${error.message}`));
  });
  $("#lora-add").addEventListener("click", () => {
    const name = $("#lora-pick").value;
    if (!name) { say("gen-error", "pick a LoRA in the list first"); return; }
    if (!document.querySelector(`#lora-list [data-name="${CSS.escape(name)}"]`)) $("#lora-list").append(loraRow(name));
    save();
  });
  $("#lora-list").addEventListener("click", () => setTimeout(save));
  $("#seed-random").addEventListener("click", () => { form.elements.seed.value = "-1"; save(); });
  $("#seed-reuse").addEventListener("click", () => {
    if (lastSeed === null) { say("gen-error", "no image yet: generate one first"); return; }
    form.elements.seed.value = String(lastSeed);
    save();
  });
  $("#cancel").addEventListener("click", async () => {
    if (!following) return;
    try { await cancelJob(following); } catch (error) { say("gen-error", error.message); }
  });
  $("#image-input").addEventListener("imagechange", () => {
    const image = $("#init-preview");
    if (input.dataUrl && mode() !== "upscale") {
      form.elements.width.value = Math.max(16, Math.round(image.naturalWidth / 16) * 16);
      form.elements.height.value = Math.max(16, Math.round(image.naturalHeight / 16) * 16);
      matchSizePreset(form);
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !$("#page-generate").hidden) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  document.addEventListener("paste", (event) => {
    if ($("#page-generate").hidden) return;
    const hasImage = [...(event.clipboardData?.items || [])].some((i) => i.type.startsWith("image/"));
    if (!hasImage) return;
    if (mode() === "txt2img") setMode("img2img");
    input.acceptPaste(event);
  });
  subscribe((job) => render(job || (following && jobs.get(following))));
  try {
    await loadOptions(form);
    settleWanted();
    updateSizePresets(form);
  } catch (error) {
    say("gen-error", `cannot list the models: ${error.message}`);
  }
  // Re-attach: show the progress of the newest live job after a reload.
  await queueLoaded;
  const live = [...jobs.values()].filter(isLive).sort((a, b) => (b.queued_time || 0) - (a.queued_time || 0));
  if (live.length) follow(live[0].id);
  return catalog;
}
