// chart_test.mjs - test_chart.sh's browser half: serves the repository's
// web/ and this folder on a loopback port (node's http, with the daemon's
// Content-Security-Policy, so an inline style or script would show as a
// console error), loads index.html in Debian's chromium (headless, through
// puppeteer-core from web/node_modules) and checks web/chart.js: points
// drawn, smoothing, log y, hover and keys, drag to zoom and the reset, the
// theme's colours, 150,000 points' draw time (printed, not asserted).
// Prints "PASS NAME" or "FAIL NAME: WHY" per check and "FIGURE ..." lines;
// screenshots: $SHOTS/chart-light.png, $SHOTS/chart-dark.png.
//
// Environment: CHROMIUM (the browser), SHOTS (the screenshots' folder).
/* global process, console, document, window, performance, getComputedStyle, URL, KeyboardEvent */

import { createRequire } from "node:module";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { extname, join, normalize } from "node:path";

const require = createRequire(new URL("../../../web/package.json", import.meta.url));
const puppeteer = require("puppeteer-core");
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
  "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };

function check(name, ok, why) {
  console.log(ok ? `PASS ${name}` : `FAIL ${name}: ${why}`);
  return ok;
}
const same = (name, got, want) =>
  check(name, JSON.stringify(got) === JSON.stringify(want), `got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);

// the test's own EMA, written from TensorBoard's description, not chart.js's
function ema(ys, w) {
  const out = [];
  let last = 0;
  ys.forEach((y, i) => {
    last = last * w + (1 - w) * y;
    out.push(last / (1 - w ** (i + 1)));
  });
  return out;
}
// format.js's metric (4 significant digits), as the readout shows values
const four = (v) => (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5 ? v.toExponential(2)
  : v.toPrecision(4).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, ""));

// ------------------------------------------------------------ the server
const server = createServer(async (req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  const rel = path === "/" ? "tests/e2e/chart_test/index.html" : normalize(path.slice(1));
  if (!/^(web\/[\w-]+\.(js|css)|tests\/e2e\/chart_test\/[\w-]+\.(html|js|css))$/.test(rel)) {
    res.writeHead(404).end();
    return;
  }
  try {
    const body = await readFile(join(ROOT, rel));
    res.writeHead(200, { "Content-Type": TYPES[extname(rel)], "Content-Security-Policy": POLICY });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const URL_ = `http://127.0.0.1:${server.address().port}/`;

// ------------------------------------------------------------ the browser
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-extensions", "--disable-background-networking"],
  defaultViewport: { width: 1280, height: 720 },
});
const page = await browser.newPage();
const problems = [];
page.on("console", (m) => {
  if (m.type() === "error" || m.type() === "warn") problems.push(`console ${m.type()}: ${m.text()}`);
});
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
page.on("response", (r) => { if (r.status() >= 400) problems.push(`${r.url()}: ${r.status()}`); });
await page.goto(URL_);
await page.waitForFunction(() => window.chartLib, { timeout: 10000 });

const points = (sel) => page.$eval(sel, (e) => Number(e.dataset.points));

// A deterministic noisy curve: a decaying loss with a wobble, n points,
// x = 10, 20, ...; one test of each property below.
const N = 1000;
const curve = (n, k = 1) => Array.from({ length: n }, (_, i) =>
  ({ x: (i + 1) * 10, y: k * (2 * Math.exp(-i / (n / 4)) + 0.1 + 0.15 * Math.sin(i * 1.7)) }));
const loss = curve(N);

// ---------------------------------------------------- points and smoothing
await page.evaluate(async (pts) => {
  const { Chart } = window.chartLib;
  window.zooms = [];
  window.one = new Chart(document.getElementById("one"), { title: "loss", xLabel: "step" });
  window.one.onZoom = (a, b) => window.zooms.push(b === undefined ? [a] : [a, b]);
  window.one.setSeries([{ name: "loss", points: pts }]);
  await window.frame();
}, loss);
same("setSeries of 1000 points: data-points", await points("#one"), N);
same("the title is shown", await page.$eval("#one .chart-title", (e) => e.textContent), "loss");
const canvas = await page.$eval("#one canvas", (c) => ({ w: c.width, h: c.height, cw: c.clientWidth, ch: c.clientHeight }));
check("the canvas fills its plot at the device's pixel ratio (1)", canvas.w === canvas.cw && canvas.h === canvas.ch &&
  canvas.ch > 100, JSON.stringify(canvas));

