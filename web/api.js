// api.js - talking to the daemon's /v1 API: the token the browser keeps
// (localStorage), requests carrying it, and the API's JSON errors as
// ApiError, so that every caller can show the server's own message.

const TOKEN_KEY = "traind.token";

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY),
  set: (t) => localStorage.setItem(TOKEN_KEY, t),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

// A `#token=...` fragment (the address `traind serve` logs) is taken out
// of the address bar at once, so that it is neither bookmarked nor left in
// the history. Returns its token ("" for an empty one), null for none.
export function tokenFromAddress() {
  const t = new URLSearchParams(location.hash.slice(1)).get("token");
  if (t === null) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return t.trim();
}

// An answer other than 2xx: the API's {"error": {code, message, path}}, or
// what we know when the body is not that. status 0: no answer at all.
export class ApiError extends Error {
  constructor(status, code, message, path) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.path = path;
  }
}

export const authHeaders = () => ({ Authorization: `Bearer ${token.get() ?? ""}` });

// fetch() that turns "no answer" into ApiError status 0
async function send(method, path, init = {}) {
  try {
    return await fetch(path, { method, headers: authHeaders(), cache: "no-store", ...init });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "unreachable", `the daemon did not answer (${e.message})`, path);
  }
}

// the ApiError of a non-2xx answer: the API's own error body when it has one
export async function responseError(res, method, path) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    // an empty or non-JSON body: the status says enough
  }
  const err = body?.error;
  return new ApiError(res.status, err?.code ?? "http_" + res.status,
    err?.message ?? `${method} ${path}: ${res.status} ${res.statusText}`, err?.path ?? path);
}

// api(METHOD, PATH[, init]): the parsed JSON body of a 2xx answer; throws ApiError.
export async function api(method, path, init) {
  const res = await send(method, path, init);
  if (!res.ok) throw await responseError(res, method, path);
  try {
    return await res.json();
  } catch {
    return null;
  }
}

// apiBlob(PATH[, init]): a download's body as a Blob (a checkpoint); throws ApiError.
export async function apiBlob(path, init) {
  const res = await send("GET", path, init);
  if (!res.ok) throw await responseError(res, "GET", path);
  return res.blob();
}
