// sse.js - Server-Sent Events over fetch(), because EventSource cannot send
// the Authorization header: parses `id:`, `event:`, `data:` and `retry:`
// lines, reconnects after a drop with Last-Event-ID (so nothing is missed
// or repeated), stops on `event: end`, on the caller's abort, or on an API
// error (401, 404...), which is reported once and not retried.

import { ApiError, authHeaders, responseError } from "./api.js";

const MAX_RETRY_MS = 30000;

// follow(path, {signal, onEvent({id, event, data}), onError(ApiError),
// onEnd(data)}): runs until the stream ends, the signal aborts or the API
// refuses it. A drop (the network, a 5xx, a restart) is retried after the
// server's `retry:` delay, doubling up to 30 s while it keeps failing.
export async function follow(path, { signal, onEvent, onError = () => {}, onEnd = () => {} }) {
  let lastId = null, retryMs = 2000, failures = 0;
  while (!signal.aborted) {
    const headers = { ...authHeaders(), Accept: "text/event-stream" };
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    try {
      const res = await fetch(path, { headers, signal, cache: "no-store" });
      if (!res.ok) {
        const err = await responseError(res, "GET", path);
        if (res.status < 500) {
          onError(err);
          return;
        }
        throw err;
      }
      failures = 0;
      const ended = await readEvents(res.body, (ev) => {
        if (ev.retry) retryMs = ev.retry;
        if (ev.id !== null) lastId = ev.id;
        if (ev.event === "end") return onEnd(parse(ev.data)), true;
        if (ev.event === "error") return onError(toApiError(parse(ev.data), path)), true;
        if (ev.data !== null) onEvent({ id: ev.id, event: ev.event, data: parse(ev.data) });
        return false;
      });
      if (ended) return;
    } catch (e) {
      if (signal.aborted) return;
      if (++failures === 3) onError(e instanceof ApiError ? e : new ApiError(0, "unreachable", e.message, path));
    }
    await sleep(Math.min(MAX_RETRY_MS, retryMs * 2 ** Math.max(0, failures - 1)), signal);
  }
}

// the body's events, each to onEvent until it returns true (then: true);
// false when the server closed the stream without an end
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "", ev = blank();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        if (nl === buf.length - 1 && buf[nl] === "\r") break; // a \r\n cut in two
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if ((ev.data !== null || ev.retry) && onEvent(ev)) {
            // the server closes the stream after its end: read to there,
            // for a cancelled read would be a failed request
            while (!(await reader.read()).done);
            return true;
          }
          ev = blank();
        } else {
          field(ev, line);
        }
      }
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  }
}

function blank() {
  return { id: null, event: "message", data: null, retry: 0 };
}

// one `name: value` line into the event being built; `:` lines are comments
function field(ev, line) {
  const colon = line.indexOf(":");
  if (colon === 0) return;
  const name = colon < 0 ? line : line.slice(0, colon);
  let value = colon < 0 ? "" : line.slice(colon + 1);
  if (value.startsWith(" ")) value = value.slice(1);
  if (name === "id") ev.id = value;
  else if (name === "event") ev.event = value;
  else if (name === "data") ev.data = ev.data === null ? value : `${ev.data}\n${value}`;
  else if (name === "retry" && /^\d+$/.test(value)) ev.retry = Number(value);
}

function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}

function toApiError(body, path) {
  const e = body?.error ?? {};
  return new ApiError(401, e.code ?? "stream_error", e.message ?? String(body), e.path ?? path);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}