const ys = loss.map((p) => p.y);
const want = ema(ys, 0.6);
const got = await page.evaluate((y) => Array.from(window.chartLib.smooth(y, 0.6)), ys);
const worst = Math.max(...want.map((v, i) => Math.abs(v - got[i]) / Math.abs(v)));
check("smooth(ys, 0.6) equals the test's debiased EMA at every index (rel. 1e-12)", worst < 1e-12,
  `worst relative error ${worst}`);
same("smooth: the first value is the first y (debiased)", got[0], ys[0]);
same("smooth: index 500", got[500], want[500]);
same("smooth(ys, 0) is ys", await page.evaluate((y) => Array.from(window.chartLib.smooth(y, 0)), ys.slice(0, 5)),
  ys.slice(0, 5));
const withNaN = await page.evaluate(() => Array.from(window.chartLib.smooth([1, NaN, 3], 0.5)).map(String));
same("smooth: a NaN stays NaN and is left out of the average", withNaN, ["1", "NaN", String(ema([1, 3], 0.5)[1])]);

// ------------------------------------------------- the keyboard and readout
await page.focus("#before");
await page.keyboard.press("Tab");
same("Tab reaches the chart's plot", await page.evaluate(() => document.activeElement.className), "chart-plot");
await page.keyboard.press("Home");
for (let i = 0; i < 5; i++) await page.keyboard.press("ArrowRight");
const readout = await page.$eval("#one .chart-readout", (e) => ({ hidden: e.hidden, text: e.textContent }));
check("Home then 5 × ArrowRight: the readout shows step 60, smoothed and raw y at index 5",
  !readout.hidden && readout.text.includes("step 60") &&
  readout.text.includes(`loss ${four(want[5])} (raw ${four(ys[5])})`), JSON.stringify(readout));
await page.keyboard.press("Escape");
same("Escape hides the readout", await page.$eval("#one .chart-readout", (e) => e.hidden), true);
// points come in between two frames (a live run): End picks the last one
// before any frame has drawn it, and the readout shows it
const live = await page.evaluate((pts) => {
  const plot = document.querySelector("#one .chart-plot");
  const more = [...pts, { x: pts.at(-1).x * 2, y: 1 }];
  window.one.setSeries([{ name: "loss", points: more }]);
  plot.dispatchEvent(new KeyboardEvent("keydown", { key: "End", bubbles: true, cancelable: true }));
  const r = document.querySelector("#one .chart-readout");
  const seen = { hidden: r.hidden, text: r.querySelector(".chart-readout-x")?.textContent };
  window.one.setSeries([{ name: "loss", points: pts }]);
  plot.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
  return seen;
}, loss);
same("End before the new points' frame: the readout shows the newest step", live,
  { hidden: false, text: `step ${N * 20}` });
await page.keyboard.press("Tab");
same("Tab leaves the chart (no trap)", await page.evaluate(() => document.activeElement.id), "after");

// ----------------------------------------------------------------- hover
const plot = await page.$eval("#one .chart-plot", (e) => {
  const r = e.getBoundingClientRect();
  return { left: r.left, top: r.top, width: r.width, height: r.height };
});
await page.mouse.move(plot.left + plot.width * 0.5, plot.top + plot.height / 2);
const hover = await page.evaluate(() => {
  const c = document.querySelector("#one .chart-cursor"), r = document.querySelector("#one .chart-readout");
  return { cursor: !c.hidden, readout: !r.hidden, text: r.textContent, left: parseFloat(c.style.left) };
});
check("hover mid-plot: a cursor line and a readout of a step inside the data",
  hover.cursor && hover.readout && /step (\d+)/.test(hover.text) &&
  Number(/step (\d+)/.exec(hover.text)[1]) > 10 && Number(/step (\d+)/.exec(hover.text)[1]) < N * 10 &&
  Math.abs(hover.left - plot.width * 0.5) <= plot.width / N + 1, JSON.stringify(hover));

