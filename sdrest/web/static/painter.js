// The input image of img2img, inpainting and upscaling: upload, drag and drop, paste; and the
// inpainting mask painted over it (white = repaint) with mouse, pen or touch (pointer events).

import { readAsDataUrl } from "./api.js";
import { $, say } from "./dom.js";

const MASK_COLOUR = "#ff285a"; // shown half-transparent over the image; sent as white

export class ImageInput {
  constructor(root) {
    this.root = root;
    this.file = $("#init-file", root);
    this.drop = $("#drop-zone", root);
    this.stage = $("#stage", root);
    this.image = $("#init-preview", root);
    this.canvas = $("#mask-canvas", root);
    this.tools = $("#mask-tools", root);
    this.brush = $("#brush-size", root);
    this.eraser = $("#eraser", root);
    this.dataUrl = null;
    this.painting = false;
    this.masked = false;
    this.file.addEventListener("change", () => this.file.files[0] && this.load(this.file.files[0]));
    this.drop.addEventListener("dragover", (event) => { event.preventDefault(); this.drop.classList.add("over"); });
    this.drop.addEventListener("dragleave", () => this.drop.classList.remove("over"));
    this.drop.addEventListener("drop", (event) => {
      event.preventDefault();
      this.drop.classList.remove("over");
      const file = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/"));
      if (file) this.load(file);
    });
    $("#clear-mask", root).addEventListener("click", () => this.clearMask());
    $("#invert-mask", root).addEventListener("click", () => this.invertMask());
    $("#remove-image", root).addEventListener("click", () => this.reset());
    this.eraser.addEventListener("click", () => {
      this.eraser.setAttribute("aria-pressed", String(this.eraser.getAttribute("aria-pressed") !== "true"));
    });
    this.canvas.addEventListener("pointerdown", (event) => this.start(event));
    this.canvas.addEventListener("pointermove", (event) => this.move(event));
    for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
      this.canvas.addEventListener(type, () => { this.painting = false; });
    }
  }

  /** Paste from the clipboard anywhere on the Generate page. */
  acceptPaste(event) {
    const item = [...(event.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (!item) return false;
    event.preventDefault();
    this.load(item.getAsFile());
    return true;
  }

  async load(blob) {
    try {
      await this.setDataUrl(await readAsDataUrl(blob));
    } catch (error) {
      say("image-error", `cannot use this file: ${error.message}`);
    }
  }

  /** Load an image by URL (an output sent here from the gallery). */
  async loadUrl(url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`cannot fetch the image (${response.status})`);
    await this.load(await response.blob());
  }

  setDataUrl(dataUrl) {
    return new Promise((resolve, reject) => {
      this.image.onload = () => {
        this.dataUrl = dataUrl;
        this.canvas.width = this.image.naturalWidth;
        this.canvas.height = this.image.naturalHeight;
        this.masked = false;
        this.stage.hidden = false;
        this.drop.classList.add("has-image");
        say("image-error", "");
        $("#image-size", this.root).textContent = `${this.image.naturalWidth} × ${this.image.naturalHeight}`;
        this.root.dispatchEvent(new CustomEvent("imagechange"));
        resolve();
      };
      this.image.onerror = () => reject(new Error("not an image the browser can read"));
      this.image.src = dataUrl;
    });
  }

  reset() {
    this.dataUrl = null;
    this.image.removeAttribute("src");
    this.stage.hidden = true;
    this.file.value = "";
    this.drop.classList.remove("has-image");
    this.root.dispatchEvent(new CustomEvent("imagechange"));
  }

  setMaskMode(on) {
    this.tools.hidden = !on;
    this.canvas.hidden = !on;
  }

  point(event) {
    const box = this.canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) / box.width) * this.canvas.width,
      y: ((event.clientY - box.top) / box.height) * this.canvas.height,
      scale: this.canvas.width / box.width,
    };
  }

  start(event) {
    if (!this.dataUrl) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.painting = true;
    this.last = this.point(event);
    this.stroke(this.last, this.last, event);
  }

  move(event) {
    if (!this.painting) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const sample of events.length ? events : [event]) {
      const next = this.point(sample);
      this.stroke(this.last, next, sample);
      this.last = next;
    }
  }

  stroke(from, to, event) {
    const context = this.canvas.getContext("2d");
    const pressure = event.pointerType === "pen" && event.pressure > 0 ? event.pressure * 2 : 1;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.lineWidth = Number(this.brush.value) * to.scale * pressure;
    const erasing = this.eraser.getAttribute("aria-pressed") === "true";
    context.globalCompositeOperation = erasing ? "destination-out" : "source-over";
    context.strokeStyle = MASK_COLOUR;
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x + 0.01, to.y);
    context.stroke();
    if (!erasing) this.masked = true;
  }

  clearMask() {
    this.canvas.getContext("2d").clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.masked = false;
  }

  invertMask() {
    const copy = document.createElement("canvas");
    copy.width = this.canvas.width;
    copy.height = this.canvas.height;
    copy.getContext("2d").drawImage(this.canvas, 0, 0);
    const context = this.canvas.getContext("2d");
    context.globalCompositeOperation = "source-over";
    context.fillStyle = MASK_COLOUR;
    context.fillRect(0, 0, this.canvas.width, this.canvas.height);
    context.globalCompositeOperation = "destination-out";
    context.drawImage(copy, 0, 0);
    context.globalCompositeOperation = "source-over";
    this.masked = true;
  }

  /** The mask as the server wants it: white where to repaint, black elsewhere, image-sized. */
  maskDataUrl() {
    const out = document.createElement("canvas");
    out.width = this.canvas.width;
    out.height = this.canvas.height;
    const context = out.getContext("2d");
    // Painted pixels (whatever their colour on screen) become white, the rest black.
    context.drawImage(this.canvas, 0, 0);
    context.globalCompositeOperation = "source-in";
    context.fillStyle = "#fff";
    context.fillRect(0, 0, out.width, out.height);
    context.globalCompositeOperation = "destination-over";
    context.fillStyle = "#000";
    context.fillRect(0, 0, out.width, out.height);
    return out.toDataURL("image/png");
  }
}
