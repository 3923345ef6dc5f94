// What the Generate form offers: models, LoRAs, samplers, schedulers, upscalers and the size
// presets of the model's architecture, read from the server once per page load.

import { api } from "./api.js";
import { $, h } from "./dom.js";

const GENERATORS = new Set(["checkpoint", "diffusion_model", "preset"]);
const UPSCALERS = new Set(["upscaler", "esrgan"]); // the registry's name, and the spec's
const SIZES = {
  sd1: [[512, 512], [512, 768], [768, 512], [640, 640], [384, 384]],
  sd2: [[768, 768], [512, 512], [768, 1024], [1024, 768]],
  large: [[1024, 1024], [832, 1216], [1216, 832], [896, 1152], [1152, 896], [768, 1344], [1344, 768], [512, 512]],
};

export const catalog = { models: [], loras: [], defaultModel: "", limits: {}, capabilities: null };

function sizeFamily(architecture) {
  const arch = (architecture || "").toLowerCase();
  if (arch.startsWith("sd1") || arch === "sd15") return "sd1";
  if (arch.startsWith("sd2")) return "sd2";
  return "large";
}

/** Fill the form's pickers; errors go to the form's error line. */
export async function loadOptions(form) {
  const [listing, capabilities] = await Promise.all([
    api("/api/models?limit=0&sort_by=name"),
    api("/sdcpp/v1/capabilities").catch(() => null),
  ]);
  catalog.models = listing.models;
  catalog.capabilities = capabilities;
  catalog.defaultModel = capabilities?.model?.name || listing.loaded_model || "";
  catalog.limits = capabilities?.limits || {};
  catalog.loras = capabilities?.loras?.map((l) => l.name)
    || listing.models.filter((m) => m.type === "lora").map((m) => m.name);

  const model = form.elements.model;
  const kept = model.value;
  const generators = listing.models.filter((m) => GENERATORS.has(m.type));
  const label = catalog.defaultModel ? `Server default (${catalog.defaultModel})` : "Server default";
  model.replaceChildren(new Option(label, ""), ...generators.map((m) => {
    const option = new Option(`${m.name}${m.type === "preset" ? " (preset)" : ""}`, m.name);
    option.dataset.architecture = m.architecture || "";
    return option;
  }));
  if (kept && generators.some((m) => m.name === kept)) model.value = kept;

  fillTemplates(listing.models);
  const pick = $("#lora-pick");
  pick.replaceChildren(new Option(catalog.loras.length ? "Pick a LoRA…" : "No LoRAs in the models folder", ""),
    ...catalog.loras.map((name) => new Option(name, name)));

  fillSelect($("#sampler"), capabilities?.samplers || [], "Model default");
  fillSelect($("#scheduler"), capabilities?.schedulers || [], "Model default");
  const upscalers = listing.models.filter((m) => UPSCALERS.has(m.type) && m.valid !== false);
  fillSelect($("#upscaler"), upscalers.map((m) => m.name), null, [["resample", "Resample (Lanczos)"]]);
  const hires = $("#hires-upscaler");
  for (const m of upscalers) {
    if (![...hires.options].some((o) => o.value === `model:${m.name}`)) hires.add(new Option(`${m.name} (model)`, `model:${m.name}`));
  }
  applyLimits(form);
  updateSizePresets(form);
}

function fillSelect(select, names, emptyLabel, fixed = []) {
  const kept = select.value;
  const options = fixed.map(([value, text]) => new Option(text, value));
  if (emptyLabel !== null) options.unshift(new Option(emptyLabel, ""));
  select.replaceChildren(...options, ...names.map((name) => new Option(name, name)));
  if ([...select.options].some((o) => o.value === kept)) select.value = kept;
}

