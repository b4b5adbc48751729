// chart.js - the dashboard's line chart: one canvas per chart, no library.
// Each series is drawn as its raw line (faint), its smoothed line (strong,
// TensorBoard's debiased EMA) and, where points carry min/max, the band of
// a server's downsampled bucket (fainter). Long series are decimated per
// pixel column (first, min, max and last of each column: the picture of
// every point, the cost of a few per column), so 150,000 points draw in a
// few milliseconds. Hover and the arrow keys read values; dragging selects
// an x range (onZoom), a double-click resets it. Colours come from CSS
// custom properties (chart.css), so the light and dark themes hold.
//
//   const c = new Chart(el, { title, logY, smoothing, xLabel, xTime });
//   c.setSeries([{ name, points: [{ x, y, min, max }, ...] }, ...]);
//   c.setOptions({ logY, smoothing, xLabel });  c.onZoom = (x0, x1) => {};
//
// xTime: x is in seconds (a run's wall time), ticked at whole durations
// (10 s, 5 min, 1 h) and labelled as a clock ("4:30", "1:02:00").
//   c.destroy();
//
// el's data-points holds the number of points drawn: those in the x view
// whose y the scale can show (finite; positive on a log scale), all series.

import { metric } from "./format.js";

const COLOURS = 8; // --chart-1 .. --chart-8 in chart.css
const RAW_ALPHA = 0.3;
const BAND_ALPHA = 0.16;
const DRAG_MIN_PX = 4; // a shorter drag is a click
const MAX_TICKS = 200; // an axis's most
const ZOOM_MIN_SPAN = 1e-9; // of the x it starts at: a narrower zoom shows no more
const FONT_PX = 12;

// TensorBoard's smoothing: an exponential moving average of weight w,
// debiased (divided by 1 - w^n, n the finite values so far) so that the
// first values are not pulled to zero. Non-finite values give NaN and
// leave the average as it was.
export function smooth(ys, w) {
  const out = new Float64Array(ys.length);
  let last = 0, wn = 1; // wn: w to the power of the finite values so far
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i];
    if (!Number.isFinite(y)) { out[i] = NaN; continue; }
    last = last * w + (1 - w) * y;
    wn *= w;
    out[i] = w > 0 ? last / (1 - wn) : y;
  }
  return out;
}

// "nice" steps: 1, 2 or 5 times a power of ten, about span/count
function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

// the multiples of step in [lo, hi], by index: a step below the spacing
// of doubles near lo (a zoom of a few doubles' width) cannot loop forever
function stepTicks(lo, hi, step) {
  const first = Math.ceil(lo / step);
  const n = Math.min(MAX_TICKS, Math.floor(hi / step + 1e-9) - first + 1);
  const ticks = [];
  for (let i = 0; i < n; i++) ticks.push((first + i) * step);
  return ticks;
}

function linearTicks(lo, hi, count) {
  if (!(hi > lo)) return { ticks: [lo], step: 1 };
  const step = niceStep(hi - lo, count);
  return { ticks: stepTicks(lo, hi, step), step };
}

// log ticks: the decades in range (every k-th when many); 1, 2, 5 times
// the decades when fewer than two; linear ones within a narrower range
function logTicks(lo, hi, count) {
  const d0 = Math.ceil(Math.log10(lo) - 1e-9), d1 = Math.floor(Math.log10(hi) + 1e-9);
  if (d1 - d0 + 1 >= 2) {
    const every = Math.ceil((d1 - d0 + 1) / Math.max(2, count));
    const ticks = [];
    for (let d = d0; d <= d1; d += every) ticks.push(Math.pow(10, d));
    return { ticks, step: 0 };
  }
  const ticks = [];
  for (let d = d0 - 1; d <= d1; d++) {
    for (const m of [1, 2, 5]) {
      const v = m * Math.pow(10, d);
      if (v >= lo && v <= hi) ticks.push(v);
    }
  }
  return ticks.length >= 2 ? { ticks, step: 0 } : linearTicks(lo, hi, count);
}

