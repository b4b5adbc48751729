// api.js - talking to the daemon's /v1 API: the token the browser keeps
// (localStorage), requests carrying it, and the API's JSON errors as
// ApiError, so that every caller can show the server's own message.

const TOKEN_KEY = "traind.token";

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY),
  set: (t) => localStorage.setItem(TOKEN_KEY, t),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

// A `#token=...` fragment (the address `traind serve` logs) is kept and
// taken out of the address bar at once, so that it is neither bookmarked
// nor left in the history. Returns whether there was one.
export function takeTokenFromAddress() {
  const t = new URLSearchParams(location.hash.slice(1)).get("token");
  if (t === null) return false;
  history.replaceState(null, "", location.pathname + location.search);
  if (t.trim()) token.set(t.trim());
  return true;
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

// api(METHOD, PATH): the parsed JSON body of a 2xx answer; throws ApiError.
export async function api(method, path) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${token.get() ?? ""}` },
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "unreachable", `the daemon did not answer (${e.message})`, path);
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    // an empty or non-JSON body: the status says enough
  }
  if (res.ok) return body;
  const err = body?.error;
  throw new ApiError(res.status, err?.code ?? "http_" + res.status,
    err?.message ?? `${method} ${path}: ${res.status} ${res.statusText}`, err?.path ?? path);
}