function applyLimits(form) {
  const limits = catalog.limits;
  const set = (name, attribute, value) => { if (value) form.elements[name].setAttribute(attribute, value); };
  set("width", "max", limits.max_width);
  set("height", "max", limits.max_height);
  set("steps", "max", limits.max_sample_steps);
  set("batch_count", "max", limits.max_batch_count);
  if (limits.max_prompt_chars) form.elements.prompt.maxLength = limits.max_prompt_chars;
}

/** The architecture of the chosen model (the default model's when none is chosen). */
export function architectureOf(form) {
  const chosen = form.elements.model.selectedOptions[0];
  if (chosen && chosen.value) return chosen.dataset.architecture;
  return catalog.capabilities?.model?.architecture || "";
}

export function updateSizePresets(form) {
  const select = $("#size-preset");
  const sizes = SIZES[sizeFamily(architectureOf(form))];
  select.replaceChildren(new Option("Custom", ""), ...sizes.map(([w, h]) => new Option(`${w} × ${h}`, `${w}x${h}`)));
  matchSizePreset(form);
}

export function matchSizePreset(form) {
  const value = `${form.elements.width.value}x${form.elements.height.value}`;
  const select = $("#size-preset");
  select.value = [...select.options].some((o) => o.value === value) ? value : "";
}

export function applySizePreset(form) {
  const value = $("#size-preset").value;
  if (!value) return;
  const [width, height] = value.split("x");
  form.elements.width.value = width;
  form.elements.height.value = height;
}

/** One LoRA row: its name, a weight box and a remove button. */
export function loraRow(name, weight = 1) {
  const row = h("li", { class: "lora-row", dataset: { name } },
    h("span", { class: "lora-name" }, name),
    h("label", { class: "inline" }, "Weight",
      h("input", { class: "lora-weight", type: "number", step: "0.05", min: "-5", max: "5", value: String(weight),
        "aria-label": `Weight of ${name}` })),
    h("button", { type: "button", "aria-label": `Remove ${name}`, onclick: () => row.remove() }, "Remove"));
  return row;
}

export function loras() {
  return [...document.querySelectorAll("#lora-list .lora-row")].map((row) => ({
    path: row.dataset.name,
    multiplier: Number(row.querySelector(".lora-weight").value || 1),
  }));
}

// -- prompt templates: prompts/ and neg_prompts/ of the models folder ---------------------------

const TEMPLATE_TYPES = { prompts: "Prompts", neg_prompts: "Negative prompts" };

function fillTemplates(models) {
  const select = $("#prompt-template");
  const groups = Object.entries(TEMPLATE_TYPES).map(([type, label]) => {
    const found = models.filter((m) => m.type === type && m.valid !== false);
    if (!found.length) return null;
    return h("optgroup", { label }, found.map((m) => new Option(m.name, `${type}:${m.id}`)));
  }).filter(Boolean);
  select.replaceChildren(new Option("Insert a template…", ""), ...groups);
  $("#template-box").hidden = !groups.length;
}

/** The text of a template file: plain text, or a JSON string or {prompt | text} object. */
function templateText(content) {
  try {
    const parsed = JSON.parse(content);
    if (typeof parsed === "string") return parsed;
    if (parsed && typeof parsed === "object") return parsed.prompt || parsed.negative_prompt || parsed.text || content;
  } catch { /* plain text */ }
  return content.trim();
}

/** Put the chosen template into the prompt it is for: ``{prompt}`` in it stands for what is
 * typed already; without it, the template is added after what is typed. */
export async function applyTemplate(form) {
  const select = $("#prompt-template");
  const [type, id] = select.value.split(/:(.*)/s);
  select.value = "";
  if (!id) return;
  const answer = await api(`/api/models/${encodeURIComponent(id)}?type=${type}`);
  const text = templateText(answer.model.content || "");
  const field = type === "neg_prompts" ? form.elements.negative_prompt : form.elements.prompt;
  const typed = field.value.trim();
  field.value = text.includes("{prompt}") ? text.replaceAll("{prompt}", typed)
    : typed ? `${typed}, ${text}` : text;
  field.dispatchEvent(new Event("input", { bubbles: true }));
}
