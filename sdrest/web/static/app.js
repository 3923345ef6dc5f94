// sdrest web UI: plain ES modules over the server's own APIs (/api, /sdcpp/v1, /ws), no build.
// Pages: Generate, Queue, Gallery, Models, Users/Account, Server; sign-in when auth is on.
// On load (and after a dropped socket) it re-attaches to the shared queue.

import { api, setToken, token, onAuthRequired } from "./api.js";
import { $, $$, say } from "./dom.js";
import { connect, reconnect, refresh } from "./live.js";
import { initGenerate, useSettings, sendImage } from "./generate.js";
import { initQueue, showQueue, hideQueue, updateBadge } from "./queue.js";
import { initGallery, showGallery, hideGallery } from "./gallery.js";
import { initModels, showModels, hideModels, setModelPermissions } from "./models.js";
import { initUsers, showUsers, setAccount } from "./users.js";
import { initServer, showServer } from "./server.js";
import { initViewer } from "./viewer.js";

const PAGES = {
  generate: { show: () => {}, hide: () => {} },
  queue: { show: showQueue, hide: hideQueue },
  gallery: { show: showGallery, hide: hideGallery },
  models: { show: showModels, hide: hideModels },
  users: { show: showUsers, hide: () => {} },
  server: { show: showServer, hide: () => {} },
};
let user = null;
let pendingSignIn = null;
let current = null; // the page shown

// -- sign-in -----------------------------------------------------------------------------------

/** Show the sign-in form over the page; resolves once signed in. The page underneath, and
 * whatever was typed in it, stays as it was. */
function signIn(note) {
  if (pendingSignIn) return pendingSignIn.promise;
  let resolve;
  const promise = new Promise((done) => { resolve = done; });
  pendingSignIn = { promise, resolve };
  $("#signin-note").textContent = note || "";
  $("#signin").hidden = false;
  $("#signin-form").elements.username.value ||= user?.username || "";
  ($("#signin-form").elements.username.value ? $("#signin-form").elements.password : $("#signin-form").elements.username).focus();
  return promise;
}

async function submitSignIn(event) {
  event.preventDefault();
  const form = event.target;
  try {
    const answer = await api("/api/auth/login", {
      method: "POST", retry: false,
      body: { username: form.elements.username.value.trim(), password: form.elements.password.value },
    });
    const previous = user?.username;
    setToken(answer.token);
    form.elements.password.value = "";
    say("signin-error", "");
    $("#signin").hidden = true;
    if (previous && previous !== answer.user.username) { location.reload(); return; }
    const pending = pendingSignIn;
    pendingSignIn = null;
    reconnect();
    pending?.resolve();
  } catch (error) {
    say("signin-error", error.message);
  }
}

async function signOut() {
  try { await api("/api/auth/logout", { method: "POST", retry: false }); } catch { /* already gone */ }
  setToken(null);
  location.reload();
}

// -- pages -------------------------------------------------------------------------------------

function route() {
  const name = (location.hash || "#generate").slice(1);
  const page = PAGES[name] ? name : "generate";
  for (const [key, handlers] of Object.entries(PAGES)) {
    const section = $(`#page-${key}`);
    const showing = key === page;
    if (section.hidden !== !showing && !showing) handlers.hide();
    section.hidden = !showing;
  }
  for (const link of $$("#nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (page !== current) window.scrollTo(0, 0);
  current = page;
  PAGES[page].show();
}

const SESSION_ENDED = "Your session has ended: sign in again. What you typed is kept.";

/** Who this page is: the live socket answers first (closed with 4401 when sign-in is needed),
 * so a signed-out page makes no failing HTTP call. */
async function whoAmI() {
  const identified = await connect(() => signIn(SESSION_ENDED).then(() => reconnect()));
  if (identified === false) {
    const expired = Boolean(token());
    setToken(null);
    await signIn(expired ? "Your session has ended: sign in again." : "");
  }
  return (await api("/api/auth/me")).user;
}

async function start() {
  onAuthRequired(() => signIn(SESSION_ENDED));
  $("#signin-form").addEventListener("submit", submitSignIn);
  $("#logout").addEventListener("click", signOut);
  try {
    user = await whoAmI();
  } catch (error) {
    say("gen-error", `cannot reach the server: ${error.message}`);
  }
  user ||= { username: "", role: "guest", permissions: [], authenticated: false };
  const authOn = user.authenticated || user.role === "guest";
  $("#user").textContent = user.username ? `${user.username} (${user.role})` : user.role === "guest" ? "guest" : "";
  $("#logout").hidden = !user.authenticated || !token();
  setAccount(user, authOn);
  setModelPermissions(user.permissions || []);
  $("#nav").hidden = false;
  $("#main").hidden = false;
  initViewer({ useSettings, sendImage });
  initQueue();
  initGallery();
  initModels();
  initUsers();
  initServer();
  // The queue and the form's pickers load side by side.
  await initGenerate(refresh().catch((error) => say("gen-error", error.message)));
  updateBadge();
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "yes";
}

start();
