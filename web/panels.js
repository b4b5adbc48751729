// panels.js - the run page's side panels: its log lines following (GET
// .../logs?follow=1&tail=500: the last 500 lines, then the new ones; 500
// kept, appended once per animation frame; a note says when older lines
// are left out), its checkpoints with downloads (fetched with the token as a
// Blob, saved through an object URL: a plain link could not send the
// token), its spec and a "copy as curl" that resubmits it ($TOKEN, never
// the token itself).

import { apiBlob, api } from "./api.js";
import { follow } from "./sse.js";

const MAX_LOG_LINES = 500;
const $ = (id) => document.getElementById(id);

export class LogPanel {
  constructor(pre, job, signal, onError) {
    Object.assign(this, { pre, job, signal, onError, pending: [], frame: 0 });
    // "Showing the last N lines of M." while some are left out: on the
    // panel's title line, so that the log does not move when it appears
    this.note = Object.assign(document.createElement("span"), { className: "note log-cut", hidden: true });
    pre.previousElementSibling.append(this.note);
  }

  start() {
    follow(`/v1/jobs/${this.job.id}/logs?follow=1&tail=${MAX_LOG_LINES}`, {
      signal: this.signal,
      onError: this.onError,
      onEvent: ({ event, data }) => {
        if (event !== "log") return;
        this.pending.push(data);
        if (this.pending.length > 2 * MAX_LOG_LINES) this.pending.splice(0, MAX_LOG_LINES); // a hidden tab
        this.frame ||= requestAnimationFrame(() => this.flush());
      },
    });
  }

  flush() {
    this.frame = 0;
    const pre = this.pre;
    const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
    const lines = this.pending.splice(0).slice(-MAX_LOG_LINES);
    pre.append(...lines.map((l) => {
      const div = Object.assign(document.createElement("div"), { textContent: l.line });
      div.dataset.seq = String(l.seq);
      return div;
    }));
    while (pre.childElementCount > MAX_LOG_LINES) pre.firstElementChild.remove();
    pre.dataset.lines = String(pre.childElementCount);
    this.showCut();
    if (atEnd) pre.scrollTop = pre.scrollHeight; // follow unless the reader scrolled up
  }

  // a job's lines are numbered from 1 with no gap (seq): a first line
  // shown above 1 means older ones are left out, the last one says how
  // many there are
  showCut() {
    const first = Number(this.pre.firstElementChild?.dataset.seq ?? 1);
    const last = Number(this.pre.lastElementChild?.dataset.seq ?? 0);
    this.note.hidden = first <= 1;
    this.note.textContent = first <= 1 ? ""
      : `Showing the last ${this.pre.childElementCount.toLocaleString("en")} lines of ${last.toLocaleString("en")}.`;
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.note.remove();
  }
}

export class CheckpointPanel {
  constructor(ul, job, signal, onError) {
    Object.assign(this, { ul, job, signal, onError });
  }

  start() {
    this.refresh();
  }

  async refresh() {
    try {
      const { checkpoints } = await api("GET", `/v1/jobs/${this.job.id}/checkpoints`, { signal: this.signal });
      // the newest first: the one a user wants, at the top of its box
      this.ul.replaceChildren(...checkpoints.map((c) => this.item(c)).reverse());
      $("run-checkpoints-note").textContent = checkpoints.length ? "" : "No checkpoint yet.";
    } catch (e) {
      if (e.name !== "AbortError") this.onError(e);
    }
  }

  item(c) {
    const li = document.createElement("li");
    if (!c.url) { // partial: where a stopped run left off, kept for resuming, not a download
      li.append(`epoch ${c.epoch} · step ${c.step.toLocaleString("en")} · partial, to resume from`);
      return li;
    }
    const b = Object.assign(document.createElement("button"), { type: "button", textContent: "Download" });
    b.dataset.url = c.url;
    b.setAttribute("aria-label", `Download the checkpoint of epoch ${c.epoch}`);
    b.addEventListener("click", () => this.download(b, c), { signal: this.signal });
    li.append(`epoch ${c.epoch} · step ${c.step.toLocaleString("en")} · ${size(c.bytes)} `, b);
    li.title = `sha256 ${c.sha256}`;
    return li;
  }

  async download(button, c) {
    button.disabled = true;
    try {
      const blob = await apiBlob(c.url, { signal: this.signal });
      const a = Object.assign(document.createElement("a"), {
        href: URL.createObjectURL(blob), download: `job-${this.job.id}-epoch-${c.epoch}.safetensors`,
      });
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000); // once the browser has it
      button.dataset.bytes = String(blob.size);
    } catch (e) {
      if (e.name !== "AbortError") this.onError(e);
    } finally {
      button.disabled = false;
    }
  }

  destroy() {}
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

// the spec, pretty, and a curl line that submits it again; the button
// copies the line (the clipboard may be refused: the line is shown anyway)
export function showSpec(job) {
  const spec = JSON.stringify(job.spec, null, 2);
  $("run-spec").textContent = spec;
  const curl = `curl -H "Authorization: Bearer $TOKEN" --data-binary @- ${location.origin}/v1/jobs <<'SPEC'\n` +
    `${spec}\nSPEC`;
  $("run-curl").textContent = curl;
  $("copy-curl").onclick = async () => {
    try {
      await navigator.clipboard.writeText(curl);
      $("copy-curl-status").textContent = "Copied: set TOKEN first.";
    } catch {
      $("copy-curl-status").textContent = "The browser refused the clipboard: copy it below.";
      $("run-curl").closest("details").open = true;
    }
  };
}