// ---------------------------------------------------- drag, zoom, reset
const y = plot.top + plot.height / 2;
await page.mouse.move(plot.left + plot.width * 0.3, y);
await page.mouse.down();
await page.mouse.move(plot.left + plot.width * 0.45, y, { steps: 4 });
same("while dragging the selection shows", await page.$eval("#one .chart-select", (e) => e.hidden), false);
await page.mouse.move(plot.left + plot.width * 0.6, y, { steps: 4 });
await page.mouse.up();
await page.evaluate(() => window.frame());
const zooms = await page.evaluate(() => window.zooms);
const [z0, z1] = zooms[0] ?? [];
check("a drag calls onZoom once with x0 < x1 inside the data's range",
  zooms.length === 1 && z0 < z1 && z0 > 10 && z1 < N * 10, JSON.stringify(zooms));
const inView = loss.filter((p) => p.x >= z0 && p.x <= z1).length;
same("the zoomed view draws the points between x0 and x1", await points("#one"), inView);
check("a zoom to 30%..60% of the width holds about 30% of the points", inView > N * 0.2 && inView < N * 0.4,
  `${inView} points`);
same("the selection hides after the drag", await page.$eval("#one .chart-select", (e) => e.hidden), true);
await page.evaluate(async (pts) => { window.one.setSeries([{ name: "loss", points: pts }]); await window.frame(); }, loss);
same("setSeries keeps the zoom (a finer range may replace the points)", await points("#one"), inView);
await page.mouse.click(plot.left + plot.width * 0.5, y, { clickCount: 1 });
await page.mouse.click(plot.left + plot.width * 0.5, y, { clickCount: 2 });
await page.evaluate(() => window.frame());
same("a double-click calls onZoom(null)", await page.evaluate(() => window.zooms.slice(1)), [[null]]);
same("... and draws every point again", await points("#one"), N);
await page.mouse.click(plot.left + plot.width * 0.5, y, { clickCount: 1 });
await page.mouse.click(plot.left + plot.width * 0.5, y, { clickCount: 2 });
same("a double-click with no zoom calls nothing", (await page.evaluate(() => window.zooms)).length, 2);
// zooms of 4 px, one in another, toward the spacing of doubles near x: they
// stop at a span of 1e-9 of x, and the axis still draws (its ticks used to
// be added up step by step, forever once a step was below that spacing)
const deep = await page.evaluate(async () => {
  const c = window.one, b = c.scale.box;
  for (let i = 0; i < 40; i++) {
    c.zoomPx(b.left + b.width / 2, b.left + b.width / 2 + 4);
    await window.frame(); // the next zoom's pixels are this view's
  }
  const [x0, x1] = c.view;
  const out = { zooms: window.zooms.length - 2, span: (x1 - x0) / x0 };
  c.resetZoom();
  await window.frame();
  window.zooms.length = 2;
  return out;
});
check("40 nested 4-px zooms stop at a span of 1e-9 of x and draw", deep.zooms > 1 && deep.zooms < 40 &&
  deep.span >= 1e-9, JSON.stringify(deep));
await page.mouse.move(plot.left + plot.width * 0.5, plot.top + plot.height + 200);

