// The full view of one output image: its parameters and what can be done with it.

import { $, h, say, copyText, toast, formatTime } from "./dom.js";
import { deleteJob, fetchJob } from "./live.js";

let current = null; // { job, output }

const SHOWN = [
  ["Prompt", (j) => j.prompt], ["Negative prompt", (j) => j.negative_prompt], ["Model", (j) => j.model],
  ["Size", (j, o) => `${o.width} × ${o.height}`], ["Seed", (j, o) => o.seed ?? j.parameters?.seed],
  ["Steps", (j) => j.parameters?.steps], ["CFG scale", (j) => j.parameters?.cfg_scale],
  ["Sampler", (j) => j.parameters?.sampling_method || (j.parameters?.steps ? "model default" : undefined)],
  ["Scheduler", (j) => j.parameters?.scheduler || (j.parameters?.steps ? "model default" : undefined)],
  ["Strength", (j) => (j.type === "generation" ? undefined : j.parameters?.strength)],
  ["LoRA", (j) => (j.parameters?.lora || []).map((l) => `${l.path} (${l.multiplier})`).join(", ") || undefined],
  ["Hires fix", (j) => (j.parameters?.hires_scale ? `${j.parameters.hires_scale}×` : undefined)],
  ["Upscaler", (j) => j.parameters?.esrgan_model],
  ["Job", (j) => j.id], ["Owner", (j) => j.owner || undefined], ["Finished", (j) => formatTime(j.end_time)],
];

/** Open the viewer on output ``index`` of ``job`` (its full document is fetched first). */
export async function openViewer(job, index = 0) {
  const dialog = $("#viewer");
  say("viewer-error", "");
  try {
    if (!job.full) job = await fetchJob(job.id);
  } catch (error) {
    say("viewer-error", error.message);
  }
  const output = (job.outputs || []).find((o) => o.index === index) || (job.outputs || [])[0];
  if (!output) return;
  current = { job, output };
  $("#viewer-image").src = output.url;
  $("#viewer-image").alt = `Output ${output.filename} of ${job.prompt || job.id}`;
  $("#viewer-title").textContent = job.prompt ? job.prompt.slice(0, 80) : `Image ${output.filename}`;
  const download = $("#viewer-download");
  download.href = output.url;
  download.setAttribute("download", `${job.id}-${output.filename}`);
  $("#viewer-params").replaceChildren(...SHOWN.flatMap(([name, read]) => {
    const value = read(job, output);
    return value === undefined || value === null || value === "" ? [] : [h("dt", {}, name), h("dd", {}, String(value))];
  }));
  const generation = job.type === "generation";
  $("#viewer-use").hidden = !generation;
  if (!dialog.open) dialog.showModal();
}

export function initViewer({ useSettings, sendImage }) {
  const dialog = $("#viewer");
  const close = () => dialog.close();
  $("#viewer-copy-seed").addEventListener("click", async () => {
    const seed = current?.output.seed ?? current?.job.parameters?.seed;
    await copyText(String(seed));
    toast(`Seed ${seed} copied`);
  });
  $("#viewer-use").addEventListener("click", () => { useSettings(current.job); close(); });
  for (const [id, target] of [["viewer-img2img", "img2img"], ["viewer-inpaint", "inpaint"], ["viewer-upscale", "upscale"]]) {
    $(`#${id}`).addEventListener("click", async () => {
      try {
        close();
        await sendImage(current.output.url, target);
        toast(`Image sent to ${target === "img2img" ? "image to image" : target}`);
      } catch (error) {
        say("gen-error", error.message);
      }
    });
  }
  $("#viewer-delete").addEventListener("click", async () => {
    const { job } = current;
    const count = (job.outputs || []).length;
    const what = count > 1 ? `this job and its ${count} images` : "this image";
    if (!window.confirm(`Delete ${what} for good?`)) return;
    try {
      await deleteJob(job.id);
      close();
      toast(count > 1 ? `${count} images deleted` : "Image deleted");
    } catch (error) {
      say("viewer-error", error.message);
    }
  });
  // A click on the backdrop closes the dialog.
  dialog.addEventListener("click", (event) => { if (event.target === dialog) close(); });
}
