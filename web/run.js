// run.js - one run's page (#/jobs/ID): its header (name, state, device,
// progress and ETA, its place in the queue and why, how its ranks stand in
// Slurm or another launcher), refreshed from GET /v1/jobs/{id} every 3 s
// until it ends; the charts (charts.js), the log,
// checkpoints and spec panels (panels.js). Everything it starts hangs off
// one AbortController: stop() ends every stream, timer and request.

import { api } from "./api.js";
import * as fmt from "./format.js";
import { RunCharts } from "./charts.js";
import { LogPanel, CheckpointPanel, showSpec } from "./panels.js";

const REFRESH_MS = 3000;
const ENDED = new Set(["succeeded", "failed", "cancelled"]);
const $ = (id) => document.getElementById(id);

export class RunView {
  // id: the job's id; onAuthLost(ApiError): the token stopped working
  constructor(id, onAuthLost) {
    this.id = id;
    this.onAuthLost = onAuthLost;
    this.abort = new AbortController();
    this.timer = 0;
    this.job = null;
    this.parts = [];
  }

  async start() {
    $("run").hidden = false;
    $("run-page").hidden = true;
    $("run-error").hidden = true;
    $("run-crumb").textContent = `#${this.id}`;
    let job;
    try {
      job = await this.get(`/v1/jobs/${this.id}`);
    } catch (e) {
      return this.failed(e);
    }
    if (this.abort.signal.aborted) return;
    $("run-page").hidden = false;
    this.show(job);
    showSpec(job);
    const signal = this.abort.signal, onError = (e) => this.streamError(e);
    this.parts = [new RunCharts($("charts"), job, signal, onError),
      new LogPanel($("run-logs"), job, signal, onError),
      (this.checkpoints = new CheckpointPanel($("run-checkpoints"), job, signal, onError))];
    for (const p of this.parts) p.start();
    this.schedule();
  }

  stop() {
    this.abort.abort();
    clearTimeout(this.timer);
    for (const p of this.parts) p.destroy();
    this.parts = [];
    $("run").hidden = true;
    // the status lines too: a run's message is not the next run's
    for (const id of ["run-logs", "run-checkpoints", "run-spec", "run-curl", "run-title", "run-status",
      "copy-curl-status"])
      $(id).replaceChildren();
  }

  get(path) {
    return api("GET", path, { signal: this.abort.signal });
  }

  schedule() {
    if (this.abort.signal.aborted || ENDED.has(this.job.state)) return;
    this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  async refresh() {
    try {
      const job = await this.get(`/v1/jobs/${this.id}`);
      const before = this.job;
      this.show(job);
      if (job.state !== before.state || job.progress.epoch !== before.progress.epoch)
        this.checkpoints.refresh();
      $("run-status").textContent = "";
    } catch (e) {
      if (e.name === "AbortError") return;
      if (e.status === 401) return this.onAuthLost(e);
      $("run-status").textContent = `${e.message}; trying again`;
    }
    this.schedule();
  }

  // a job that cannot be shown: another user's (404) says so plainly
  failed(e) {
    if (e.name === "AbortError") return;
    if (e.status === 401) return this.onAuthLost(e);
    const err = $("run-error");
    err.textContent = e.status === 404
      ? `Run #${this.id} was not found: it does not exist, or it is not yours to see.`
      : `Cannot show run #${this.id}: ${e.message}`;
    err.hidden = false;
  }

  streamError(e) {
    if (e.status === 401) return this.onAuthLost(e);
    $("run-status").textContent = e.message;
  }

  show(job) {
    this.job = job;
    document.title = `${job.name} · traind`;
    $("run-title").textContent = job.name;
    $("run-crumb").textContent = `#${job.id}`;
    const state = $("run-state");
    state.textContent = job.state;
    state.className = `badge state-${job.state}`;
    $("run").dataset.state = job.state;
    $("run-device").textContent = job.device ?? job.device_request ?? "";
    $("run-progress").textContent = progressText(job);
    const q = job.queue;
    $("run-queue").hidden = !q;
    if (q) $("run-queue").textContent = `Queued: position ${q.position} (${q.ahead} ahead)` +
      `${q.reason !== "None" ? `, waiting for ${q.reason}` : ""}${q.detail ? `: ${q.detail}` : ""}.`;
    $("run-executor").hidden = !job.executor;
    if (job.executor) $("run-executor").textContent = executorText(job.executor);
    $("run-job-error").hidden = !job.error;
    $("run-job-error").textContent = job.error ?? "";
  }
}

// A running job whose ranks another launcher runs (serve --executor): how
// they stand there, Slurm's pending reason included ("Resources").
function executorText(e) {
  const where = e.name === "slurm" ? `In Slurm${e.handle ? ` as job ${e.handle}` : ""}`
    : `Through the ${e.name} launcher${e.handle ? ` (${e.handle})` : ""}`;
  let text = `${where}: ${e.phase}`;
  if (e.reason) text += `, waiting for ${e.reason}`;
  if (e.restarts) text += `; requeued ${e.restarts === 1 ? "once" : `${e.restarts} times`}`;
  return `${text}.`;
}

function progressText(job) {
  const p = job.progress;
  if (!p?.total_steps) return "";
  let text = `step ${p.step.toLocaleString("en")} / ${p.total_steps.toLocaleString("en")} · epoch ${p.epoch}`;
  if (job.state === "running" && typeof p.eta_s === "number") text += ` · ${fmt.eta(p.eta_s)} left`;
  if (ENDED.has(job.state)) text += ` · took ${fmt.duration(fmt.secondsBetween(job.started_at, job.finished_at))}`;
  return text;
}