// ------------------------------------------------------------ log y
const logPts = loss.map((p, i) => (i % 10 === 3 ? { x: p.x, y: i % 20 === 3 ? 0 : -1 } : p));
const positive = logPts.filter((p) => p.y > 0).length;
await page.evaluate(async (pts) => {
  window.one.setSeries([{ name: "loss", points: pts }]);
  await window.frame();
}, logPts);
same("linear y: zeros and negatives drawn", await points("#one"), N);
await page.evaluate(async () => { window.one.setOptions({ logY: true }); await window.frame(); });
same("log y: non-positive values skipped", await points("#one"), positive);
const ticks = await page.evaluate(() => window.one.scale.logY);
same("log y: the scale is logarithmic", ticks, true);
await page.evaluate(async (pts) => {
  window.one.setOptions({ logY: false, smoothing: 0 });
  window.one.setSeries([{ name: "loss", points: pts }]);
  await window.frame();
}, loss);
same("setOptions back to linear y, smoothing 0: every point", await points("#one"), N);
await page.focus("#one .chart-plot");
await page.keyboard.press("End");
same("smoothing 0: the readout shows the raw value alone",
  await page.$eval("#one .chart-readout", (e) => e.textContent), `step ${N * 10}loss ${four(ys[N - 1])}`);
await page.keyboard.press("Escape");
await page.evaluate(async () => { window.one.setOptions({ smoothing: 0.6 }); await window.frame(); });

// ------------------------------------------------------- a wall-time axis
same("timeLabel: seconds on a short axis, m:ss, h:mm:ss",
  await page.evaluate(() => [[45], [2.5], [270, 600], [59.6, 120], [3720], [-90, 300]]
    .map((a) => window.chartLib.timeLabel(...a))),
  ["45 s", "2.5 s", "4:30", "1:00", "1:02:00", "-1:30"]);
const wall = await page.evaluate(async () => {
  const el = document.createElement("div");
  el.className = "cell";
  document.getElementById("after").before(el);
  const c = new window.chartLib.Chart(el, { title: "loss", xLabel: "time", xTime: true, smoothing: 0 });
  c.setSeries([{ name: "loss", points: Array.from({ length: 100 }, (_, i) => ({ x: i * 1.5, y: 1 / (i + 1) })) }]);
  await window.frame();
  el.querySelector(".chart-plot").focus();
  return el.dataset.points;
});
await page.keyboard.press("End");
same("xTime: every point drawn; the readout's x as a clock (148.5 s: 2:29)",
  [wall, await page.evaluate(() =>
    document.getElementById("after").previousElementSibling.querySelector(".chart-readout").textContent)],
  ["100", "time 2:29loss 0.01"]);
await page.keyboard.press("Escape");
await page.evaluate(() => document.getElementById("after").previousElementSibling.remove());

// ---------------------------------- two series, a band, 150,000 points
const bucket = (n, k) => curve(n, k).map((p, i) => ({ ...p, min: p.y * (0.8 - 0.1 * Math.sin(i)), max: p.y * 1.25 }));
const compare = [{ name: "lr 0.1", points: bucket(400, 1) }, { name: "lr 0.01", points: curve(300, 1.5) }];
const two = await page.evaluate(async (series) => {
  window.two = new window.chartLib.Chart(document.getElementById("two"),
    { title: "val_accuracy", xLabel: "epoch", smoothing: 0.6 });
  window.two.setSeries(series);
  await window.frame();
  return { points: Number(document.getElementById("two").dataset.points),
    legend: [...document.querySelectorAll("#two .chart-legend li")].map((li) => li.textContent) };
}, compare);
same("two series: data-points counts both", two.points, 700);
same("two series: a legend names both", two.legend, ["lr 0.1", "lr 0.01"]);

const big = Array.from({ length: 150000 }, (_, i) =>
  ({ x: i, y: 1 / (1 + i / 5000) + 0.05 * Math.sin(i / 7) + 0.02 * Math.sin(i * 1.3) }));
