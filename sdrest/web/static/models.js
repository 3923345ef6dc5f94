// The Models page: every file in the models folder by type, with search; load, unload, hash,
// rescan, quantize and download from the hub (jobs like any other, their progress live here).

import { api } from "./api.js";
import { $, h, say, toast, formatBytes, showError, clearFieldErrors } from "./dom.js";
import { jobs, remember, subscribe, isLive, fetchJob } from "./live.js";

const LOADABLE = new Set(["checkpoint", "diffusion_model", "preset"]);
const QUANT_TYPES = ["q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "q6_k", "q5_k", "q4_k", "q3_k", "q2_k", "f16", "bf16"];
let models = [];
let canManage = false;
let visible = false;
const conversions = new Map(); // model id -> convert job id
const downloads = []; // download job ids started from this page, newest first
let searchTimer = null;

export function setModelPermissions(permissions) {
  canManage = permissions.includes("models:manage");
  $("#models-refresh").hidden = !canManage;
  $("#model-download-box").hidden = !canManage;
}

async function load() {
  const type = $("#models-type").value;
  const search = $("#models-search").value.trim();
  const query = new URLSearchParams({ limit: "0", sort_by: "type" });
  if (type) query.set("type", type);
  if (search) query.set("search", search);
  try {
    const [listing, stats, system] = await Promise.all([
      api(`/api/models?${query}`), api("/api/models/stats"), api("/api/system").catch(() => null),
    ]);
    models = listing.models;
    const memory = system?.system;
    const parts = [`${stats.total_models} models, ${formatBytes(stats.total_size)} on disk`,
      `loaded: ${stats.loaded_model || "none"}`];
    if (memory) {
      parts.push(`server memory ${formatBytes(memory.process_rss)}`,
        `free ${formatBytes(memory.memory_available)} of ${formatBytes(memory.memory_total)}`);
    }
    $("#models-summary").textContent = parts.join(" · ");
    say("models-error", "");
    render();
  } catch (error) {
    say("models-error", error.message);
  }
}

async function loadTypes() {
  try {
    const answer = await api("/api/models/types");
    const select = $("#models-type");
    const kept = select.value;
    select.replaceChildren(new Option("All types", ""),
      ...answer.details.filter((t) => t.count).map((t) => new Option(`${t.type} (${t.count})`, t.type)));
    select.value = kept;
  } catch { /* the filter keeps "All types" */ }
}

function action(label, name, handler) {
  return h("button", { type: "button", "aria-label": `${label} ${name}`, onclick: handler }, label);
}

async function run(promise, success) {
  try {
    const answer = await promise;
    toast(success(answer));
    say("models-error", "");
    await load();
  } catch (error) {
    say("models-error", error.message);
  }
}

function conversionCell(model) {
  const id = conversions.get(model.id);
  const job = id && jobs.get(id);
  if (job && isLive(job)) {
    return h("div", {}, h("progress", { max: 1, value: job.progress || 0, "aria-label": `Quantizing ${model.name}` }),
      ` ${job.status === "queued" ? "queued" : "quantizing"}`);
  }
  if (job && job.status === "completed") return h("div", { class: "ok small" }, `quantized: ${(job.model_files || []).join(", ") || "done"}`);
  if (job && job.error) return h("div", { class: "error small" }, job.error.message);
  return null;
}

function row(model) {
  const id = encodeURIComponent(model.id);
  const actions = [];
  const usable = model.valid !== false;
  if (canManage && usable && LOADABLE.has(model.type)) {
    actions.push(model.loaded
      ? action("Unload", model.name, () => run(api(`/api/models/${id}/unload`, { method: "POST" }), () => `${model.name} unloaded`))
      : action("Load", model.name, () => run(api(`/api/models/${id}/load`, { method: "POST" }), () => `${model.name} loaded`)));
  }
  if (canManage) {
    actions.push(action("Hash", model.name, () => run(api("/api/models/hash", { method: "POST", body: { model_name: model.id } }),
      (answer) => `${model.name}: ${answer.hashes[0]?.short_hash || "hashed"}`)));
  }
  if (canManage && usable && (model.type === "checkpoint" || model.type === "diffusion_model")) {
    const select = h("select", { "aria-label": `Quantization type for ${model.name}` }, QUANT_TYPES.map((q) => new Option(q, q)));
    actions.push(h("span", { class: "nowrap" }, select, " ", action("Quantize", model.name, () => quantize(model, select.value))));
  }
  const state = model.loaded ? h("strong", { class: "ok" }, "loaded")
    : model.valid === false ? h("span", { class: "error", title: model.error || "" }, `invalid: ${model.error || "unreadable"}`)
    : h("span", { class: "muted" }, "on disk");
  return h("tr", { dataset: { model: model.id } },
    h("td", {}, h("div", {}, model.name), h("div", { class: "muted small mono" }, model.path),
      model.short_hash ? h("div", { class: "muted small mono" }, `#${model.short_hash}`) : null),
    h("td", {}, model.type), h("td", {}, model.architecture || "–"), h("td", { class: "nowrap" }, formatBytes(model.size)),
    h("td", {}, state, conversionCell(model)),
    h("td", {}, h("div", { class: "actions" }, actions)));
}

async function quantize(model, type) {
  try {
    const answer = await api("/api/models/convert", { method: "POST", body: { model_name: model.id, quantization_type: type } });
    remember({ id: answer.request_id, status: "queued", type: "convert", prompt: `quantize ${model.name} to ${type}`,
      local: true, queued_time: Date.now() / 1000 });
    conversions.set(model.id, answer.request_id);
    toast(`Quantizing ${model.name} to ${type}: ${answer.output_path}`);
    say("models-error", "");
    render();
  } catch (error) {
    say("models-error", `${model.name}: ${error.message}`);
  }
}

/** The body of POST /api/models/download from the form (files: comma-separated). */
function downloadBody(form) {
  const values = Object.fromEntries(new FormData(form));
  const body = { repo: values.repo.trim() };
  const files = (values.files || "").split(",").map((f) => f.trim()).filter(Boolean);
  if (files.length) body.files = files;
  if (values.revision?.trim()) body.revision = values.revision.trim();
  if (values.all) body.all = true;
  return body;
}

async function download(event) {
  event.preventDefault();
  const form = event.target;
  clearFieldErrors(form);
  const body = downloadBody(form);
  try {
    const answer = await api("/api/models/download", { method: "POST", body });
    remember({ id: answer.job_id, status: "queued", type: "download", model: answer.repo, local: true,
      queued_time: Date.now() / 1000 });
    downloads.unshift(answer.job_id);
    toast(`Downloading from ${answer.repo}`);
    say("download-error", "");
    renderDownloads();
  } catch (error) {
    showError(form, error, "download-error");
  }
}

function downloadItem(id) {
  const job = jobs.get(id) || { id, status: "queued" };
  const name = job.model || id;
  let state;
  if (isLive(job)) {
    const done = job.total_steps ? ` ${formatBytes(job.current_step || 0)} of ${formatBytes(job.total_steps)}` : "";
    state = [h("progress", { max: 1, value: job.progress || 0, "aria-label": `Downloading ${name}` }),
      ` ${job.status === "queued" ? "queued" : "downloading"}${done}`];
  } else if (job.status === "completed") {
    state = h("span", { class: "ok" }, `done: ${(job.model_files || []).join(", ") || "files registered"}`);
  } else {
    state = h("span", { class: "error" }, job.error?.message || job.status);
  }
  return h("li", { dataset: { job: id } }, h("strong", {}, name), " ", state);
}

function renderDownloads() {
  $("#downloads").replaceChildren(...downloads.map(downloadItem));
}

function render() {
  renderDownloads();
  if (!visible) return;
  $("#models-rows").replaceChildren(...models.map(row));
  if (!models.length) $("#models-rows").append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No models match.")));
}

export function initModels() {
  $("#models-type").addEventListener("change", load);
  $("#models-search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(load, 200); });
  $("#models-refresh").addEventListener("click", () => run(api("/api/models/refresh", { method: "POST" }),
    (answer) => `Rescanned: ${answer.models_found} models (${answer.models_updated} new or changed, ${answer.models_removed} removed)`));
  $("#model-download").addEventListener("submit", download);
  subscribe((job) => {
    if (!job || (job.type !== "convert" && job.type !== "download")) return;
    if (job.type === "download" && job.status === "completed" && !job.full) fetchJob(job.id).catch(() => {});
    render();
    if (job.status === "completed") load();
  });
  document.addEventListener("sdrest:system", () => { if (visible) load(); });
}

export async function showModels() {
  visible = true;
  await Promise.all([loadTypes(), load()]);
}

export function hideModels() { visible = false; }
