// The one way the UI talks to the server: fetch with the login token, errors turned into words.
// A 401 on a signed-in page asks for sign-in again (a modal over the page, so no form loses
// what was typed) and then retries the call that failed.

const TOKEN_KEY = "sdrest-token";

export class ApiError extends Error {
  constructor(message, status, field, code) {
    super(message);
    this.status = status;
    this.field = field || null;
    this.code = code || "";
  }
}

let reauthenticate = null; // () => Promise<void>: shows the sign-in form, resolves once signed in

export function onAuthRequired(handler) { reauthenticate = handler; }
export function token() { return localStorage.getItem(TOKEN_KEY); }
export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** The message of any family's error body, in words (never a JSON dump). */
export function errorOf(data, status) {
  if (!data) return { message: `the server answered ${status}` };
  const error = data.error;
  if (typeof error === "string") return { message: error, field: data.field, code: data.code };
  if (error && error.message) return { message: error.message, field: error.field, code: error.code };
  const detail = data.detail;
  if (typeof detail === "string") return { message: detail };
  return { message: data.message || `the server answered ${status}` };
}

/** JSON call; ``body`` is encoded as JSON. Resolves the parsed answer, rejects an ApiError. */
export async function api(path, { method = "GET", body, retry = true, raw = false } = {}) {
  const headers = {};
  const current = token();
  if (current) headers.Authorization = "Bearer " + current;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("cannot reach the server: is it running?", 0);
  }
  if (response.status === 401 && retry && reauthenticate && path !== "/api/auth/login") {
    await reauthenticate();
    return api(path, { method, body, retry: false, raw });
  }
  if (raw && response.ok) return response;
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const found = errorOf(data, response.status);
    throw new ApiError(found.message || response.statusText, response.status, found.field, found.code);
  }
  return data;
}

/** A file's bytes as a ``data:`` URL (what the generation endpoints take). */
export function readAsDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("cannot read the file"));
    reader.readAsDataURL(blob);
  });
}