// each run: setSeries, then the frame that draws it; the first run is the
// page's first of this size (cold code), the next two with new data
const timeSeries = (pts) => page.evaluate(async (pts) => {
  const el = document.getElementById("one");
  let tf = 0; // the frame's start: this callback runs before the chart's
  window.requestAnimationFrame(() => { tf = performance.now(); });
  const t0 = performance.now();
  window.one.setSeries([{ name: "loss", points: pts }]);
  const t1 = performance.now();
  await window.frame();
  const t2 = performance.now();
  return { prep: t1 - t0, wait: tf - t1, draw: Number(el.dataset.drawMs), total: t2 - t0,
    points: Number(el.dataset.points) };
}, pts);
const runs = [];
for (let k = 0; k < 3; k++) runs.push(await timeSeries(big.map((p) => ({ x: p.x, y: p.y * (1 + k / 10) }))));
const timing = runs[0];
same("setSeries of 150,000 points: data-points", timing.points, 150000);
for (const [k, t] of runs.entries()) {
  console.log(`FIGURE 150,000 points, ${k ? "again, new data" : "first time"}: setSeries ${t.prep.toFixed(1)} ms + ` +
    `draw ${t.draw.toFixed(1)} ms; ${t.total.toFixed(1)} ms in all, ${t.wait.toFixed(1)} ms of it waiting for the frame`);
}
const redraw = await page.evaluate(async () => {
  const el = document.getElementById("one"), draws = [], waits = [];
  const median = (a) => a.sort((p, q) => p - q)[2];
  for (let i = 0; i < 5; i++) {
    let tf = 0;
    window.requestAnimationFrame(() => { tf = performance.now(); });
    const t0 = performance.now();
    window.one.setOptions({ smoothing: i % 2 ? 0.6 : 0.9 });
    await window.frame();
    draws.push(Number(el.dataset.drawMs));
    waits.push(tf - t0);
  }
  return { draw: median(draws), wait: median(waits) };
});
console.log(`FIGURE 150,000 points: a redraw (smoothing changed) ${redraw.draw.toFixed(1)} ms, ` +
  `after ${redraw.wait.toFixed(1)} ms waiting for the frame (medians of 5)`);

// -------------------------------------------------- themes, screenshots
const shots = process.env.SHOTS;
mkdirSync(shots, { recursive: true });
// opaque canvas pixels within 40 (summed channels) of the theme's --chart-1
const ofColour = () => page.evaluate(() => {
  const el = document.getElementById("two");
  const hex = getComputedStyle(el).getPropertyValue("--chart-1").trim();
  const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const c = el.querySelector("canvas");
  const copy = document.createElement("canvas"); // read from a copy: the chart's own context stays fast
  copy.width = c.width;
  copy.height = c.height;
  const cx = copy.getContext("2d", { willReadFrequently: true });
  cx.drawImage(c, 0, 0);
  const d = cx.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 240 && Math.abs(d[i] - want[0]) + Math.abs(d[i + 1] - want[1]) + Math.abs(d[i + 2] - want[2]) < 40) n++;
  }
  return { hex, n };
});
for (const scheme of ["light", "dark"]) {
  await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: scheme }]);
  await page.evaluate(() => window.frame());
  await page.evaluate(() => window.frame());
  const { hex, n } = await ofColour();
  check(`${scheme}: the first series is drawn in the theme's --chart-1 (${hex})`, n > 200, `${n} pixels of it`);
  await page.mouse.move(plot.left + plot.width * 0.7, plot.top + plot.height * 0.4);
  await page.screenshot({ path: `${shots}/chart-${scheme}.png`, clip: { x: 0, y: 0, width: 1280, height: 380 } });
  await page.mouse.move(plot.left, plot.top + plot.height + 200);
}
await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "light" }]);

// ------------------------------------------------------ resize, dpr, destroy
await page.setViewport({ width: 800, height: 720, deviceScaleFactor: 2 });
await page.evaluate(() => window.frame());
await page.evaluate(() => window.frame());
const hi = await page.$eval("#two canvas", (c) => ({ w: c.width, cw: c.clientWidth, h: c.height, ch: c.clientHeight }));
check("resized to 800 px at pixel ratio 2: the canvas follows, twice its CSS size",
  hi.w === 2 * hi.cw && hi.h === 2 * hi.ch && hi.cw < 400, JSON.stringify(hi));
const gone = await page.evaluate(async () => {
  window.two.destroy();
  await window.frame();
  const el = document.getElementById("two");
  return { children: el.children.length, points: el.dataset.points ?? null, chart: el.classList.contains("chart") };
});
same("destroy leaves the container as it was", gone, { children: 0, points: null, chart: false });

same("no console error, failed request or CSP violation", problems, []);
await browser.close();
server.close();
