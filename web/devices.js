// devices.js - the devices and the queue (#/devices): GET /v1/devices (each
// device's name, memory and what each of its workers runs) and GET
// /v1/queue (the queued jobs in run order, and why each waits), refreshed
// every 3 s while the tab is visible. The queue's entries carry no user:
// it comes from GET /v1/jobs?state=queued (and running, for the workers'
// jobs' names), which show what the caller may see. Jobs link to their page.

import { api } from "./api.js";

const REFRESH_MS = 3000;
const LIMIT = 200;
const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
};

// "2.1 of 15.6 GiB free", or "unknown" when the device cannot be read
function memory(d) {
  if (d.memory_bytes === null || d.memory_bytes === undefined) return "unknown";
  const gib = (b) => (b / 2 ** 30).toFixed(1);
  const free = d.memory_free_bytes === null ? "" : `${gib(d.memory_free_bytes)} of `;
  return `${free}${gib(d.memory_bytes)} GiB${free ? " free" : ""}`;
}

function jobLink(id, name) {
  return el("a", { href: `#/jobs/${id}`, textContent: name ? `${name} (#${id})` : `#${id}` });
}

export class DevicesView {
  constructor(onAuthLost) {
    this.onAuthLost = onAuthLost;
    this.abort = new AbortController();
    this.timer = 0;
    this.refreshes = 0;
  }

  start() {
    $("devices").hidden = false;
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.refresh();
      else clearTimeout(this.timer);
    }, { signal: this.abort.signal });
    this.refresh();
  }

  stop() {
    this.abort.abort();
    clearTimeout(this.timer);
    $("devices").hidden = true;
    delete $("devices").dataset.refreshes;
    $("devices-table").tBodies[0].replaceChildren();
    $("queue-table").tBodies[0].replaceChildren();
  }

  get(path) {
    return api("GET", path, { signal: this.abort.signal });
  }

  async refresh() {
    clearTimeout(this.timer);
    try {
      const [devices, queue, queued, running] = await Promise.all([this.get("/v1/devices"),
        this.get("/v1/queue"), this.get(`/v1/jobs?state=queued&limit=${LIMIT}`),
        this.get(`/v1/jobs?state=running&limit=${LIMIT}`)]);
      const jobs = new Map([...queued.jobs, ...running.jobs].map((j) => [j.id, j]));
      this.showDevices(devices.devices, jobs);
      this.showQueue(queue.queue, jobs);
      $("devices-status").textContent = "";
      $("devices").dataset.refreshes = String(++this.refreshes); // for the tests: a refresh done
    } catch (e) {
      if (e.name === "AbortError") return;
      if (e.status === 401) return this.onAuthLost(e);
      $("devices-status").textContent = `${e.message}; trying again`;
    }
    if (!this.abort.signal.aborted && document.visibilityState === "visible")
      this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  // a row per worker: the device's name and memory on its first
  showDevices(devices, jobs) {
    const rows = devices.flatMap((d) => d.workers.map((w, i) => {
      const tr = el("tr");
      tr.dataset.device = d.device;
      tr.dataset.worker = String(w.worker);
      tr.dataset.job = w.job?.id !== undefined ? String(w.job.id) : "";
      const first = i === 0;
      tr.append(el("td", { textContent: first ? d.device : "" }),
        el("td", { textContent: first ? `${d.name ?? d.type}${d.cores ? ` · ${d.cores} cores` : ""}` : "" }),
        el("td", { textContent: first ? memory(d) : "" }),
        el("td", { className: "num", textContent: String(w.worker) }),
        el("td", {}, ...this.workerJob(w.job, jobs)));
      return tr;
    }));
    $("devices-table").tBodies[0].replaceChildren(...rows);
    $("devices-empty").hidden = rows.length > 0;
  }

  workerJob(job, jobs) {
    if (!job) return [el("span", { className: "note", textContent: "idle" })];
    if (job.id === undefined) return [el("span", { className: "note", textContent: "another user's job" })];
    const rate = typeof job.samples_per_s === "number" ? ` · ${Math.round(job.samples_per_s).toLocaleString("en")} samples/s` : "";
    return [jobLink(job.id, jobs.get(job.id)?.name), rate];
  }

  showQueue(queue, jobs) {
    const rows = queue.map((q) => {
      const tr = el("tr");
      tr.dataset.job = q.id !== undefined ? String(q.id) : "";
      tr.dataset.reason = q.reason;
      const user = q.id !== undefined ? jobs.get(q.id)?.user ?? "" : "another user";
      tr.append(el("td", { className: "num", textContent: String(q.position) }),
        el("td", {}, q.id !== undefined ? jobLink(q.id, q.name) : el("span", { className: "note", textContent: "another user's job" })),
        el("td", { textContent: user }),
        el("td", { textContent: q.device_request ?? "" }),
        el("td", { className: "reason", textContent: q.reason, title: q.detail }),
        el("td", { className: "detail", textContent: q.detail }));
      return tr;
    });
    $("queue-table").tBodies[0].replaceChildren(...rows);
    $("queue-empty").hidden = rows.length > 0;
  }
}
