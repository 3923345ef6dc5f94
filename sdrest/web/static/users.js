// The Account page: admins manage users and every API key; everyone signed in changes their own
// password and manages their own keys.

import { api } from "./api.js";
import { $, h, say, toast, formatTime, showError, clearFieldErrors } from "./dom.js";

let me = null; // the /api/auth/me user
let authOn = false;

export function setAccount(user, authenticationOn) {
  me = user;
  authOn = authenticationOn;
  const admin = user.role === "admin";
  $("#users-admin").hidden = !admin;
  $("#nav-users").textContent = admin ? "Users" : "Account";
  $("#h-users").textContent = admin ? "Users and keys" : "Account";
  const own = authOn && user.authenticated;
  $("#self-forms").hidden = !own;
  $("#password-username").value = user.username;
  $("#self-note").textContent = own ? `Signed in as ${user.username} (${user.role}).`
    : authOn ? "Guests have no account: sign in to manage one."
      : "Authentication is off on this server: there is no account to manage. Accounts made here are used once it is on.";
}

function keyTable(keys, revoke) {
  if (!keys.length) return h("p", { class: "muted" }, "No keys yet.");
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ...["Key", "User", "Name", "Created", "Last used", "State", ""].map((t) =>
      h("th", {}, t || h("span", { class: "visually-hidden" }, "Actions"))))),
    h("tbody", {}, keys.map((key) => h("tr", { dataset: { key: key.id } },
      h("td", { class: "mono" }, `${key.prefix}…`), h("td", {}, key.username), h("td", {}, key.name || "–"),
      h("td", {}, formatTime(key.created)), h("td", {}, formatTime(key.last_used)),
      h("td", {}, key.active ? "active" : `revoked ${formatTime(key.revoked)}`),
      h("td", {}, key.active ? h("button", { type: "button", "aria-label": `Revoke key ${key.name || key.prefix}`,
        onclick: () => revoke(key) }, "Revoke") : ""))))));
}

/** Show a new key (once) just above the key list ``anchor`` it belongs to. */
function showNewKey(answer, anchor) {
  const box = $("#new-key");
  box.hidden = false;
  box.replaceChildren(h("p", {}, `New key for ${answer.record.username}, shown only once: copy it now.`),
    h("input", { readonly: true, value: answer.key, "aria-label": "New API key", class: "mono", onfocus: (e) => e.target.select() }));
  anchor.before(box);
}

async function loadAdmin() {
  try {
    const [{ users }, { keys }] = await Promise.all([api("/api/users"), api("/api/keys")]);
    $("#users-rows").replaceChildren(...users.map(userRow));
    $("#key-owner").replaceChildren(...users.map((u) => new Option(u.username, u.username)));
    $("#keys-admin").replaceChildren(keyTable(keys, async (key) => {
      try { await api(`/api/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" }); toast("Key revoked"); loadAll(); }
      catch (error) { say("keys-admin-error", error.message); }
    }));
    say("users-error", "");
  } catch (error) {
    say("users-error", error.message);
  }
}

function userRow(user) {
  const name = encodeURIComponent(user.username);
  const role = h("select", { "aria-label": `Role of ${user.username}`, onchange: async () => {
    try {
      await api(`/api/users/${name}/role`, { method: "POST", body: { role: role.value } });
      toast(`${user.username} is now ${role.value}`);
      say("users-error", "");
    } catch (error) {
      role.value = user.role;
      say("users-error", `${user.username}: ${error.message}`);
    }
  } }, new Option("user", "user"), new Option("admin", "admin"));
  role.value = user.role;
  const remove = h("button", { type: "button", "aria-label": `Remove ${user.username}`, onclick: async () => {
    if (!confirm(`Remove ${user.username} and their keys?`)) return;
    try {
      await api(`/api/users/${name}`, { method: "DELETE" });
      toast(`${user.username} removed`);
      loadAll();
    } catch (error) {
      say("users-error", `${user.username}: ${error.message}`);
    }
  } }, "Remove");
  const isMe = me && me.username === user.username;
  return h("tr", { dataset: { user: user.username } },
    h("td", {}, user.username, isMe ? h("span", { class: "muted" }, " (you)") : ""),
    h("td", {}, role), h("td", {}, user.local_password ? "local" : "system (PAM / proxy)"),
    h("td", {}, formatTime(user.created)), h("td", {}, isMe ? "" : remove));
}

async function loadSelf() {
  if (!authOn || !me?.authenticated) return;
  try {
    const { keys } = await api("/api/auth/keys");
    $("#keys-self").replaceChildren(keyTable(keys, async (key) => {
      try { await api(`/api/auth/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" }); toast("Key revoked"); loadSelf(); }
      catch (error) { say("keys-self-error", error.message); }
    }));
  } catch (error) {
    say("keys-self-error", error.message);
  }
}

function loadAll() {
  if (me?.role === "admin") loadAdmin();
  loadSelf();
}

function submitter(form, errorId, send) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    const values = Object.fromEntries(new FormData(form));
    try {
      await send(values);
      form.reset();
      say(errorId, "");
      loadAll();
    } catch (error) {
      showError(form, error, errorId);
    }
  });
}

export function initUsers() {
  submitter($("#user-add"), "users-error", async (values) => {
    const body = { username: values.username.trim(), role: values.role };
    if (values.password) body.password = values.password;
    const user = await api("/api/users", { method: "POST", body });
    toast(`${user.username} added`);
  });
  submitter($("#key-add-admin"), "keys-admin-error", async (values) => {
    showNewKey(await api("/api/keys", { method: "POST", body: { username: values.username, name: values.name } }),
      $("#keys-admin"));
  });
  submitter($("#key-add-self"), "keys-self-error", async (values) => {
    showNewKey(await api("/api/auth/keys", { method: "POST", body: { name: values.name } }), $("#keys-self"));
  });
  submitter($("#password-form"), "password-error", async (values) => {
    await api("/api/auth/password", { method: "POST", body: values });
    toast("Password changed");
  });
}

export function showUsers() {
  $("#new-key").hidden = true;
  loadAll();
}
