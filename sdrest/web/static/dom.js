// Small DOM helpers shared by the pages.

/** An element: ``h("button", {type: "button", onclick}, "Cancel")``. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key in element && typeof value !== "string") element[key] = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Show ``message`` in the error line ``target`` (an element or its id); "" clears it. */
export function say(target, message) {
  const element = typeof target === "string" ? document.getElementById(target) : target;
  if (element) element.textContent = message || "";
}

/** Put a server error next to the control it names (``field``), else in ``fallback``. */
export function showError(form, error, fallback) {
  clearFieldErrors(form);
  const control = error.field ? findControl(form, error.field) : null;
  if (control) {
    const note = h("p", { class: "error field-error", role: "alert" }, error.message);
    control.setAttribute("aria-invalid", "true");
    control.closest("label, .field")?.after(note);
    control.focus();
    say(fallback, "");
  } else {
    say(fallback, error.message);
  }
}

const FIELD_ALIASES = {
  "sample_params.sample_steps": "steps",
  "sample_params.sample_method": "sampler",
  "sample_params.scheduler": "scheduler",
  "sample_params.guidance.txt_cfg": "cfg_scale",
  "model": "model",
  "model_name": "model",
  "init_image": "image",
  "image": "image",
  "mask_image": "image",
  "hires.scale": "hires_scale",
  "hires.denoising_strength": "hires_denoise",
  "hires.steps": "hires_steps",
  "esrgan_model": "upscaler",
};

function findControl(form, field) {
  const plain = field.replace(/\[\d+\].*$/, "");
  const name = FIELD_ALIASES[field] || FIELD_ALIASES[plain] || plain.split(".").pop();
  if (plain === "lora" || field.startsWith("lora")) return form.querySelector(".lora-weight, #lora-add");
  return form.elements?.namedItem?.(name) || null;
}

export function clearFieldErrors(form) {
  for (const note of form.querySelectorAll(".field-error")) note.remove();
  for (const bad of form.querySelectorAll("[aria-invalid]")) bad.removeAttribute("aria-invalid");
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(value < 10 && unit ? 1 : 0)} ${units[unit]}`;
}

export function formatTime(seconds) {
  if (!seconds) return "–";
  return new Date(seconds * 1000).toLocaleString();
}

/** A short-lived status line at the bottom of the screen (screen readers hear it). */
export function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 3500);
}

/** Copy text: the clipboard API where the page may use it, else a selected text field. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const field = h("textarea", { "aria-hidden": "true", class: "offscreen" }, text);
    document.body.append(field);
    field.select();
    document.execCommand("copy");
    field.remove();
  }
}
