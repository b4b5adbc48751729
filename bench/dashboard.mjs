// dashboard.mjs - bench/dashboard.sh's browser half: Debian's chromium,
// headless, driven through puppeteer-core (web/node_modules) against the
// daemon the script started. Measures the run page from the outside (DOM
// attributes the charts set, resource timing, the DevTools protocol); the
// page's own code is not touched. Prints one JSON line per bench on
// stdout, its progress on stderr.
//
//   first chart  a new browser context (no HTTP cache, no stored state)
//                per navigation, the token put in its localStorage as a
//                signed-in browser has it, then straight to the finished
//                run's address (#/jobs/ID): the time from navigation start
//                to the loss chart's first draw with points (a
//                MutationObserver on its data-points, installed before the
//                page's scripts run). After a warm-up on the runs table
//                (chromium's own start is not the page's): the first
//                navigation (the daemon computes the history, its reply
//                cache empty) apart, then RUNS more at the same width (the
//                same max_points=N, answered from the reply cache), then
//                RUNS at other widths (another N each: computed again).
//                Each line splits the time: the page and its modules, GET
//                /v1/me then /v1/jobs/ID, the history request (the
//                server's part: to its first byte), then parsing and
//                drawing.
//   live heap    on the runs table, submits the live job, opens its page
//                at once (the address's #/jobs/ID) and keeps it
//                open until the job has succeeded and the loss chart's
//                last point (its keyboard readout, End) is the last step;
//                the JS heap (Runtime.getHeapUsage) every 2 s, and after
//                a forced GC (HeapProfiler.collectGarbage) at the start
//                and the end. The metric stream's events are counted from
//                the DevTools protocol (Network.streamResourceContent), so
//                that the figures show the points came live, over SSE;
//                and the page's main-thread time (its script, all its
//                tasks) while it followed.
//
// Environment (set by dashboard.sh): CHROMIUM, URL, ADMIN (token),
// BIG_JOB (the finished job's id), BIG_STEPS, RUNS, LIVE_SPEC (a job spec
// file), LIVE_STEPS, COMMON (a JSON object added to each line).

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";

const require = createRequire(new URL("../web/package.json", import.meta.url));
const puppeteer = require("puppeteer-core");

const env = process.env;
const COMMON = JSON.parse(env.COMMON || "{}");
const RUNS = Number(env.RUNS || 5);
const BIG_STEPS = Number(env.BIG_STEPS), LIVE_STEPS = Number(env.LIVE_STEPS);
const WIDTH = 1280, HEIGHT = 900;
const SAMPLE_MS = 2000;
const LIVE_TIMEOUT_MS = 600000;
const MB = 1024 * 1024;
const LOSS = '.run-chart[data-name="loss"]';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => console.error(`bench dashboard: ${msg}`);
const round = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? null : Number(v.toFixed(d)));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const emit = (line) => console.log(JSON.stringify({ ...line, ...COMMON }));

// GET or POST PATH as the admin, the JSON answer (throws on a non-2xx)
async function api(method, path, body) {
  const res = await fetch(`${env.URL}${path}`, { method, body,
    headers: { Authorization: `Bearer ${env.ADMIN}` } });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

const browser = await puppeteer.launch({
  executablePath: env.CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-extensions", "--disable-background-networking"],
});

// A page in a context of its own, signed in (the token in localStorage
// before the page's scripts run), with what goes wrong in it collected.
async function freshPage(width) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  await page.setViewport({ width, height: HEIGHT });
  await page.evaluateOnNewDocument(watchLossChart, env.ADMIN);
  return { context, page, problems };
}

// In the page, before its scripts: the token, and window.__firstChart set
// the moment the loss chart first says it drew points (its performance.now(),
// which counts from navigation start; the points; the draw's own ms).
function watchLossChart(token) {
  if (!location.protocol.startsWith("http")) return; // about:blank
  localStorage.setItem("traind.token", token);
  const drawn = () => {
    const el = document.querySelector('.run-chart[data-name="loss"]');
    if (!el || !(Number(el.dataset.points) > 0)) return false;
    window.__firstChart = { ms: performance.now(), points: Number(el.dataset.points),
      drawMs: Number(el.dataset.drawMs) };
    return true;
  };
  new MutationObserver((_, obs) => { if (drawn()) obs.disconnect(); })
    .observe(document, { subtree: true, attributes: true, attributeFilter: ["data-points"] });
}

