// The Queue page: every job the caller may see (all of them for admins), live.

import { api } from "./api.js";
import { $, h, say, toast } from "./dom.js";
import { jobs, refresh, subscribe, cancelJob, isLive, queueInfo } from "./live.js";

const HIDDEN_KEY = "sdrest-queue-hidden-before";
let visible = false;

function hiddenBefore() { return Number(localStorage.getItem(HIDDEN_KEY) || 0); }

function statusText(job) {
  if (job.status === "queued") return job.position ? `queued #${job.position}` : "queued";
  if (job.status === "processing") return job.phase && job.phase !== "sampling" ? job.phase : "processing";
  return job.status;
}

function row(job) {
  const progress = h("progress", { max: 1, value: job.status === "completed" ? 1 : job.progress || 0,
    "aria-label": `Progress of ${job.id}` });
  const steps = job.total_steps && isLive(job) ? ` ${job.current_step || 0}/${job.total_steps}` : "";
  const actions = isLive(job)
    ? h("button", { type: "button", "aria-label": `Cancel ${job.id}`, onclick: () => cancel(job.id) }, "Cancel")
    : job.error ? h("span", { class: "error small" }, job.error.message) : "";
  return h("tr", { dataset: { job: job.id, status: job.status } },
    h("td", { class: "mono", title: job.id }, job.id.slice(-8)),
    h("td", {}, h("span", { class: `status status-${job.status}` }, statusText(job))),
    h("td", {}, progress, steps),
    h("td", { class: "prompt", title: job.prompt || "" }, job.prompt || [job.type, job.model].filter(Boolean).join(" ")),
    h("td", {}, job.owner || "–"),
    h("td", {}, actions));
}

function render() {
  if (!visible) return;
  const cutoff = hiddenBefore();
  const shown = [...jobs.values()]
    .filter((job) => isLive(job) || (job.end_time || job.queued_time || 0) > cutoff)
    .sort((a, b) => {
      if (isLive(a) !== isLive(b)) return isLive(a) ? -1 : 1;
      if (isLive(a)) return (a.position || 0) - (b.position || 0);
      return (b.end_time || 0) - (a.end_time || 0);
    });
  $("#queue-rows").replaceChildren(...shown.slice(0, 200).map(row));
  if (!shown.length) $("#queue-rows").append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "Nothing here.")));
  $("#queue-summary").textContent = `${queueInfo.active} generating, ${queueInfo.size} waiting (all users)`;
}

async function cancel(id) {
  try {
    await cancelJob(id);
    say("queue-error", "");
  } catch (error) {
    say("queue-error", error.message);
  }
}

export function updateBadge() {
  const waiting = [...jobs.values()].filter(isLive).length;
  $("#queue-count").textContent = waiting ? String(waiting) : "";
}

export function initQueue() {
  subscribe(() => { render(); updateBadge(); });
  $("#queue-clear").addEventListener("click", async () => {
    try {
      const answer = await api("/api/queue/clear", { method: "POST" });
      toast(`${answer.cancelled_count} queued job(s) cancelled`);
      await refresh();
    } catch (error) {
      say("queue-error", error.message);
    }
  });
  $("#queue-hide").addEventListener("click", () => {
    // Finished jobs stay on the server (and in the Gallery); this list just stops showing them.
    localStorage.setItem(HIDDEN_KEY, String(Date.now() / 1000));
    render();
  });
}

export async function showQueue() {
  visible = true;
  try { await refresh(); say("queue-error", ""); } catch (error) { say("queue-error", error.message); }
  render();
}

export function hideQueue() { visible = false; }
