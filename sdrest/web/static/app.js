// sdrest web UI: plain JavaScript over the server's own APIs (/api, /sdcpp/v1, /v1, /ws).
// On load it re-attaches to the shared queue, so a reload never loses sight of a running job.
"use strict";

const TOKEN_KEY = "sdrest-token";
const jobs = new Map(); // job id -> latest known view
const shown = new Set(); // job ids whose images are in the gallery
let socket = null;
let reconnectDelay = 500;

const $ = (id) => document.getElementById(id);

function token() { return localStorage.getItem(TOKEN_KEY); }

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    ...options,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { raw: text }; }
  if (!response.ok) {
    const error = new Error(errorMessage(data) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

function errorMessage(data) {
  if (!data) return "";
  const error = data.error;
  if (typeof error === "string") return error;
  if (error && error.message) return error.message;
  return data.detail || data.message || "";
}

// -- session ---------------------------------------------------------------------------------

async function start() {
  try {
    const health = await api("/api/health");
    $("server-status").textContent = `v${health.version} · queue ${health.queue_length}`;
  } catch (e) {
    $("server-status").textContent = "server unreachable";
  }
  try {
    const me = await api("/api/auth/me");
    const user = me && me.user;
    $("user").textContent = user && user.username ? `${user.username} (${user.role})` : "";
    $("logout").hidden = !token();
  } catch (e) {
    if (e.status === 401) { showLogin(); return; }
  }
  showMain();
}

function showLogin() {
  $("login").hidden = false;
  $("main").hidden = true;
}

async function login(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const answer = await api("/api/auth/login", {
      method: "POST",
      body: { username: form.get("username"), password: form.get("password") },
    });
    localStorage.setItem(TOKEN_KEY, answer.token);
    $("login-error").textContent = "";
    $("login").hidden = true;
    start();
  } catch (e) {
    $("login-error").textContent = e.message;
  }
}

async function logout() {
  try { await api("/api/auth/logout", { method: "POST" }); } catch { /* token already gone */ }
  localStorage.removeItem(TOKEN_KEY);
  location.reload();
}

async function showMain() {
  $("main").hidden = false;
  await Promise.all([loadModels(), loadCapabilities()]);
  await refreshQueue();
  connect();
}

// -- form ------------------------------------------------------------------------------------

async function loadModels() {
  try {
    const models = await api("/v1/models");
    $("models").replaceChildren(...models.data.map((m) => new Option(m.id, m.id)));
  } catch (e) {
    $("gen-error").textContent = "cannot list models: " + e.message;
  }
}

async function loadCapabilities() {
  try {
    const caps = await api("/sdcpp/v1/capabilities");
    for (const name of caps.samplers) $("samplers").add(new Option(name, name));
    for (const name of caps.schedulers) $("schedulers").add(new Option(name, name));
    if (caps.model) $("models").value = caps.model.name;
    const defaults = caps.defaults || {};
    const form = $("gen-form");
    if (defaults.width) form.elements.width.value = defaults.width;
    if (defaults.height) form.elements.height.value = defaults.height;
    const sample = defaults.sample_params || {};
    if (sample.sample_steps) form.elements.steps.value = sample.sample_steps;
    if (sample.guidance && sample.guidance.txt_cfg !== undefined) {
      form.elements.cfg_scale.value = sample.guidance.txt_cfg;
    }
  } catch { /* the form keeps its own defaults */ }
}

async function generate(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = {};
  for (const [key, value] of form.entries()) {
    if (value === "") continue;
    body[key] = ["width", "height", "steps", "batch_count"].includes(key) ? Number(value)
      : key === "cfg_scale" ? Number(value)
      : key === "seed" && value !== "random" ? Number(value)
      : value;
  }
  try {
    const answer = await api("/api/generate/text2img", { method: "POST", body });
    $("gen-error").textContent = "";
    jobs.set(answer.request_id, { id: answer.request_id, status: "queued", prompt: body.prompt });
    renderJobs();
  } catch (e) {
    $("gen-error").textContent = e.message;
  }
}

// -- queue and progress ----------------------------------------------------------------------

async function refreshQueue() {
  try {
    const status = await api("/api/queue/status");
    for (const job of status.queue.jobs) jobs.set(job.id, { ...jobs.get(job.id), ...job });
    renderJobs();
    for (const job of [...status.queue.jobs].reverse()) {
      if (job.status === "completed") showOutputs(job.id, job.outputs);
    }
  } catch (e) {
    if (e.status === 401) showLogin();
    // 403: guests of an "optional" server have no job list; their own jobs still stream.
  }
}

function renderJobs() {
  const rows = [...jobs.values()].sort((a, b) => (b.queued_time || 0) - (a.queued_time || 0));
  $("jobs").replaceChildren(...rows.slice(0, 50).map(jobRow));
}

function jobRow(job) {
  const row = document.createElement("tr");
  const progress = document.createElement("progress");
  progress.max = 1;
  progress.value = job.status === "completed" ? 1 : job.progress || 0;
  const steps = job.total_steps ? ` ${job.current_step || 0}/${job.total_steps}` : "";
  const cells = [job.id.slice(-10), job.status + (job.position ? ` #${job.position}` : ""), "",
    job.prompt || "", ""];
  cells.forEach((text, index) => {
    const cell = document.createElement("td");
    cell.textContent = text;
    if (index === 2) {
      cell.append(progress, steps);
      if (job.status === "processing" && job.preview_url) {
        const preview = document.createElement("img");
        preview.className = "preview";
        preview.src = job.preview_url;  // a new URL per previewed step
        preview.alt = "live preview";
        cell.append(preview);
      }
    }
    if (index === 3) cell.className = "prompt";
    if (index === 4 && (job.status === "queued" || job.status === "processing")) {
      const cancel = document.createElement("button");
      cancel.textContent = "Cancel";
      cancel.onclick = () => cancelJob(job.id);
      cell.append(cancel);
    }
    row.append(cell);
  });
  return row;
}

async function cancelJob(id) {
  try {
    await api("/api/queue/cancel", { method: "POST", body: { job_id: id } });
  } catch (e) {
    $("gen-error").textContent = e.message;
  }
  refreshQueue();
}

async function showOutputs(id, outputs) {
  if (shown.has(id)) return;
  shown.add(id);
  try {
    if (!outputs) outputs = (await api(`/api/queue/job/${encodeURIComponent(id)}`)).job.outputs;
    for (const output of outputs) {
      const url = typeof output === "string" ? output : output.url;
      const link = document.createElement("a");
      link.href = url;
      link.target = "_blank";
      const image = document.createElement("img");
      image.src = url + "?thumb=true&size=320";
      image.alt = (jobs.get(id) || {}).prompt || id;
      link.append(image);
      $("gallery").prepend(link);
    }
  } catch {
    shown.delete(id);
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = token() ? "?token=" + encodeURIComponent(token()) : "";
  socket = new WebSocket(`${scheme}://${location.host}/ws${query}`);
  socket.onopen = () => { reconnectDelay = 500; refreshQueue(); };
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "job_update") {
      const data = event.data;
      const id = data.job_id;
      jobs.set(id, { ...jobs.get(id), id, ...data });
      renderJobs();
      if (data.status === "completed") showOutputs(id, data.outputs);
    } else if (event.type === "queue_update") {
      refreshQueue();
    }
  };
  socket.onclose = () => {
    // Re-attach after a dropped connection: the queue lives on the server, not in this page.
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 10000);
  };
}

$("login-form").addEventListener("submit", login);
$("gen-form").addEventListener("submit", generate);
$("logout").addEventListener("click", logout);
start();