// a tick's label: as many decimals as its step needs; k and M for large
// round values; exponent form for the very large or small
function tickLabel(v, step) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e7 || a < 1e-4) return Number(v.toPrecision(3)).toExponential().replace("e+", "e");
  const s = step || a; // log ticks: each its own step
  if (a >= 1e4 && s >= 1000) return a >= 1e6 ? `${+(v / 1e6).toFixed(2)}M` : `${+(v / 1e3).toFixed(1)}k`;
  return v.toFixed(Math.min(8, Math.max(0, -Math.floor(Math.log10(s) + 1e-9))));
}

// the durations a time axis ticks at, in seconds
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
  21600, 43200, 86400];

// ticks for x in seconds: at multiples of a whole duration (plain numbers
// below a second a tick)
function timeTicks(lo, hi, count) {
  const raw = (hi - lo) / Math.max(1, count);
  if (!(hi > lo) || raw < 1) return linearTicks(lo, hi, count);
  const step = TIME_STEPS.find((s) => s >= raw) ?? Math.ceil(raw / 86400) * 86400;
  return { ticks: stepTicks(lo, hi, step), step };
}

// seconds as a clock: "45 s" on an axis under a minute (`span`: its
// largest |x|), else "m:ss" or "h:mm:ss"
export function timeLabel(v, span = Math.abs(v)) {
  const pad = (n) => String(n).padStart(2, "0");
  const sign = v < 0 ? "-" : "", a = Math.abs(v);
  if (span < 60) return `${sign}${+a.toFixed(a < 10 && a % 1 ? 1 : 0)} s`;
  const s = Math.round(a);
  if (span < 3600) return `${sign}${Math.floor(s / 60)}:${pad(s % 60)}`;
  return `${sign}${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

// the first index whose x >= v (xs ascending), or with `after` x > v
function search(xs, v, after = false) {
  let lo = 0, hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < v || (after && xs[mid] === v)) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// the index of the point nearest x, or -1 for none
function nearest(xs, x) {
  if (xs.length === 0) return -1;
  const i = search(xs, x);
  if (i === 0) return 0;
  if (i === xs.length) return i - 1;
  return x - xs[i - 1] <= xs[i] - x ? i - 1 : i;
}

// one series as typed arrays, its smoothed line beside it
function prepare(s, w) {
  const n = s.points.length;
  const xs = new Float64Array(n), ys = new Float64Array(n);
  let mins = null, maxs = null;
  for (let i = 0; i < n; i++) {
    const p = s.points[i];
    xs[i] = p.x;
    ys[i] = p.y ?? NaN;
    if (p.min !== undefined || p.max !== undefined) {
      if (!mins) { mins = new Float64Array(n).fill(NaN); maxs = new Float64Array(n).fill(NaN); }
      mins[i] = p.min ?? NaN;
      maxs[i] = p.max ?? NaN;
    }
  }
  return { name: String(s.name ?? ""), xs, ys, mins, maxs, sm: smooth(ys, w) };
}

// Decimated drawing. A column is one CSS pixel; each keeps the first, the
// lowest, the highest and the last y of its points, and a line visits them
// in turn. A y the scale cannot show breaks the line.
class Columns {
  constructor(ctx) { this.ctx = ctx; this.col = NaN; this.pen = false; }
  add(px, py) {
    const c = Math.round(px);
    if (c !== this.col) {
      this.flush();
      this.col = c; this.first = this.last = this.lo = this.hi = py;
      return;
    }
    this.last = py;
    if (py < this.lo) this.lo = py;
    if (py > this.hi) this.hi = py;
  }
  gap() { this.flush(); this.pen = false; }
  flush() {
    if (Number.isNaN(this.col)) return;
    const { ctx, col } = this;
    if (this.pen) ctx.lineTo(col, this.first); else ctx.moveTo(col, this.first);
    if (this.lo !== this.hi) { ctx.lineTo(col, this.lo); ctx.lineTo(col, this.hi); }
    ctx.lineTo(col, this.last);
    this.pen = true;
    this.col = NaN;
  }
}

export class Chart {
  constructor(el, options = {}) {
    this.el = el;
    this.opts = { title: "", logY: false, smoothing: 0.6, xLabel: "", xTime: false, ...options };
    this.series = [];
    this.view = null; // [x0, x1] when zoomed
    this.onZoom = null;
    this.frame = 0;
    this.hoverIndex = -1; // into the first series with points, while hovering
    this.build();
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.plot);
    this.scheme = window.matchMedia("(prefers-color-scheme: dark)");
    this.onScheme = () => this.schedule();
    this.scheme.addEventListener("change", this.onScheme);
    this.schedule();
  }

  setSeries(list) {
    const w = this.smoothing();
    this.series = (list || []).map((s) => prepare(s, w));
    this.renderLegend();
    this.schedule();
  }

  setOptions(o) {
    const before = this.smoothing();
    Object.assign(this.opts, o);
    if (this.smoothing() !== before) {
      for (const s of this.series) s.sm = smooth(s.ys, this.smoothing());
    }
    this.title.textContent = this.opts.title || "";
    this.schedule();
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.resize.disconnect();
    this.scheme.removeEventListener("change", this.onScheme);
    this.head.remove();
    this.plot.remove();
    this.el.classList.remove("chart");
    delete this.el.dataset.points;
    this.onZoom = null;
  }

  smoothing() {
    const w = Number(this.opts.smoothing);
    return Number.isFinite(w) ? Math.min(Math.max(w, 0), 0.999) : 0;
  }

  // ------------------------------------------------------------ the DOM
  build() {
    const make = (tag, cls, parent) => {
      const e = document.createElement(tag);
      if (cls) e.className = cls;
      if (parent) parent.append(e);
      return e;
    };
    this.el.classList.add("chart");
    this.el.dataset.points = "0";
    this.head = make("div", "chart-head", this.el);
    this.title = make("span", "chart-title", this.head);
    this.title.textContent = this.opts.title || "";
    this.legend = make("ul", "chart-legend", this.head);
    this.plot = make("div", "chart-plot", this.el);
    this.plot.tabIndex = 0;
    this.plot.setAttribute("role", "group");
    this.plot.setAttribute("aria-label",
      `${this.opts.title || "chart"}: arrow keys read the values, Escape hides them`);
    this.canvas = make("canvas", "", this.plot);
    this.canvas.setAttribute("aria-hidden", "true");
    this.cursor = make("div", "chart-cursor", this.plot);
    this.select = make("div", "chart-select", this.plot);
    this.readout = make("div", "chart-readout", this.plot);
    this.readout.setAttribute("role", "status");
    this.cursor.hidden = this.select.hidden = this.readout.hidden = true;
    this.listen();
  }

  renderLegend() {
    this.legend.replaceChildren(...this.series.map((s, i) => {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = `chart-swatch chart-c${(i % COLOURS) + 1}`;
      li.append(sw, s.name);
      return li;
    }));
    this.legend.hidden = this.series.length < 2;
  }

  // -------------------------------------------------------- drawing
  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  // a pending frame drawn now: points added since the last one lie past
  // its scale, so a key or the pointer picking one must see them drawn
  flush() {
    if (!this.frame) return;
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.draw();
  }

  colours() {
    const cs = getComputedStyle(this.el);
    const v = (name, dflt) => cs.getPropertyValue(name).trim() || dflt;
    const series = [];
    for (let i = 1; i <= COLOURS; i++) series.push(v(`--chart-${i}`, "#1f6feb"));
    return { fg: v("--fg", "#1c2024"), muted: v("--muted", "#5f6b76"), grid: v("--line", "#dde1e6"),
      font: `${FONT_PX}px ${cs.fontFamily || "sans-serif"}`, series };
  }

  // the x range shown: the zoom, else every series' extent
  xRange() {
    if (this.view) return this.view;
    let lo = Infinity, hi = -Infinity;
    for (const s of this.series) {
      if (s.xs.length === 0) continue;
      lo = Math.min(lo, s.xs[0]);
      hi = Math.max(hi, s.xs[s.xs.length - 1]);
    }
    if (!Number.isFinite(lo)) return null;
    return hi > lo ? [lo, hi] : [lo - 1, hi + 1];
  }

  // each series' index range in view (in0..in1), and one point more
  // either side to draw (i0..i1: a line leaves by the plot's edge)
  spans(x0, x1) {
    return this.series.map((s) => {
      const in0 = search(s.xs, x0), in1 = search(s.xs, x1, true);
      return { in0, in1, i0: Math.max(0, in0 - 1), i1: Math.min(s.xs.length, in1 + 1) };
    });
  }

  // the y range of the points in view (raw, smoothed, band); the count of
  // those drawn
  yRange(spans, ok) {
    let lo = Infinity, hi = -Infinity, count = 0;
    const see = (a, in0, in1, counted) => {
      for (let i = in0; i < in1; i++) {
        const v = a[i];
        if (!ok(v)) continue;
        if (counted) count++;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    };
    this.series.forEach((s, k) => {
      const { in0, in1 } = spans[k];
      see(s.ys, in0, in1, true);
      see(s.sm, in0, in1, false);
      if (s.mins) { see(s.mins, in0, in1, false); see(s.maxs, in0, in1, false); }
    });
    if (!Number.isFinite(lo)) return { count, lo: this.opts.logY ? 1 : 0, hi: this.opts.logY ? 10 : 1 };
    return { count, ...this.pad(lo, hi) };
  }

  // 5% either side (of the decades on a log scale); a flat line gets room
  pad(lo, hi) {
    if (this.opts.logY) {
      let l = Math.log10(lo), h = Math.log10(hi);
      if (h - l < 1e-9) { l -= 0.5; h += 0.5; }
      const p = (h - l) * 0.05;
      return { lo: Math.pow(10, l - p), hi: Math.pow(10, h + p) };
    }
    if (hi - lo < 1e-12 * Math.max(1, Math.abs(hi))) {
      const p = Math.abs(hi) * 0.05 || 1;
      return { lo: lo - p, hi: hi + p };
    }
    const p = (hi - lo) * 0.05;
    return { lo: lo - p, hi: hi + p };
  }

  draw() {
    const t0 = performance.now();
    const w = this.plot.clientWidth, h = this.plot.clientHeight;
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const c = this.colours();
    ctx.font = c.font;
    const xr = this.xRange();
    const logY = !!this.opts.logY;
    const ok = logY ? (v) => v > 0 && v < Infinity : Number.isFinite;
    const spans = xr ? this.spans(xr[0], xr[1]) : [];
    const yr = this.yRange(spans, ok);
    const top = 8, bottom = h - FONT_PX - 10 - (this.opts.xLabel ? FONT_PX + 6 : 0);
    const count = Math.max(2, (bottom - top) / 40);
    const yt = logY ? logTicks(yr.lo, yr.hi, count) : linearTicks(yr.lo, yr.hi, count);
    const widest = Math.max(24, ...yt.ticks.map((v) => ctx.measureText(tickLabel(v, yt.step)).width));
    const box = { left: Math.ceil(widest) + 10, top, right: w - 12, bottom };
    box.width = Math.max(1, box.right - box.left);
    box.height = Math.max(1, box.bottom - box.top);
    const ly = (v) => (logY ? Math.log10(v) : v);
    const yLo = ly(yr.lo), yK = box.height / (ly(yr.hi) - yLo);
    const toPy = (v) => box.bottom - (ly(v) - yLo) * yK;
    this.scale = { box, xr, logY, left: box.left, bottom: box.bottom, yLo, yK,
      x0: xr ? xr[0] : 0, kx: xr ? box.width / (xr[1] - xr[0]) : 1 };
    this.drawYAxis(ctx, c, box, yt, toPy);
    if (!xr) {
      this.drawEmpty(ctx, c, box, "no data");
    } else {
      this.drawXAxis(ctx, c, box, xr);
      ctx.save();
      ctx.beginPath();
      ctx.rect(box.left, box.top, box.width, box.height);
      ctx.clip();
      const toPx = (x) => box.left + (x - xr[0]) * (box.width / (xr[1] - xr[0]));
      this.series.forEach((s, k) => this.drawSeries(ctx, c.series[k % COLOURS], s, spans[k], toPx, toPy, ok));
      ctx.restore();
      if (yr.count === 0) this.drawEmpty(ctx, c, box, "no points in view");
    }
    this.el.dataset.points = String(yr.count);
    this.el.dataset.drawMs = (performance.now() - t0).toFixed(2);
    if (this.hoverIndex >= 0) this.showReadout(this.hoverIndex);
  }

  drawYAxis(ctx, c, box, yt, toPy) {
    ctx.strokeStyle = c.grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = c.muted;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.beginPath();
    for (const v of yt.ticks) {
      const y = Math.round(toPy(v)) + 0.5;
      if (y < box.top - 1 || y > box.bottom + 1) continue;
      ctx.moveTo(box.left, y);
      ctx.lineTo(box.right, y);
      ctx.fillText(tickLabel(v, yt.step), box.left - 6, y);
    }
    ctx.stroke();
  }

  drawXAxis(ctx, c, box, xr) {
    const xt = this.opts.xTime ? timeTicks(xr[0], xr[1], box.width / 90)
      : linearTicks(xr[0], xr[1], box.width / 90);
    const xSpan = Math.max(Math.abs(xr[0]), Math.abs(xr[1]));
    const kx = box.width / (xr[1] - xr[0]);
    ctx.strokeStyle = c.grid;
    ctx.fillStyle = c.muted;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.beginPath();
    for (const v of xt.ticks) {
      const x = Math.round(box.left + (v - xr[0]) * kx) + 0.5;
      ctx.moveTo(x, box.top);
      ctx.lineTo(x, box.bottom + 4);
      const label = this.opts.xTime && xt.step >= 1 ? timeLabel(v, xSpan) : tickLabel(v, xt.step);
      const half = ctx.measureText(label).width / 2;
      // kept inside the canvas: the last label may sit at the plot's edge
      ctx.fillText(label, Math.min(x, this.canvas.clientWidth - half - 1), box.bottom + 6);
    }
    ctx.stroke();
    ctx.strokeStyle = c.muted;
    ctx.beginPath();
    ctx.moveTo(box.left, box.bottom + 0.5);
    ctx.lineTo(box.right, box.bottom + 0.5);
    ctx.stroke();
    if (this.opts.xLabel) {
      ctx.fillStyle = c.fg;
      ctx.fillText(this.opts.xLabel, box.left + box.width / 2, box.bottom + FONT_PX + 10);
    }
  }

  drawEmpty(ctx, c, box, text) {
    ctx.fillStyle = c.muted;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(text, box.left + box.width / 2, box.top + box.height / 2);
  }

  // the band (faintest), the raw line (faint), the smoothed line (strong)
  drawSeries(ctx, colour, s, span, toPx, toPy, ok) {
    ctx.strokeStyle = ctx.fillStyle = colour;
    ctx.lineJoin = "round";
    if (s.mins) {
      ctx.globalAlpha = BAND_ALPHA;
      this.drawBand(ctx, s, span, toPx, toPy, ok);
    }
    const smoothed = this.smoothing() > 0;
    if (smoothed) {
      ctx.globalAlpha = RAW_ALPHA;
      ctx.lineWidth = 1;
      this.drawLine(ctx, s.xs, s.ys, span);
    }
    ctx.globalAlpha = 1;
    ctx.lineWidth = 1.75;
    this.drawLine(ctx, s.xs, smoothed ? s.sm : s.ys, span);
  }

  // the hot loop: transforms and the scale's test written out, no calls
  // but Columns.add
  drawLine(ctx, xs, ys, { i0, i1 }) {
    const { left, x0, kx, bottom, yLo, yK, logY } = this.scale;
    ctx.beginPath();
    const cols = new Columns(ctx);
    for (let i = i0; i < i1; i++) {
      const y = ys[i];
      if (logY ? !(y > 0 && y < Infinity) : !(y - y === 0)) { cols.gap(); continue; }
      cols.add(left + (xs[i] - x0) * kx, bottom - ((logY ? Math.log10(y) : y) - yLo) * yK);
    }
    cols.flush();
    ctx.stroke();
  }

  // per column the lowest min and highest max; each unbroken run of
  // columns one polygon, along the tops and back along the bottoms
  drawBand(ctx, s, { i0, i1 }, toPx, toPy, ok) {
    const tops = [], bots = [], xs = [];
    let col = NaN;
    const run = () => {
      if (xs.length > 1) {
        ctx.beginPath();
        ctx.moveTo(xs[0], tops[0]);
        for (let j = 1; j < xs.length; j++) ctx.lineTo(xs[j], tops[j]);
        for (let j = xs.length - 1; j >= 0; j--) ctx.lineTo(xs[j], bots[j]);
        ctx.closePath();
        ctx.fill();
      }
      tops.length = bots.length = xs.length = 0;
      col = NaN;
    };
    for (let i = i0; i < i1; i++) {
      const lo = s.mins[i], hi = s.maxs[i];
      if (!ok(lo) || !ok(hi)) { run(); continue; }
      const c = Math.round(toPx(s.xs[i])), t = toPy(hi), b = toPy(lo);
      if (c === col) {
        const j = xs.length - 1;
        tops[j] = Math.min(tops[j], t);
        bots[j] = Math.max(bots[j], b);
      } else {
        col = c; xs.push(c); tops.push(t); bots.push(b);
      }
    }
    run();
  }

  // ------------------------------------------------ hover, keys, drag
  listen() {
    const p = this.plot;
    let drag = null;
    const localX = (e) => e.clientX - p.getBoundingClientRect().left;
    p.addEventListener("pointermove", (e) => {
      if (drag) { drag.x1 = this.clampX(localX(e)); this.showSelect(drag); return; }
      this.hoverAt(localX(e));
    });
    p.addEventListener("pointerleave", () => { if (!drag) this.hideReadout(); });
    p.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || !this.scale?.xr) return;
      drag = { x0: this.clampX(localX(e)), x1: this.clampX(localX(e)) };
      p.setPointerCapture(e.pointerId);
    });
    p.addEventListener("pointerup", () => {
      const d = drag;
      drag = null;
      this.select.hidden = true;
      if (d && Math.abs(d.x1 - d.x0) >= DRAG_MIN_PX) this.zoomPx(Math.min(d.x0, d.x1), Math.max(d.x0, d.x1));
    });
    p.addEventListener("pointercancel", () => { drag = null; this.select.hidden = true; });
    p.addEventListener("dblclick", () => this.resetZoom());
    p.addEventListener("keydown", (e) => this.key(e));
    p.addEventListener("blur", () => this.hideReadout());
  }

  clampX(px) {
    const b = this.scale.box;
    return Math.min(Math.max(px, b.left), b.right);
  }

  showSelect({ x0, x1 }) {
    const b = this.scale.box;
    Object.assign(this.select.style, { left: `${Math.min(x0, x1)}px`, width: `${Math.abs(x1 - x0)}px`,
      top: `${b.top}px`, height: `${b.height}px` });
    this.select.hidden = false;
  }

  pxToX(px) {
    const { box, xr } = this.scale;
    return xr[0] + (px - box.left) * ((xr[1] - xr[0]) / box.width);
  }

  zoomPx(p0, p1) {
    const x0 = this.pxToX(p0), x1 = this.pxToX(p1);
    if (!(x1 - x0 > ZOOM_MIN_SPAN * Math.max(1, Math.abs(x0)))) return;
    this.view = [x0, x1];
    this.schedule();
    if (this.onZoom) this.onZoom(x0, x1);
  }

  // back to every point; onZoom(null) only when there was a zoom to undo
  resetZoom() {
    if (!this.view) return;
    this.view = null;
    this.schedule();
    if (this.onZoom) this.onZoom(null);
  }

  // the series the cursor walks: the first with points
  lead() {
    return this.series.find((s) => s.xs.length > 0) || null;
  }

  hoverAt(px) {
    this.flush();
    const s = this.lead();
    if (!s || !this.scale?.xr) return;
    const b = this.scale.box;
    if (px < b.left || px > b.right) { this.hideReadout(); return; }
    this.showReadout(nearest(s.xs, this.pxToX(px)));
  }

  key(e) {
    this.flush();
    const s = this.lead();
    if (!s) return;
    const n = s.xs.length, big = Math.max(1, Math.round(n / 20));
    let i = this.hoverIndex < 0 ? n - 1 : this.hoverIndex;
    switch (e.key) {
      case "ArrowLeft": i -= e.shiftKey ? big : 1; break;
      case "ArrowRight": i += e.shiftKey ? big : 1; break;
      case "Home": i = 0; break;
      case "End": i = n - 1; break;
      case "Escape": this.hideReadout(); return;
      default: return; // Tab and the rest keep their meaning
    }
    e.preventDefault();
    this.showReadout(Math.min(n - 1, Math.max(0, i)));
  }

  hideReadout() {
    this.hoverIndex = -1;
    this.cursor.hidden = this.readout.hidden = true;
  }

  // the cursor at the lead series' point i, and a box with x and each
  // series' raw and smoothed y nearest to it
  showReadout(i) {
    const s = this.lead();
    if (!s || !this.scale?.xr || i < 0 || i >= s.xs.length) { this.hideReadout(); return; }
    this.hoverIndex = i;
    const x = s.xs[i];
    const { box, xr } = this.scale;
    const px = box.left + (x - xr[0]) * (box.width / (xr[1] - xr[0]));
    if (px < box.left - 0.5 || px > box.right + 0.5) { this.cursor.hidden = this.readout.hidden = true; return; }
    Object.assign(this.cursor.style, { left: `${Math.round(px)}px`, top: `${box.top}px`, height: `${box.height}px` });
    this.cursor.hidden = false;
    this.fillReadout(x);
    this.readout.hidden = false;
    const rw = this.readout.offsetWidth;
    const left = px + 12 + rw <= box.right ? px + 12 : Math.max(box.left, px - 12 - rw);
    Object.assign(this.readout.style, { left: `${Math.round(left)}px`, top: `${box.top + 4}px` });
  }

  fillReadout(x) {
    const line = (cls, ...parts) => {
      const d = document.createElement("div");
      d.className = cls;
      d.append(...parts);
      return d;
    };
    const smoothed = this.smoothing() > 0;
    const xText = this.opts.xTime ? timeLabel(x, Math.max(60, Math.abs(x)))
      : Number.isInteger(x) ? x : metric(x);
    const rows = [line("chart-readout-x", `${this.opts.xLabel || "x"} ${xText}`)];
    this.series.forEach((s, k) => {
      const j = nearest(s.xs, x);
      if (j < 0) return;
      const sw = document.createElement("span");
      sw.className = `chart-swatch chart-c${(k % COLOURS) + 1}`;
      const b = document.createElement("b");
      b.textContent = metric(smoothed ? s.sm[j] : s.ys[j]);
      const parts = [sw, `${s.name || "y"} `, b];
      if (smoothed) parts.push(` (raw ${metric(s.ys[j])})`);
      rows.push(line("chart-readout-row", ...parts));
    });
    this.readout.replaceChildren(...rows);
  }
}