// ------------------------------------------------------------ first chart
// One cold navigation to the finished run's page: when the loss chart was
// drawn, and where the time went (resource timing of the history request).
async function firstChart(width) {
  const { context, page, problems } = await freshPage(width);
  try {
    await page.goto(`${env.URL}/#/jobs/${env.BIG_JOB}`, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => window.__firstChart, { timeout: 60000 });
    const t = await page.evaluate(() => {
      const find = (re) => performance.getEntriesByType("resource").find((e) => {
        const u = new URL(e.name);
        return re.test(u.pathname + u.search);
      });
      const h = find(/^\/v1\/jobs\/\d+\/metrics\?max_points=/), job = find(/^\/v1\/jobs\/\d+$/);
      const nav = performance.getEntriesByType("navigation")[0];
      return { ...window.__firstChart, url: h.name, start: h.startTime, requestStart: h.requestStart,
        responseStart: h.responseStart, responseEnd: h.responseEnd, bytes: h.encodedBodySize,
        decoded: h.decodedBodySize, scripts: nav.domContentLoadedEventEnd, job: job.responseEnd };
    });
    if (problems.length) throw new Error(problems.join("; "));
    return {
      first_chart_ms: t.ms, draw_ms: t.drawMs, points_drawn: t.points,
      max_points: Number(new URL(t.url).searchParams.get("max_points")),
      scripts_ms: t.scripts, // the page and its modules (DOMContentLoaded)
      job_ms: t.job, // then GET /v1/me, then GET /v1/jobs/ID (its response's end)
      before_history_ms: t.start,
      history_request_ms: t.responseEnd - t.start,
      history_server_ms: t.responseStart - t.requestStart, // to the first byte
      history_transfer_ms: t.responseEnd - t.responseStart,
      after_history_ms: t.ms - t.responseEnd, // parsing, the series, the draws
      history_bytes: t.bytes, history_bytes_decoded: t.decoded,
    };
  } finally {
    await context.close();
  }
}

// the summary line of a set of navigations
function firstChartLine(runs, extra) {
  const of = (k) => runs.map((r) => r[k]);
  const med = (k) => round(median(of(k)));
  return {
    bench: "dashboard_first_chart", steps: BIG_STEPS, ...extra, runs: runs.length,
    median_ms: med("first_chart_ms"), max_ms: round(Math.max(...of("first_chart_ms"))),
    each_ms: of("first_chart_ms").map((v) => round(v)),
    scripts_ms: med("scripts_ms"), job_ms: med("job_ms"), before_history_ms: med("before_history_ms"),
    history_request_ms: med("history_request_ms"), history_server_ms: med("history_server_ms"), history_transfer_ms: med("history_transfer_ms"),
    after_history_ms: med("after_history_ms"), draw_ms: med("draw_ms"),
    history_bytes: med("history_bytes"), history_bytes_decoded: med("history_bytes_decoded"),
    max_points: [...new Set(of("max_points"))], points_drawn: med("points_drawn"),
    goal_ms: 1000, goal_met: Math.max(...of("first_chart_ms")) < 1000,
  };
}

