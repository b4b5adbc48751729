// charts.js - a run's charts, one Chart (chart.js) per metric: the history
// first, downsampled by the server to about the chart's width (GET
// .../metrics?max_points=N: buckets with min, max and their last value),
// then live points from one stream (follow=1), kept as they come and drawn
// once per animation frame (none in a hidden tab). A series past twice its
// budget is cut into buckets again client-side (rebucket), so a long run's
// memory stays bounded. Zooming asks the server for the range's finer
// points (`after` and `before`: raw points with `limit` when the range is
// short, else buckets again, max_points). Controls: x by step, epoch or
// wall time (each point's wall_time, from the run's first point), linear
// or log y, smoothing.

import { api } from "./api.js";
import { follow } from "./sse.js";
import { Chart } from "./chart.js";

const ENDED = new Set(["succeeded", "failed", "cancelled"]);
const FIRST = ["loss", "val_accuracy", "val_loss", "train_loss", "train_accuracy", "lr"];
const $ = (id) => document.getElementById(id);

export class RunCharts {
  constructor(box, job, signal, onError) {
    Object.assign(this, { box, job, signal, onError });
    this.series = new Map(); // name -> {points: [{step, first, epoch, wall_time, value, min, max}], chart, el, zoom}
    this.origin = Infinity; // the earliest wall_time seen: x = 0 on a time axis
    this.changed = new Set(); // series to draw at the next frame
    this.frame = 0;
    // about a chart's width in pixels: the grid's width over its columns
    const cols = getComputedStyle(box).gridTemplateColumns.split(" ").length || 1;
    this.budget = Math.max(100, Math.min(4000, Math.round((box.clientWidth || 800) / cols)));
    // steps per epoch, for a fractional epoch axis
    this.perEpoch = job.spec?.epochs > 0 && job.progress?.total_steps > 0
      ? job.progress.total_steps / job.spec.epochs : 0;
  }

  async start() {
    const on = (id, type, fn) => $(id).addEventListener(type, fn, { signal: this.signal });
    on("chart-x", "change", () => this.redraw());
    on("chart-y", "change", () => this.setOptions());
    on("chart-smoothing", "input", () => this.setOptions());
    $("charts-note").textContent = "Loading the metrics…";
    let last = -1;
    try {
      const h = await api("GET", `/v1/jobs/${this.job.id}/metrics?max_points=${this.budget}`,
        { signal: this.signal });
      for (const p of h.metrics) {
        this.add(p);
        last = Math.max(last, p.step);
      }
    } catch (e) {
      if (e.name !== "AbortError") this.onError(e);
      return;
    }
    this.redraw();
    if (ENDED.has(this.job.state)) return;
    // from one step before the last: an epoch metric of that step may
    // follow it (duplicates are skipped by step)
    follow(`/v1/jobs/${this.job.id}/metrics?follow=1&after=${Math.max(-1, last - 1)}`, {
      signal: this.signal,
      onError: this.onError,
      onEvent: ({ event, data }) => {
        if (event !== "metric" || !this.add(data)) return;
        this.changed.add(data.name);
        this.frame ||= requestAnimationFrame(() => this.flush());
      },
    });
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    for (const s of this.series.values()) s.chart.destroy();
    this.series.clear();
    this.box.replaceChildren();
  }

  // a point (or bucket) into its series, made with its chart when new
  add(p) {
    let s = this.series.get(p.name);
    if (!s) s = this.makeSeries(p.name);
    const n = s.points.length;
    if (n && s.points[n - 1].step >= p.step) return false;
    s.points.push({ step: p.step, first: p.first_step, epoch: p.epoch, wall_time: p.wall_time, value: p.value,
      min: p.min, max: p.max });
    if (typeof p.wall_time === "number" && p.wall_time < this.origin) this.origin = p.wall_time;
    if (s.points.length > 2 * this.budget) s.points = rebucket(s.points, this.budget);
    return true;
  }

  makeSeries(name) {
    const el = document.createElement("figure");
    el.className = "run-chart";
    el.dataset.name = name;
    const s = { points: [], el, zoom: null };
    this.placeChart(el, name);
    this.makeChart(s);
    this.series.set(name, s);
    return s;
  }

  // a new Chart in the series' box (after a change of x: no zoom kept)
  makeChart(s) {
    const name = s.el.dataset.name;
    s.chart?.destroy();
    s.zoom = null;
    delete s.el.dataset.zoom;
    s.chart = new Chart(s.el, { title: name, logY: this.logY(), smoothing: this.smoothing(),
      xLabel: this.xMode(), xTime: this.xMode() === "time" });
    s.chart.onZoom = (x0, x1) => this.zoom(name, x0, x1);
  }

  // charts in a fixed order (the usual first, then by name): the same
  // place each visit
  placeChart(el, name) {
    const key = (n) => {
      const i = FIRST.indexOf(n);
      return i < 0 ? `1${n}` : `0${i}`;
    };
    const next = [...this.box.children].find((c) => key(c.dataset.name) > key(name));
    this.box.insertBefore(el, next ?? null);
    $("charts-note").textContent = "";
  }

