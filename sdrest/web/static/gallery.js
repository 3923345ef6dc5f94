// The Gallery page: the caller's finished jobs with images, newest first, a page at a time.
// The history is read from the server a batch of jobs at a time (/api/queue/history), as far
// back as the pages go; jobs that finish while the page is open join from the live stream.

import { api } from "./api.js";
import { $, h, say } from "./dom.js";
import { jobs, onJobDeleted, subscribe } from "./live.js";
import { openViewer } from "./viewer.js";

const PAGE_SIZE = 24; // images per page
const BATCH = 50; // jobs per history request
let page = 0;
let visible = false;
const history = new Map(); // job id -> job, from /api/queue/history
let nextOffset = 0;
let hasMore = true;
let loading = null;

/** Read the next batch of finished jobs (one request at a time). */
function loadMore() {
  if (!loading) {
    loading = (async () => {
      try {
        const answer = await api(`/api/queue/history?status=completed&limit=${BATCH}&offset=${nextOffset}`);
        for (const job of answer.jobs) history.set(job.id, job);
        nextOffset += answer.jobs.length;
        hasMore = answer.has_more;
      } finally {
        loading = null;
      }
    })();
  }
  return loading;
}

function images() {
  const byId = new Map(history);
  for (const job of jobs.values()) byId.set(job.id, { ...byId.get(job.id), ...job });
  const done = [...byId.values()].filter((j) => j.status === "completed" && (j.outputs || []).length);
  done.sort((a, b) => (b.end_time || b.queued_time || 0) - (a.end_time || a.queued_time || 0));
  return done.flatMap((job) => job.outputs.map((output) => ({ job, output })));
}

function render() {
  if (!visible) return;
  const all = images();
  const pages = Math.max(1, Math.ceil(all.length / PAGE_SIZE));
  page = Math.min(page, pages - 1);
  const slice = all.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
  $("#gallery-grid").replaceChildren(...slice.map(({ job, output }) => {
    const label = `${job.prompt || job.type} (seed ${output.seed})`;
    return h("button", { type: "button", class: "thumb", "aria-label": `Open ${label}`,
      onclick: () => openViewer(job, output.index) },
    h("img", { src: output.thumbnail_url || `${output.url}?thumb=true&size=320`, alt: label, loading: "lazy",
      width: 160, height: 160 }));
  }));
  if (!all.length) $("#gallery-grid").append(h("p", { class: "muted" }, "No images yet: generate some."));
  const more = hasMore ? "+" : "";
  $("#gallery-count").textContent = `${all.length}${more} image${all.length === 1 && !more ? "" : "s"}`;
  $("#gallery-page").textContent = `Page ${page + 1} of ${pages}${more}`;
  $("#gallery-prev").disabled = page === 0;
  $("#gallery-next").disabled = page >= pages - 1 && !hasMore;
}

/** Go to page ``wanted``, reading older history until it is filled (or there is no more). */
async function turnTo(wanted) {
  try {
    while (hasMore && images().length <= wanted * PAGE_SIZE + PAGE_SIZE - 1) await loadMore();
    say("gallery-error", "");
  } catch (error) {
    if (error.status === 403) hasMore = false; // a guest has no history: its own jobs show
    else say("gallery-error", error.message);
  }
  page = Math.max(0, wanted);
  render();
}

export function initGallery() {
  $("#gallery-prev").addEventListener("click", () => turnTo(page - 1));
  $("#gallery-next").addEventListener("click", () => turnTo(page + 1));
  subscribe((job) => { if (!job || job.status === "completed") render(); });
  onJobDeleted((id) => {
    // The listing shifts up by one: read on from one earlier so no job is skipped.
    if (history.delete(id)) nextOffset = Math.max(0, nextOffset - 1);
  });
}

export async function showGallery() {
  visible = true;
  history.clear();
  nextOffset = 0;
  hasMore = true;
  await turnTo(page);
}

export function hideGallery() { visible = false; }