// The runs table in a context of its own first: chromium's own start (its
// first renderer, ~0.4 s here) is not the run page's, and a user's browser
// is running already. The run's history is not asked for.
async function warmUp() {
  const { context, page, problems } = await freshPage(WIDTH);
  await page.goto(`${env.URL}/`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#runs-table tbody tr", { timeout: 30000 });
  if (problems.length) throw new Error(problems.join("; "));
  await context.close();
}

async function firstChartBench() {
  const load = loadavg()[0];
  await warmUp();
  const first = await firstChart(WIDTH);
  log(`first navigation: ${round(first.first_chart_ms)} ms (history ${round(first.history_request_ms)} ms)`);
  const same = [], other = [];
  for (let i = 0; i < RUNS; i++) same.push(await firstChart(WIDTH));
  // another width each: another max_points, not in the reply cache yet
  for (let i = 1; i <= RUNS; i++) other.push(await firstChart(WIDTH - 40 * i));
  const seen = new Set([first.max_points, ...same.map((r) => r.max_points)]);
  if (other.some((r) => seen.has(r.max_points)) || new Set(other.map((r) => r.max_points)).size !== RUNS)
    throw new Error(`the other widths asked for max_points already asked: ${other.map((r) => r.max_points)}`);
  const loads = { loadavg_1m_start: load, loadavg_1m_end: loadavg()[0] };
  emit(firstChartLine([first], { navigation: "first", server_reply: "computed", ...loads }));
  emit(firstChartLine(same, { navigation: "cold page", server_reply: "reply cache", ...loads }));
  emit(firstChartLine(other, { navigation: "cold page", server_reply: "computed", ...loads }));
}

// ------------------------------------------------------------ live heap
// The page's metric streams (GET .../metrics?follow=1, one per connection:
// a reconnect is another), read through the DevTools protocol as they
// arrive: metric events counted, the last loss step, when data came.
function watchStreams(cdp) {
  const streams = new Map(); // requestId -> {decoder, buf, event}
  // after: the first stream's ?after= (the page's history ended there; -1: none)
  const seen = { metric: 0, loss: 0, lossLast: -1, bytes: 0, firstAt: 0, lastAt: 0, after: null, connections: 0 };
  const feed = (s, bytes) => {
    seen.bytes += bytes.length;
    seen.lastAt = Date.now();
    seen.firstAt ||= seen.lastAt;
    s.buf += s.decoder.decode(bytes, { stream: true });
    let nl;
    while ((nl = s.buf.indexOf("\n")) >= 0) {
      const line = s.buf.slice(0, nl).replace(/\r$/, "");
      s.buf = s.buf.slice(nl + 1);
      if (line.startsWith("event:")) s.event = line.slice(6).trim();
      else if (line.startsWith("data:") && s.event === "metric") {
        const p = JSON.parse(line.slice(5));
        seen.metric++;
        if (p.name === "loss") {
          seen.loss++;
          seen.lossLast = Math.max(seen.lossLast, p.step);
        }
      } else if (line === "") s.event = "message";
    }
  };
  cdp.on("Network.responseReceived", async (e) => {
    if (!/\/metrics\?follow=1/.test(e.response.url)) return;
    const s = { decoder: new TextDecoder(), buf: "", event: "message" };
    streams.set(e.requestId, s);
    seen.connections++;
    seen.after ??= Number(new URL(e.response.url).searchParams.get("after"));
    const { bufferedData } = await cdp.send("Network.streamResourceContent", { requestId: e.requestId });
    feed(s, Buffer.from(bufferedData, "base64"));
  });
  cdp.on("Network.dataReceived", (e) => {
    const s = streams.get(e.requestId);
    if (s && e.data) feed(s, Buffer.from(e.data, "base64"));
  });
  return seen;
}

const heapMb = async (cdp) => (await cdp.send("Runtime.getHeapUsage")).usedSize / MB;
async function heapAfterGcMb(cdp) {
  await cdp.send("HeapProfiler.collectGarbage");
  await cdp.send("HeapProfiler.collectGarbage");
  return heapMb(cdp);
}

// the step the loss chart's keyboard readout gives for its last point
async function chartLastStep(page) {
  await page.focus(`${LOSS} .chart-plot`);
  await page.keyboard.press("End");
  const text = await page.$eval(`${LOSS} .chart-readout-x`, (e) => (e.hidden ? "" : e.textContent));
  await page.keyboard.press("Escape");
  const m = /(\d+)$/.exec(text);
  return m ? Number(m[1]) : null;
}

async function liveBench() {
  const load = loadavg()[0];
  const { context, page, problems } = await freshPage(WIDTH);
  const cdp = await page.createCDPSession();
  await cdp.send("Network.enable");
  const seen = watchStreams(cdp);
  // the runs table first, so that the run's page opens within moments of
  // the submission (as a click on the new row would), not a page load later
  await page.goto(`${env.URL}/`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#runs-table tbody tr", { timeout: 30000 });
  const { id } = await api("POST", "/v1/jobs", readFileSync(env.LIVE_SPEC));
  const t0 = Date.now();
  await page.evaluate((id) => { location.hash = `#/jobs/${id}`; }, id);
  await page.waitForFunction(() => document.getElementById("run").dataset.state, { timeout: 30000 });
  const stateAtOpen = await page.$eval("#run", (e) => e.dataset.state);
  await page.waitForFunction(() => window.__firstChart, { timeout: 60000 });
  const heapStart = await heapAfterGcMb(cdp);
  const cpuStart = await page.metrics(); // the page's main-thread time so far
  log(`live job ${id} ${stateAtOpen} when its page opened; heap after GC ${round(heapStart, 2)} MB`);

  const samples = [], drawMs = [];
  let job;
  for (;;) {
    samples.push(await heapMb(cdp));
    drawMs.push(await page.$eval(LOSS, (e) => Number(e.dataset.drawMs)));
    job = await api("GET", `/v1/jobs/${id}`);
    if (["failed", "cancelled"].includes(job.state)) throw new Error(`the live job ${job.state}: ${job.error ?? ""}`);
    if (job.state === "succeeded" && seen.lossLast >= LIVE_STEPS) break;
    if (Date.now() - t0 > LIVE_TIMEOUT_MS)
      throw new Error(`the live job is ${job.state} at step ${job.progress?.step}, the stream at ${seen.lossLast}`);
    await sleep(SAMPLE_MS);
  }
  // the page draws once per animation frame: its chart catches up
  let chartLast = null;
  for (let i = 0; i < 20 && chartLast !== LIVE_STEPS; i++) {
    chartLast = await chartLastStep(page);
    if (chartLast !== LIVE_STEPS) await sleep(250);
  }
  if (chartLast !== LIVE_STEPS) throw new Error(`the loss chart's last step is ${chartLast}, want ${LIVE_STEPS}`);
  const heapEnd = await heapAfterGcMb(cdp);
  const metrics = await page.metrics();
  const points = await page.$eval(LOSS, (e) => Number(e.dataset.points));
  const series = await api("GET", `/v1/jobs/${id}/metrics?name=loss&max_points=1`);
  if (problems.length) throw new Error(problems.join("; "));
  await context.close();

  const trainS = (Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000;
  log(`live job: trained in ${round(trainS)} s; ${seen.metric} metric events over the stream; heap after GC ${round(heapEnd, 2)} MB`);
  emit({
    bench: "dashboard_live_heap", steps: LIVE_STEPS, state_at_open: stateAtOpen,
    heap_mb_after_gc: round(heapEnd, 2), heap_mb_after_gc_start: round(heapStart, 2),
    heap_mb_max: round(Math.max(...samples), 2), heap_mb_samples: samples.map((v) => round(v, 2)),
    sample_s: SAMPLE_MS / 1000, js_heap_used_mb: round(metrics.JSHeapUsedSize / MB, 2), dom_nodes: metrics.Nodes,
    points_received: seen.metric, loss_points_received: seen.loss, stream_after_step: seen.after,
    stream_bytes: seen.bytes, stream_connections: seen.connections,
    stream_span_s: round((seen.lastAt - seen.firstAt) / 1000), train_s: round(trainS),
    series_points: series.metrics[0]?.count ?? 0, chart_last_step: chartLast, loss_points_drawn: points,
    draw_ms_max: round(Math.max(...drawMs), 2),
    page_script_s: round(metrics.ScriptDuration - cpuStart.ScriptDuration, 2),
    page_task_s: round(metrics.TaskDuration - cpuStart.TaskDuration, 2), goal_mb: 50, goal_met: Math.max(heapEnd, ...samples) < 50,
    loadavg_1m_start: load, loadavg_1m_end: loadavg()[0],
  });
}

try {
  await firstChartBench();
  await liveBench();
} finally {
  await browser.close();
}
