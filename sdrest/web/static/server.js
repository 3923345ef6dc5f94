// The Server page: version, engine state (worker, crashes, loaded models) and limits.

import { api } from "./api.js";
import { $, h, say, formatBytes } from "./dom.js";

function card(title, rows) {
  return h("section", { class: "card" }, h("h2", {}, title),
    h("dl", { class: "params" }, rows.filter(([, v]) => v !== undefined && v !== null && v !== "")
      .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
}

export async function showServer() {
  try {
    const [version, status, system] = await Promise.all([
      api("/api/version"), api("/api/status"), api("/api/system").catch((error) => ({ error })),
    ]);
    const cards = [card("Version", [
      ["sdrest", version.version], ["Build", version.type], ["Commit", version.commit?.short],
      ["Branch", version.branch], ["Built", version.build_time],
    ]), card("Queue", [
      ["Running", status.generation_queue.running ? "yes" : "no"], ["Waiting", status.generation_queue.queue_size],
      ["Generating", status.generation_queue.active_generations], ["Queue limit", status.generation_queue.max_queue_size],
      ["Uptime", `${Math.round(status.server.uptime)} s`], ["Restarting", status.server.restarting ? "yes" : "no"],
      ["Models available", status.models.available_count], ["Loaded model", status.models.loaded_model || "none"],
    ])];
    if (system.system) {
      const s = system.system;
      cards.push(card("Engine", [
        ["Mode", s.engine?.mode], ["Worker process", s.engine?.worker_pid ?? "not running"],
        ["Worker starts", s.engine?.worker_starts], ["Worker crashes", s.engine?.worker_crashes],
        ["Loaded models", (s.engine?.loaded_models || []).join(", ") || "none"], ["Backend", s.gpu_backend],
        ["Library", s.library_version || "not started yet"],
      ]), card("Machine", [
        ["Platform", s.platform], ["Python", s.python], ["CPUs", s.cpu_count],
        ["Memory", `${formatBytes(s.memory_available)} free of ${formatBytes(s.memory_total)}`],
        ["Server memory", formatBytes(s.process_rss)],
        ["Started", s.started_at ? new Date(s.started_at).toLocaleString() : undefined],
      ]), card("Limits", Object.entries(s.limits || {}).map(([k, v]) => [k.replaceAll("_", " "), v])));
    } else {
      say("server-error", `engine details: ${system.error.message}`);
    }
    $("#server-info").replaceChildren(...cards);
    if (system.system) say("server-error", "");
  } catch (error) {
    say("server-error", error.message);
  }
}

export function initServer() {
  $("#server-reload").addEventListener("click", showServer);
}