  flush() {
    this.frame = 0;
    for (const name of this.changed) this.draw(this.series.get(name));
    this.changed.clear();
  }

  xMode() {
    return $("chart-x").value;
  }
  logY() {
    return $("chart-y").value === "log";
  }
  smoothing() {
    return Number($("chart-smoothing").value);
  }

  // a point's x; NaN on a time axis for a point without a wall_time
  // (stored by a traind before they were kept)
  x(p) {
    const mode = this.xMode();
    if (mode === "step") return p.step;
    if (mode === "time") return typeof p.wall_time === "number" ? p.wall_time - this.origin : NaN;
    return this.perEpoch ? p.step / this.perEpoch : p.epoch + 1;
  }

  // the steps of the points a chart's [x0, x1] holds
  steps(s, x0, x1) {
    const mode = this.xMode();
    if (mode === "step") return [Math.max(0, Math.floor(x0)), Math.ceil(x1)];
    if (mode === "epoch") return this.perEpoch ? [Math.max(0, Math.floor(x0 * this.perEpoch)),
      Math.ceil(x1 * this.perEpoch)] : [0, 0];
    const inside = s.points.filter((p) => this.x(p) >= x0 && this.x(p) <= x1);
    // a bucket ends at its step: the range starts past the bucket before
    const first = s.points.indexOf(inside[0]);
    return inside.length ? [first > 0 ? s.points[first - 1].step + 1 : 0, inside.at(-1).step] : [0, 0];
  }

  draw(s) {
    const pts = s.zoom ? merge(s.points, s.zoom) : s.points;
    const xy = [];
    for (const p of pts) {
      const x = this.x(p);
      if (!Number.isNaN(x)) xy.push({ x, y: p.value, ...(p.min !== undefined && { min: p.min, max: p.max }) });
    }
    s.chart.setSeries([{ name: s.el.dataset.name, points: xy }]);
  }

  redraw() {
    for (const s of this.series.values()) {
      this.makeChart(s);
      this.draw(s);
    }
    if (!this.series.size) $("charts-note").textContent = "No metrics yet.";
  }

  setOptions() {
    $("chart-smoothing-value").textContent = this.smoothing().toFixed(2);
    for (const s of this.series.values()) s.chart.setOptions({ logY: this.logY(), smoothing: this.smoothing() });
  }

  // the finer points of [x0, x1] from the server; null: back to the overview
  async zoom(name, x0, x1) {
    const s = this.series.get(name);
    if (!s) return;
    s.zoom = null;
    delete s.el.dataset.zoom;
    if (x0 === null || x0 === undefined) return this.draw(s);
    const [from, to] = this.steps(s, x0, x1);
    if (to < from) return this.draw(s);
    // steps in [from, to]: every point of a short range, else buckets
    const q = new URLSearchParams({ name, after: String(from - 1), before: String(to + 1) });
    if (to - from < 4 * this.budget) q.set("limit", String(to - from + 1));
    else q.set("max_points", String(this.budget));
    try {
      const h = await api("GET", `/v1/jobs/${this.job.id}/metrics?${q}`, { signal: this.signal });
      s.zoom = { from, to, points: h.metrics };
      s.el.dataset.zoom = `${from}-${to}`;
      this.draw(s);
    } catch (e) {
      if (e.name !== "AbortError") this.onError(e);
    }
  }
}

// the overview's points outside the zoomed range, the finer ones inside
function merge(points, zoom) {
  return [...points.filter((p) => p.step < zoom.from), ...zoom.points,
    ...points.filter((p) => p.step > zoom.to)];
}

// the points merged into about n buckets of equal step width over the
// series' span, as the server's max_points cuts them: each its last
// point's step and value, the min and max of all (a NaN, null, kept as a
// value only). Equal widths, not pairs of points: a history's wide
// buckets and the single steps that streamed in after them are merged
// alike, and the series keeps its start.
function rebucket(points, n) {
  const lo = points[0].first ?? points[0].step, hi = points.at(-1).step;
  const width = Math.max(1, Math.ceil((hi - lo + 1) / n));
  const out = [];
  let key = NaN;
  for (const p of points) {
    const k = Math.floor((p.step - lo) / width);
    const pmin = p.min ?? p.value, pmax = p.max ?? p.value;
    if (k !== key) {
      key = k;
      out.push({ ...p, first: p.first ?? p.step, min: pmin, max: pmax });
      continue;
    }
    const b = out.at(-1);
    Object.assign(b, { step: p.step, epoch: p.epoch, wall_time: p.wall_time, value: p.value,
      min: b.min === null ? pmin : pmin === null ? b.min : Math.min(b.min, pmin),
      max: b.max === null ? pmax : pmax === null ? b.max : Math.max(b.max, pmax) });
  }
  return out;
}
