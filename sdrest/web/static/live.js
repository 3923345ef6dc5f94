// The jobs this page knows, kept current from /api/queue/status and the /ws stream. The queue
// lives on the server: after a reload or a dropped socket the page re-reads it and re-attaches.

import { api, token } from "./api.js";

export const jobs = new Map(); // job id -> the latest view of the job
const listeners = new Set();
let socket = null;
let retryDelay = 500;
let refreshing = null;
let onUnauthorized = () => {};
let role = null; // the caller's role, as the socket's greeting says
export const queueInfo = { size: 0, active: 0 };

const deletionListeners = new Set();
export function subscribe(listener) { listeners.add(listener); return () => listeners.delete(listener); }
function notify(job) { for (const listener of listeners) listener(job); }
/** Call ``listener(id)`` whenever a job is deleted (here or in another tab: /ws job_deleted). */
export function onJobDeleted(listener) { deletionListeners.add(listener); }

function forget(id) {
  jobs.delete(id);
  for (const listener of deletionListeners) listener(id);
  notify(null);
}

export function isLive(job) { return job.status === "queued" || job.status === "processing"; }

export function remember(job) {
  const id = job.id || job.job_id;
  const merged = { ...jobs.get(id), ...job, id };
  jobs.set(id, merged);
  notify(merged);
  return merged;
}

/** Re-read the caller's queue and history (live jobs, then the 100 most recent finished). */
export function refresh() {
  // A guest of an "optional" server has no job list (403); its own jobs still stream.
  if (role === "guest") return Promise.resolve();
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const status = await api("/api/queue/status");
      queueInfo.size = status.queue.size;
      queueInfo.active = status.queue.active_generations;
      const seen = new Set();
      for (const job of status.queue.jobs) { seen.add(job.id); jobs.set(job.id, { ...jobs.get(job.id), ...job }); }
      for (const [id, job] of jobs) if (!seen.has(id) && !job.local) jobs.delete(id);
      notify(null);
    } catch (error) {
      if (error.status !== 403) throw error;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** The full document of one job (prompts whole, outputs listed). */
export async function fetchJob(id) {
  const answer = await api(`/api/queue/job/${encodeURIComponent(id)}`);
  return remember({ ...answer.job, full: true });
}

let firstContact = null; // resolves true (identified), false (4401) or null (no answer)

/** Open the live stream; resolves whether the server took this page's credentials. This is
 * also how the page learns that sign-in is needed without a failed HTTP call. */
export function connect(unauthorized) {
  if (unauthorized) onUnauthorized = unauthorized;
  if (socket && socket.readyState <= 1) return firstContact?.promise || Promise.resolve(true);
  let resolve;
  firstContact = { promise: new Promise((done) => { resolve = done; }), resolve, settled: false };
  const settle = (value) => {
    if (firstContact.settled) return false;
    firstContact.settled = true;
    firstContact.resolve(value);
    return true;
  };
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = token() ? "?token=" + encodeURIComponent(token()) : "";
  socket = new WebSocket(`${scheme}://${location.host}/ws${query}`);
  socket.onopen = () => { retryDelay = 500; };
  socket.onmessage = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    if (event.type === "connected") {
      role = event.data.role;
      // Re-attach: whatever happened while the socket was down is in the queue listing.
      settle(true);
      setOnline(true);
      refresh().catch(() => {});
    }
    if (event.type === "job_update") {
      // Its outputs are bare URLs: the job's own document has them with sizes and seeds.
      const { outputs, ...data } = event.data;
      const job = remember({ ...data, id: data.job_id });
      if (job.status === "completed" && !job.full && outputs) fetchJob(job.id).catch(() => {});
    } else if (event.type === "queue_update") {
      queueInfo.size = event.data.queue_size;
      queueInfo.active = event.data.active_generations;
      for (const item of event.data.jobs || []) {
        const known = jobs.get(item.job_id);
        if (known) known.position = item.position;
      }
      notify(null);
    } else if (event.type === "job_deleted") {
      forget(event.data.job_id);
    } else if (event.type === "system_update") {
      document.dispatchEvent(new CustomEvent("sdrest:system", { detail: event.data }));
    }
  };
  socket.onclose = (event) => {
    setOnline(event.code === 4401 ? null : false);
    if (event.code === 4401) {
      if (!settle(false)) onUnauthorized();
      return;
    }
    settle(null);
    // Re-attach after a dropped connection: the queue is on the server, not in this page.
    setTimeout(() => connect(), retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  };
  return firstContact.promise;
}

/** Reconnect with the current token (after signing in again). */
export function reconnect() {
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  return connect();
}

function setOnline(online) {
  const dot = document.getElementById("live-state");
  if (dot) {
    dot.textContent = online ? "live" : online === null ? "" : "reconnecting…";
    dot.dataset.online = online === false ? "no" : "yes";
  }
}

/** Delete a finished job for good (its images too); a queued or running one is refused. */
export async function deleteJob(id) {
  await api(`/api/queue/job/${encodeURIComponent(id)}`, { method: "DELETE" });
  forget(id);
}

export async function cancelJob(id) {
  await api("/api/queue/cancel", { method: "POST", body: { job_id: id } });
  await refresh();
}
