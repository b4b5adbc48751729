// compare.js - several runs side by side (#/compare?ids=1,2,3&metric=NAME):
// one metric of each run overlaid in one Chart (chart.js: a series per
// run, named by the run, its legend and hover readout), a select of the
// metrics the runs have, the smoothing slider, and "Download CSV" (run,
// step, value) made in the page. The chart reads each run's series
// downsampled by the server to about its width (`max_points`: buckets with
// min, max and their last value), so long runs load fast and in bounded
// memory; a drag zooms, asking each run for the range's buckets (`after`
// and `before`). The CSV is read at download time, every point, page by
// page (`limit` and `next_after`). A run the user may not see (404) is
// named in a message; the others are still shown.

import { api } from "./api.js";
import { Chart } from "./chart.js";

const PAGE = 100000; // the API's largest `limit`
const PREFERRED = ["val_accuracy", "loss", "val_loss", "train_loss", "train_accuracy"];
const $ = (id) => document.getElementById(id);

// the ids and metric of a #/compare?ids=..&metric=.. address
export function compareParams(hash) {
  const q = new URLSearchParams(hash.replace(/^#\/compare\??/, ""));
  const ids = [...new Set((q.get("ids") ?? "").split(",").filter((s) => /^\d+$/.test(s)).map(Number))];
  return { ids, metric: q.get("metric") ?? "" };
}

export function compareAddress(ids, metric) {
  return `#/compare?ids=${ids.join(",")}${metric ? `&metric=${encodeURIComponent(metric)}` : ""}`;
}

// one CSV field: quoted when it holds a comma, a quote or a line break
function csvField(v) {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

// a CSV field of text another user chose (a run's name): one that a
// spreadsheet would take for a formula (=, +, -, @, a tab or CR first)
// starts with ' so that it stays text
export function csvText(s) {
  return csvField(/^[=+\-@\t\r]/.test(s) ? `'${s}` : s);
}

export class CompareView {
  // ids: the runs' ids; metric: the one asked for ("" : the runs' usual first)
  constructor(ids, metric, onAuthLost) {
    Object.assign(this, { ids, metric, onAuthLost });
    this.abort = new AbortController();
    this.runs = []; // [{job, points: [{step, value, min, max, count}], zoom}] of the runs shown
    this.chart = null;
    this.loading = 0; // which load is current (a later select wins)
    this.zooming = 0; // which zoom is current (a later drag wins)
    this.range = null; // the zoomed [from, to] steps
  }

  async start() {
    $("compare").hidden = false;
    $("compare-error").hidden = true;
    $("compare-body").hidden = true;
    this.status("Loading the runs…");
    const on = (id, type, fn) => $(id).addEventListener(type, fn, { signal: this.abort.signal });
    on("compare-metric", "change", () => this.choose($("compare-metric").value));
    on("compare-smoothing", "input", () => this.setSmoothing());
    on("compare-csv", "click", () => this.download());
    if (this.ids.length < 2) return this.fail("Pick two runs or more in the runs table to compare them.");
    const got = await Promise.allSettled(this.ids.map((id) => this.get(`/v1/jobs/${id}`)));
    if (this.abort.signal.aborted) return;
    const lost = got.find((r) => r.status === "rejected" && r.reason.status === 401);
    if (lost) return this.onAuthLost(lost.reason);
    this.showMissing(got);
    this.runs = got.filter((r) => r.status === "fulfilled").map((r) => ({ job: r.value, points: [], zoom: null }));
    if (!this.runs.length) return this.status("");
    $("compare-body").hidden = false;
    this.fillMetrics();
    this.chart = new Chart($("compare-chart"), { title: this.metric, smoothing: this.smoothing(), xLabel: "step" });
    this.chart.onZoom = (x0, x1) => this.zoom(x0, x1);
    this.setSmoothing();
    await this.load();
  }

  stop() {
    this.abort.abort();
    this.chart?.destroy();
    this.chart = null;
    $("compare").hidden = true;
    for (const id of ["compare-metric", "compare-missing", "compare-runs"]) $(id).replaceChildren();
  }

  get(path) {
    return api("GET", path, { signal: this.abort.signal });
  }

  status(text) {
    $("compare-status").textContent = text;
  }

  fail(text) {
    this.status("");
    $("compare-error").textContent = text;
    $("compare-error").hidden = false;
  }

  // the runs that cannot be shown, by id and why
  showMissing(got) {
    const lines = got.flatMap((r, i) => {
      if (r.status === "fulfilled") return [];
      const why = r.reason.status === 404 ? "not found: it does not exist, or it is not yours to see"
        : r.reason.message;
      return [Object.assign(document.createElement("li"), { textContent: `Run #${this.ids[i]}: ${why}.` })];
    });
    $("compare-missing").replaceChildren(...lines);
    $("compare-missing-box").hidden = !lines.length;
  }

  // the select: every metric any run has; the one asked for, else the usual first
  fillMetrics() {
    const names = [...new Set(this.runs.flatMap((r) => Object.keys(r.job.metrics ?? {})))].sort();
    if (!names.includes(this.metric)) this.metric = PREFERRED.find((n) => names.includes(n)) ?? names[0] ?? "";
    $("compare-metric").replaceChildren(...names.map((n) => new Option(n, n, false, n === this.metric)));
    $("compare-metric").disabled = !names.length;
  }

  choose(metric) {
    this.metric = metric;
    history.replaceState(null, "", compareAddress(this.ids, metric));
    this.load();
  }

  // about the chart's width in pixels: the buckets asked of each run
  budget() {
    return Math.max(100, Math.min(4000, Math.round($("compare-chart").clientWidth || 800)));
  }

  // every run's metric, downsampled, then the chart and the runs' list
  async load() {
    const ticket = ++this.loading;
    $("compare-csv").disabled = true;
    this.range = null; // the new metric's whole run, no zoom asked any more
    ++this.zooming;
    this.chart.resetZoom();
    if (!this.metric) {
      this.status("These runs have no metrics yet.");
      return;
    }
    this.status(`Loading ${this.metric}…`);
    try {
      const q = new URLSearchParams({ name: this.metric, max_points: String(this.budget()) });
      const all = await Promise.all(this.runs.map((r) => this.get(`/v1/jobs/${r.job.id}/metrics?${q}`)));
      if (ticket !== this.loading) return;
      this.runs.forEach((r, i) => { r.points = all[i].metrics; });
    } catch (e) {
      if (e.name === "AbortError" || ticket !== this.loading) return;
      if (e.status === 401) return this.onAuthLost(e);
      return this.status(`${this.metric}: ${e.message}`);
    }
    this.status("");
    this.draw();
    $("compare-csv").disabled = false;
  }

  // a drag over steps [x0, x1]: each run's buckets of that range, drawn
  // between the overview's points outside it; null: the overview again
  async zoom(x0, x1) {
    const ticket = ++this.zooming;
    if (x0 === null || x0 === undefined) {
      if (!this.range) return; // none drawn (or load() dropped it)
      this.range = null;
      return this.draw();
    }
    const from = Math.max(0, Math.floor(x0)), to = Math.ceil(x1);
    const q = new URLSearchParams({ name: this.metric, after: String(from - 1), before: String(to + 1),
      max_points: String(this.budget()) });
    try {
      const all = await Promise.all(this.runs.map((r) => this.get(`/v1/jobs/${r.job.id}/metrics?${q}`)));
      if (ticket !== this.zooming) return;
      this.runs.forEach((r, i) => { r.zoom = all[i].metrics; });
      this.range = [from, to];
      $("compare-chart").dataset.zoom = `${from}-${to}`;
      this.draw();
    } catch (e) {
      if (e.name === "AbortError" || ticket !== this.zooming) return;
      if (e.status === 401) return this.onAuthLost(e);
      this.status(`${this.metric}: ${e.message}`);
    }
  }

  // a run's points as drawn: the overview, or within the zoomed range its
  // finer buckets (the overview's nearest point each side kept, so the line
  // runs on to the edges)
  shown(r) {
    if (!this.range) return r.points;
    const [from, to] = this.range;
    const before = r.points.findLast((p) => p.step < from), after = r.points.find((p) => p.step > to);
    return [...(before ? [before] : []), ...r.zoom, ...(after ? [after] : [])];
  }

  // a run's whole history of one metric, page after page (the CSV)
  async history(id, name) {
    const points = [];
    for (let after = -1; after !== null;) {
      const q = new URLSearchParams({ name, after: String(after), limit: String(PAGE) });
      const h = await this.get(`/v1/jobs/${id}/metrics?${q}`);
      for (const p of h.metrics) points.push({ step: p.step, value: p.value });
      after = h.next_after ?? null;
    }
    return points;
  }

  // a series' name: the run's, with its id where two runs share a name
  label(job) {
    const twice = this.runs.filter((r) => r.job.name === job.name).length > 1;
    return twice ? `${job.name} #${job.id}` : job.name;
  }

  draw() {
    if (!this.range) delete $("compare-chart").dataset.zoom;
    this.chart.setOptions({ title: this.metric });
    this.chart.setSeries(this.runs.map((r) => ({
      name: this.label(r.job), points: this.shown(r).map((p) => ({
        x: p.step, y: p.value, ...(p.min !== undefined && { min: p.min, max: p.max }),
      })),
    })));
    $("compare-runs").replaceChildren(...this.runs.map((r) => {
      const li = document.createElement("li");
      const a = Object.assign(document.createElement("a"), { href: `#/jobs/${r.job.id}`, textContent: this.label(r.job) });
      // every point the run has (a bucket counts its points), and what is drawn
      const total = r.points.reduce((n, p) => n + (p.count ?? 1), 0);
      const drawn = total > r.points.length ? ` (drawn as ${r.points.length.toLocaleString("en")})` : "";
      li.append(a, ` · ${r.job.user ?? ""} · ${r.job.state} · ${total.toLocaleString("en")} points${drawn}`);
      li.dataset.points = String(total);
      return li;
    }));
  }

  smoothing() {
    return Number($("compare-smoothing").value);
  }

  setSmoothing() {
    $("compare-smoothing-value").textContent = this.smoothing().toFixed(2);
    this.chart?.setOptions({ smoothing: this.smoothing() });
  }

  // every point of the runs' metric (not the chart's buckets), read now,
  // as CSV, saved by the browser
  async download() {
    const button = $("compare-csv"), ticket = this.loading;
    button.disabled = true;
    this.status(`Reading every point of ${this.metric} for the CSV…`);
    let all;
    try {
      all = await Promise.all(this.runs.map((r) => this.history(r.job.id, this.metric)));
    } catch (e) {
      if (e.name === "AbortError") return;
      if (e.status === 401) return this.onAuthLost(e);
      return this.status(`CSV: ${e.message}`);
    } finally {
      if (ticket === this.loading) button.disabled = false;
    }
    if (ticket !== this.loading) return; // another metric was chosen meanwhile
    this.status("");
    const lines = ["run,step,value"];
    this.runs.forEach((r, i) => {
      const run = csvText(this.label(r.job));
      for (const p of all[i]) lines.push(`${run},${p.step},${csvField(p.value)}`);
    });
    const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
    const a = Object.assign(document.createElement("a"), {
      href: URL.createObjectURL(blob), download: `compare-${this.metric}-${this.ids.join("-")}.csv`,
    });
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000); // once the browser has it
    $("compare-csv").dataset.rows = String(lines.length - 1);
  }
}
