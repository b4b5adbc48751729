// dashboard.mjs - test_dashboard.sh's browser half: drives Debian's
// chromium headless through puppeteer-core (web/node_modules) against the
// daemon the script started, and prints a "PASS NAME" or "FAIL NAME: WHY"
// line per check for the script to count. Each step saves a screenshot as
// $SHOTS/dashboard-N-NAME.png.
//
// Environment (all set by test_dashboard.sh): CHROMIUM, SHOTS, DASH_URL
// (the admin's logged #token= address), ADMIN, ALICE, BOB, CAROL (revoked)
// tokens, and JOBS: {"alice-short": {"id": 1, "user": "alice"}, ...} with
// alice-long running and bob-long queued behind it.

import { createRequire } from "node:module";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";

const require = createRequire(new URL("../../web/package.json", import.meta.url));
const puppeteer = require("puppeteer-core");

const env = process.env;
const JOBS = JSON.parse(env.JOBS);
const WAIT = { timeout: 15000 };

function check(name, ok, why) {
  console.log(ok ? `PASS ${name}` : `FAIL ${name}: ${why}`);
  return ok;
}
function same(name, got, want) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  return check(name, g === w, `got ${g}, want ${w}`);
}
const namesOf = (user) => Object.keys(JOBS).filter((n) => !user || JOBS[n].user === user).sort();

// --------------------------------------------------------------- the browser
const browser = await puppeteer.launch({
  executablePath: env.CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-extensions", "--disable-background-networking"],
  defaultViewport: { width: 1280, height: 720 },
});
const page = await browser.newPage();
// the browser's own record of layout jumps (the Layout Instability API,
// whose entries Core Web Vitals' CLS sums), from each document's start;
// those just after an input too, which CLS leaves out
await page.evaluateOnNewDocument(() => {
  window.layoutShifts = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      window.layoutShifts.push({ t: e.startTime, value: e.value,
        moved: e.sources.map((x) => `${x.node?.nodeName ?? "?"}#${x.node?.id ||
          x.node?.getAttribute?.("aria-labelledby") || ""}`) });
  }).observe({ type: "layout-shift", buffered: true });
});
// the layout shift since performance.now() was `t0`: 0 when nothing moved
// and what moved ("PRE#run-logs")
const shiftSince = (t0) => page.evaluate((t0) => {
  const since = window.layoutShifts.filter((e) => e.t >= t0);
  return { value: since.reduce((a, e) => a + e.value, 0), moved: [...new Set(since.flatMap((e) => e.moved))] };
}, t0);
const now = () => page.evaluate(() => performance.now());
mkdirSync(env.SHOTS, { recursive: true });
// a screenshot of the page down to its content's end (the viewport's height at most)
async function shot(name) {
  const { width, height } = page.viewport();
  const end = await page.evaluate(() => Math.ceil(document.querySelector("main").getBoundingClientRect().bottom));
  await page.screenshot({ path: `${env.SHOTS}/dashboard-${name}.png`,
    clip: { x: 0, y: 0, width, height: Math.min(height, Math.max(end + 16, 240)) } });
}

// Everything that goes wrong in the page; a refused token's 401 (and the
// browser's console line about it) is expected only while `expect401` is.
const problems = [];
let expect401 = false, expected401 = 0, listRequests = 0, cancelPosts = 0, deviceRequests = 0;
let expect404 = null, expected404 = 0, leaving = false, streamsAborted = 0;
const streams = new Set(); // the page's open follow=1 requests
// every request the page made, in order (not this script's apiGet, marked
// X-Test): asked(N, RE), the URLs of those since requests.length was N
// whose path matches RE
const requests = [];
const asked = (from, re) => requests.slice(from).map((u) => new URL(u)).filter((u) => re.test(u.pathname));
page.on("console", (m) => {
  if (m.type() !== "error" && m.type() !== "warn") return;
  if (expect401 && /status of 401/.test(m.text())) return;
  if (expect404 && /status of 404/.test(m.text())) return;
  problems.push(`console ${m.type()}: ${m.text()} (${m.location()?.url ?? ""})`);
});
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("requestfailed", (r) => {
  const stream = streams.delete(r);
  // the page aborts requests only as it leaves a view (run.js, compare.js,
  // devices.js: stop()): a stream then is counted, a history fetch still in
  // flight (which view changes can catch) is expected; nothing else fails
  const aborted = r.failure()?.errorText === "net::ERR_ABORTED";
  if (stream && leaving && aborted) streamsAborted++;
  else if (!(aborted && !stream && new URL(r.url()).pathname.startsWith("/v1/")))
    problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
});
page.on("requestfinished", (r) => streams.delete(r));
page.on("request", (r) => {
  if (!r.headers()["x-test"]) requests.push(r.url());
  if (/[?&]follow=1/.test(r.url())) streams.add(r);
  if (/\/v1\/jobs\?/.test(r.url())) listRequests++;
  if (r.url().endsWith("/v1/devices")) deviceRequests++;
  if (r.method() === "POST" && /\/cancel$/.test(r.url())) cancelPosts++;
});
page.on("response", (r) => {
  if (r.status() < 400) return;
  if (expect401 && r.status() === 401 && r.url().endsWith("/v1/me")) expected401++;
  else if (expect404 && r.status() === 404 && r.url().endsWith(expect404)) expected404++;
  else problems.push(`${r.request().method()} ${r.url()}: ${r.status()}`);
});

// ------------------------------------------------------------- page helpers
const rows = () => page.$$eval("#runs-table tbody tr", (trs) => trs.map((tr) => ({
  id: Number(tr.dataset.id), name: tr.cells[1].textContent, user: tr.cells[2].textContent,
  state: tr.dataset.state, step: Number(tr.dataset.step), progress: tr.cells[5].textContent,
  fill: tr.querySelector(".fill").style.width, loss: tr.cells[6].textContent,
  val: tr.cells[7].textContent, cancel: !tr.querySelector("button.cancel").hidden,
})));
const visible = (sel) => page.$eval(sel, (e) => !e.hidden && e.offsetParent !== null);
const who = () => page.$eval("#who", (e) => e.firstChild.textContent + e.querySelector("strong").textContent +
  (e.querySelector(".role") ? ` [${e.querySelector(".role").textContent}]` : ""));
const stored = () => page.evaluate(() => localStorage.getItem("traind.token"));

// waits for the runs of a signed-in user: `n` rows (after a refresh)
async function signedInWith(n) {
  await page.waitForFunction((n) => !document.getElementById("runs").hidden &&
    document.querySelectorAll("#runs-table tbody tr").length === n, WAIT, n);
}

async function signOut() {
  if (!(await visible("#signout"))) return; // the form is there already
  await page.click("#signout");
  await page.waitForSelector("#signin:not([hidden])", WAIT);
}

async function paste(token) {
  await page.type("#token-input", token);
  await page.keyboard.press("Enter");
}

// the run page of job `id`, once its header says its state
async function openRun(id) {
  await page.evaluate((id) => { location.hash = `#/jobs/${id}`; }, id);
  await page.waitForFunction(() => document.getElementById("run").dataset.state &&
    !document.getElementById("run-page").hidden, WAIT);
}
const chartPoints = (name) => page.$eval(`figure.run-chart[data-name="${name}"]`, (f) => Number(f.dataset.points));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// GET PATH through the API as the page's user
const apiGet = (path) => page.evaluate(async (path) => (await fetch(path,
  { headers: { Authorization: `Bearer ${localStorage.getItem("traind.token")}`, "X-Test": "1" } })).json(), path);
// a metric's value as the page's runs table writes it (format.js, loaded as the page loads it)
const formatted = (values) => page.evaluate(async (values) =>
  values.map((await import("/assets/format.js")).metric), values);
// what the log panel shows: each line's seq and text, and its note
const logShown = () => page.$eval("#run-logs", (pre) => {
  const note = pre.parentElement.querySelector(".log-cut");
  return { seqs: [...pre.children].map((d) => Number(d.dataset.seq)),
    lines: [...pre.children].map((d) => d.textContent), note: note.hidden ? "hidden" : note.textContent };
});
// the query of each URL, by the job of its /v1/jobs/ID/... path: "3?name=loss&..."
const byJob = (urls) => urls.map((u) => `${u.pathname.split("/")[3]}?${u.searchParams}`).sort();
// every point of one metric of a job, as the API pages them
async function allPoints(id, name) {
  const out = [];
  for (let after = -1; after !== null;) {
    const h = await apiGet(`/v1/jobs/${id}/metrics?name=${name}&after=${after}&limit=100000`);
    out.push(...h.metrics);
    after = h.next_after ?? null;
  }
  return out;
}

// clicks "Download CSV" and reads the file the browser saved (waiting
// until it is `want`, or 5 s)
async function savedCsv(file, want) {
  const dir = `${env.SHOTS}/downloads`;
  mkdirSync(dir, { recursive: true });
  const cdp = await browser.target().createCDPSession();
  await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: dir });
  rmSync(`${dir}/${file}`, { force: true });
  await page.click("#compare-csv");
  let got = "";
  for (let i = 0; i < 50 && got !== want; i++, await sleep(100))
    got = existsSync(`${dir}/${file}`) ? readFileSync(`${dir}/${file}`, "utf8") : "";
  return got;
}
// the CSV of `series` ([[name, points]]) as compare.js writes it
const csvOf = (series) => ["run,step,value", ...series.flatMap(([name, pts]) =>
  pts.map((p) => `${name},${p.step},${p.value ?? ""}`))].join("\n") + "\n";
// the compare chart's width as compare.js asks max_points by it
const compareWidth = () => page.$eval("#compare-chart", (e) => Math.max(100, Math.min(4000, Math.round(e.clientWidth))));

async function step(name, fn) {
  try {
    await fn();
  } catch (e) {
    check(name, false, `${e.message.split("\n")[0]}`);
    await shot(`failed-${name.replace(/[^a-z0-9]+/gi, "-")}`).catch(() => {});
  }
}

// ------------------------------------- 1. the admin's #token= address
await step("1 admin address", async () => {
  await page.goto(env.DASH_URL, { waitUntil: "load" });
  await signedInWith(4);
  same("1: signed in as the admin, shown as one", await who(), "Signed in as admin [admin]");
  const href = await page.evaluate(() => location.href);
  check("1: the #token= fragment is gone from the address bar", !href.includes("token"), href);
  same("1: the token is kept in localStorage", await stored(), env.ADMIN);
  const r = await rows();
  same("1: the admin sees both users' runs", r.map((x) => x.name).sort(), namesOf());
  same("1: each run's user", r.map((x) => `${x.name}:${x.user}`).sort(),
    namesOf().map((n) => `${n}:${JOBS[n].user}`));
  check("1: the user filter is offered to the admin", await visible("#filter-user-label"), "hidden");
  await page.waitForFunction(() => [...document.querySelectorAll("#runs-table tbody tr")]
    .filter((tr) => tr.dataset.state === "succeeded").every((tr) => tr.cells[7].textContent), WAIT);
  const done = (await rows()).filter((x) => x.state === "succeeded");
  check("1: finished runs show their latest loss and val_accuracy",
    done.length === 2 && done.every((x) => Number(x.loss) > 0 && Number(x.val) > 0 && Number(x.val) <= 1),
    JSON.stringify(done));
  check("1: a finished run's bar is full", done.every((x) => parseFloat(x.fill) === 100), JSON.stringify(done));
  await shot("1-admin");
});

// ------------------------------------- 12. a queued run's page: its place and why
await step("12 queued run", async () => {
  await openRun(JOBS["bob-long"].id);
  same("12: bob-long's page says queued", await page.$eval("#run-state", (e) => e.textContent), "queued");
  const q = await page.$eval("#run-queue", (e) => (e.hidden ? "hidden" : e.textContent));
  check("12: its place in the queue and why it waits", /^Queued: position 1 \(0 ahead\), waiting for \w+/.test(q), q);
  await shot("12-run-queued");
  leaving = true;
  await page.goBack();
  await signedInWith(4);
  await sleep(300);
  same("12: back: no stream left open", streams.size, 0);
  leaving = false;
});

// ------------------------------------- 13. devices and queue (as the admin)
await step("13 devices", async () => {
  await page.click('#topnav a[href="#/devices"]');
  await page.waitForFunction((id) => document.querySelector(`#queue-table tr[data-job="${id}"]`) &&
    document.querySelectorAll("#devices-table tbody tr").length > 0, WAIT, JOBS["bob-long"].id);
  const api = await apiGet("/v1/devices");
  const workers = api.devices.flatMap((d) => d.workers.map((w) => `${d.device}/${w.worker}:${w.job?.id ?? "idle"}`));
  const shown = await page.$$eval("#devices-table tbody tr", (trs) =>
    trs.map((tr) => `${tr.dataset.device}/${tr.dataset.worker}:${tr.dataset.job || "idle"}`));
  same("13: a row per worker of GET /v1/devices, with its job", shown, workers);
  same("13: the daemon's one worker runs alice-long", workers, [`cpu/0:${JOBS["alice-long"].id}`]);
  const link = await page.$eval(`#devices-table a[href="#/jobs/${JOBS["alice-long"].id}"]`, (a) => a.textContent);
  same("13: the worker's job links to its run page, by name", link, `alice-long (#${JOBS["alice-long"].id})`);
  const mem = await page.$eval("#devices-table tbody tr td:nth-child(3)", (td) => td.textContent);
  check("13: the device's memory", /^[\d.]+ of [\d.]+ GiB free$/.test(mem), mem);
  const queue = (await apiGet("/v1/queue")).queue;
  const rowsQ = await page.$$eval("#queue-table tbody tr", (trs) => trs.map((tr) =>
    [...tr.cells].slice(0, 5).map((td) => td.textContent)));
  same("13: the queue in order: position, job, user, device, reason",
    rowsQ, queue.map((q) => [String(q.position), `bob-long (#${q.id})`, "bob", q.device_request ?? "", q.reason]));
  same("13: bob-long waits, first in line, for a worker", queue.map((q) => [q.id, q.reason]),
    [[JOBS["bob-long"].id, "Resources"]]);
  const before = deviceRequests, t0 = Date.now();
  const refreshes = await page.$eval("#devices", (e) => Number(e.dataset.refreshes));
  await page.waitForFunction((n) => Number(document.getElementById("devices").dataset.refreshes) > n,
    { timeout: 5000 }, refreshes);
  const waited = Date.now() - t0;
  check(`13: refreshed on its own, by a new GET /v1/devices (after ${waited} ms)`,
    deviceRequests > before, `${before} -> ${deviceRequests} requests, ${waited} ms`);
  await shot("devices");
  await page.click('#topnav a[href="#/"]'); // just refreshed: no request in flight to abort
  await signedInWith(4);
});

// ------------------------------------- 2. alice's and bob's tokens, pasted
for (const user of ["alice", "bob"]) {
  await step(`2 ${user}`, async () => {
    await signOut();
    same(`2: signing out forgets the token (before ${user})`, await stored(), null);
    await paste(env[user.toUpperCase()]);
    await signedInWith(namesOf(user).length);
    same(`2: signed in as ${user}, not an admin`, await who(), `Signed in as ${user}`);
    const r = await rows();
    same(`2: ${user} sees only ${user}'s runs`, r.map((x) => x.name).sort(), namesOf(user));
    same(`2: a cancel button on ${user}'s queued or running runs only`,
      r.filter((x) => x.cancel).map((x) => x.name).sort(),
      r.filter((x) => x.state === "queued" || x.state === "running").map((x) => x.name).sort());
    check(`2: no user filter for ${user}`, !(await visible("#filter-user-label")), "shown");
    await shot(`2-${user}`);
  });
}

// ------------------------------------- 15. devices and queue as bob, while alice's job runs
await step("15 devices as bob", async () => {
  const blong = JOBS["bob-long"].id;
  await page.click('#topnav a[href="#/devices"]');
  await page.waitForFunction((id) => document.querySelector(`#queue-table tr[data-job="${id}"]`) &&
    document.querySelectorAll("#devices-table tbody tr").length > 0, WAIT, blong);
  const api = await apiGet("/v1/devices");
  same("15: GET /v1/devices tells bob that the worker is busy, nothing of alice's job",
    api.devices.flatMap((d) => d.workers.map((w) => w.job)), [{ busy: true }]);
  const shown = await page.$$eval("#devices-table tbody tr", (trs) =>
    trs.map((tr) => [tr.dataset.device, tr.dataset.worker, tr.dataset.job, tr.cells[4].textContent]));
  same("15: the page shows just that: busy with another user's job, no id",
    shown, api.devices.flatMap((d) => d.workers.map((w) => [d.device, String(w.worker), "", "another user's job"])));
  const text = await page.$eval("#devices", (e) => e.textContent);
  same("15: no name, user, rate or link of alice's job on the page",
    [/alice/.test(text), /samples\/s/.test(text), await page.$$eval("#devices a", (as) => as.map((a) => a.getAttribute("href")))],
    [false, false, [`#/jobs/${blong}`]]);
  const queue = (await apiGet("/v1/queue")).queue;
  same("15: bob's queue: bob-long, his own, by name", queue.map((q) => [q.id, q.name]), [[blong, "bob-long"]]);
  same("15: the queue's rows as GET /v1/queue tells bob",
    await page.$$eval("#queue-table tbody tr", (trs) => trs.map((tr) => [...tr.cells].slice(0, 5).map((td) => td.textContent))),
    queue.map((q) => [String(q.position), `${q.name} (#${q.id})`, "bob", q.device_request ?? "", q.reason]));
  await shot("15-devices-bob");
  await page.click('#topnav a[href="#/"]');
  await signedInWith(namesOf("bob").length);
});

// ------------------------------------- 3. a bad token, a revoked one
for (const [what, t] of [["bad", "0".repeat(64)], ["revoked", env.CAROL]]) {
  await step(`3 ${what} token`, async () => {
    await signOut();
    expect401 = true;
    const before = expected401;
    await paste(t);
    for (let i = 0; i < 150 && expected401 === before; i++) await sleep(100); // the form may show the last error
    await page.waitForSelector("#signin-error:not([hidden])", WAIT);
    const msg = await page.$eval("#signin-error", (e) => e.textContent);
    check(`3: a ${what} token: the clear message with the server's reason`,
      /^This token is not valid: invalid token$/i.test(msg), msg);
    check(`3: a ${what} token: the form again`, await visible("#signin-form"), "no form");
    check(`3: a ${what} token: no runs shown`, !(await visible("#runs")), "runs shown");
    same(`3: a ${what} token: not kept`, await stored(), null);
    same(`3: a ${what} token: one 401 from GET /v1/me`, expected401 - before, 1);
    expect401 = false;
    await shot(`3-${what}-token`);
  });
}

// ------------------------------------- 4. live: the running job's progress grows
const along = JOBS["alice-long"].id;
await step("4 live", async () => {
  await paste(env.ALICE);
  await signedInWith(namesOf("alice").length);
  const first = (await rows()).find((x) => x.id === along);
  same("4: alice-long is running", first?.state, "running");
  const lists = listRequests;
  await page.waitForFunction((id, s) => Number(document.querySelector(`tr[data-id="${id}"]`)
    ?.dataset.step) > s, WAIT, along, first.step);
  const later = (await rows()).find((x) => x.id === along);
  check(`4: its step grows between two looks (${first.step} -> ${later.step})`,
    later.step > first.step, `${first.step} -> ${later.step}`);
  check("4: refreshed by a new GET /v1/jobs", listRequests > lists, `${listRequests} lists`);
  check(`4: its bar and text say so (${later.fill}, '${later.progress}')`,
    parseFloat(later.fill) > 0 && /^[0-9.]+K? \/ 1M · /.test(later.progress) &&
    /left$/.test(later.progress), JSON.stringify(later));
  check("4: its latest loss is shown", Number(later.loss) > 0, later.loss);
  await shot("4-live");
  // one request per refresh: the list carries each job's latest metrics
  // the instrument works: a line pushed in above the table moves it
  const probe = await now();
  await page.evaluate(() => document.querySelector("main").prepend(Object.assign(
    document.createElement("p"), { id: "shift-probe", textContent: "a line that moves the page" })));
  await sleep(300);
  const moved = await shiftSince(probe);
  await page.evaluate(() => document.getElementById("shift-probe").remove());
  check(`4: a line pushed in above the table is a layout shift (${moved.value.toFixed(3)})`,
    moved.value > 0 && moved.moved.includes("SECTION#runs"), JSON.stringify(moved));
  await sleep(300);
  const from = requests.length, lists0 = listRequests, still = await now();
  for (let i = 0; i < 70 && listRequests < lists0 + 2; i++) await sleep(100);
  await sleep(200);
  const shift = await shiftSince(still);
  check("4: two refreshes of the table move nothing on the page (layout shift)", shift.value === 0,
    JSON.stringify(shift));
  const v1 = asked(from, /^\/v1\//).map((u) => u.pathname);
  check(`4: two refreshes, by GET /v1/jobs alone: no request per job (${v1.length} requests)`,
    v1.length >= 2 && v1.every((p) => p === "/v1/jobs"), JSON.stringify(v1));
  // the table's values are the list's latest ones, as the page formats them
  const reply = await (await page.waitForResponse((r) => new URL(r.url()).pathname === "/v1/jobs" &&
    !r.request().headers()["x-test"], WAIT)).json();
  await sleep(200); // rendered; the next refresh is 2 s away
  const table = (await rows()).map((x) => [x.id, x.loss, x.val]).sort((a, b) => a[0] - b[0]);
  const jobs = [...reply.jobs].sort((a, b) => a.id - b.id);
  const loss = await formatted(jobs.map((j) => (j.metrics.loss ?? j.metrics.train_loss)?.value));
  const val = await formatted(jobs.map((j) => j.metrics.val_accuracy?.value));
  same("4: each row's loss and val_accuracy: the list's latest values", table,
    jobs.map((j, i) => [j.id, loss[i], val[i]]));
  check("4: values there to compare (alice-long's loss, alice-short's val_accuracy)",
    table.find((r) => r[0] === along)?.[1] !== "" &&
    table.find((r) => r[0] === JOBS["alice-short"].id)?.[2] !== "", JSON.stringify(table));
  const short = await apiGet(`/v1/jobs/${JOBS["alice-short"].id}`);
  same("4: alice-short's row: GET /v1/jobs/ID's latest loss and val_accuracy",
    table.find((r) => r[0] === short.id).slice(1),
    await formatted([short.metrics.loss.value, short.metrics.val_accuracy.value]));
});


// ------------------------------------- 9. alice-long's page, live
await step("9 run page", async () => {
  const historyReply = page.waitForResponse((r) => /\/metrics\?max_points=\d+$/.test(r.url()), WAIT)
    .then((r) => r.json());
  const pageFrom = requests.length;
  await page.click(`tr[data-id="${along}"] td.col-name a`);
  await page.waitForFunction(() => !document.getElementById("run-page").hidden, WAIT);
  same("9: the name links to #/jobs/ID", await page.evaluate(() => location.hash), `#/jobs/${along}`);
  same("9: its header: name and state", await page.$eval("#run-title", (e) => e.textContent) + " " +
    await page.$eval("#run-state", (e) => e.textContent), "alice-long running");
  check("9: its progress: step N / 1,000,000 and an ETA",
    /^step [\d,]+ \/ 1,000,000 · epoch \d+ · .* left$/.test(await page.$eval("#run-progress", (e) => e.textContent)),
    await page.$eval("#run-progress", (e) => e.textContent));
  // data-points: what the chart drew; its series is halved past twice the
  // chart's width, so the count is read as it grows, not later
  const drawn = (n) => page.waitForFunction((n) => {
    const got = Number(document.querySelector('figure.run-chart[data-name="loss"]')?.dataset.points);
    return got > n && got;
  }, WAIT, n);
  const n0 = await (await drawn(0)).jsonValue();
  // the page as it opened: charts drawn, the log and the checkpoints shown
  await page.waitForFunction(() => Number(document.getElementById("run-logs").dataset.lines) > 0 &&
    (document.querySelector("#run-checkpoints li") || document.getElementById("run-checkpoints-note")
      .textContent), WAIT);
  const streaming = await now();
  const n1 = await (await drawn(n0)).jsonValue();
  check(`9: the loss chart gains points while it trains (${n0} -> ${n1})`, n0 > 0 && n1 > n0, `${n0} -> ${n1}`);
  check("9: a canvas drawn in the loss chart", await page.$eval('figure.run-chart[data-name="loss"] canvas',
    (c) => c.width > 0 && c.height > 0), "no canvas");
  await sleep(3500); // a header refresh (3 s), log lines and points streaming in
  const shift = await shiftSince(streaming);
  check("9: points, log lines, checkpoints and the header streaming in move nothing (layout shift)",
    shift.value === 0, JSON.stringify(shift));
  // thousands of points streamed in, cut into buckets again past the
  // chart's budget: the chart still starts at the run's start
  await page.focus('figure.run-chart[data-name="loss"] .chart-plot');
  const readStep = async (key) => {
    await page.keyboard.press(key);
    return Number((await page.$eval('figure.run-chart[data-name="loss"] .chart-readout-x',
      (e) => e.textContent)).replace("step ", ""));
  };
  const firstStep = await readStep("Home"), lastStep = await readStep("End");
  await page.keyboard.press("Escape");
  check(`9: the live loss chart spans the whole run: steps ${firstStep} to ${lastStep}`,
    lastStep > 2000 && firstStep <= lastStep / 100, `${firstStep} to ${lastStep}`);
  const log = await page.$eval("#run-logs", (e) => e.textContent);
  check("9: the log panel shows the job's lines", /started|epoch/.test(log), log.slice(0, 200));
  same("9: the log panel asks for the last 500 lines, then follows",
    asked(pageFrom, /\/logs$/).map((u) => `${u.pathname}${u.search}`), [`/v1/jobs/${along}/logs?follow=1&tail=500`]);
  const shown = await logShown(), first = shown.seqs[0], last = shown.seqs.at(-1);
  check(`9: 500 lines, from line ${first} to ${last}, none missing`, shown.seqs.length === 500 && first > 1 &&
    shown.seqs.every((q, i) => q === first + i), JSON.stringify(shown.seqs.slice(0, 3)));
  same("9: a note says the older lines are left out", shown.note,
    `Showing the last 500 lines of ${last.toLocaleString("en")}.`);
  same("9: the lines are the API's lines of those numbers", shown.lines,
    (await apiGet(`/v1/jobs/${along}/logs?after=${first - 1}&limit=500`)).lines.map((l) => l.line));
  const curl = await page.$eval("#run-curl", (e) => e.textContent);
  check("9: copy as curl: the spec in a heredoc, to POST /v1/jobs",
    curl.startsWith('curl -H "Authorization: Bearer $TOKEN" --data-binary @- ') &&
    curl.includes("/v1/jobs <<'SPEC'") && curl.includes('"name": "alice-long"') &&
    curl.includes('"epochs": 100000') && curl.endsWith("\nSPEC"), curl);
  check("9: copy as curl: not the token itself", !curl.includes(env.ALICE), "the token is in it");
  await shot("9-run-live");
  // zoom: a drag over 30-50% of the loss chart asks the server for finer points
  const history = await historyReply;
  const plot = await (await page.$('figure.run-chart[data-name="loss"] .chart-plot')).boundingBox();
  const zoomReply = page.waitForResponse((r) =>
    /\/metrics\?name=loss&after=\d+&before=\d+&(limit|max_points)=\d+$/.test(r.url()), WAIT);
  await page.mouse.move(plot.x + plot.width * 0.3, plot.y + plot.height / 2);
  await page.mouse.down();
  await page.mouse.move(plot.x + plot.width * 0.5, plot.y + plot.height / 2, { steps: 5 });
  await page.mouse.up();
  const zr = await zoomReply;
  await page.waitForSelector('figure.run-chart[data-name="loss"][data-zoom]', WAIT);
  const [from, to] = (await page.$eval('figure.run-chart[data-name="loss"]', (f) => f.dataset.zoom))
    .split("-").map(Number);
  const inRange = (pts) => pts.filter((p) => p.name === "loss" && p.step >= from && p.step <= to).length;
  const zoomed = (await zr.json()).metrics, zq = new URL(zr.url()).searchParams;
  const fine = inRange(zoomed), coarse = inRange(history.metrics);
  check(`9: zooming into steps ${from}-${to} gets finer points from the server (${coarse} -> ${fine})`,
    zr.status() === 200 && to > from && fine > coarse && fine === zoomed.length &&
    zq.get("after") === String(from - 1) && zq.get("before") === String(to + 1),
    `${zr.status()} ${zr.url()}: ${coarse} -> ${fine} of ${zoomed.length}`);
  await shot("9-run-zoomed");
  await page.click('figure.run-chart[data-name="loss"] .chart-plot', { count: 2 });
  await page.waitForSelector('figure.run-chart[data-name="loss"]:not([data-zoom])', WAIT).catch(() => {});
  same("9: a double-click: back to the whole run (no zoom)",
    await page.$eval('figure.run-chart[data-name="loss"]', (f) => f.dataset.zoom ?? "none"), "none");
  // x by wall time: seconds from the run's first point, read as a clock
  await page.select("#chart-x", "time");
  await page.waitForFunction(() => Number(document.querySelector('figure.run-chart[data-name="loss"]')
    ?.dataset.points) > 0, WAIT);
  await page.focus('figure.run-chart[data-name="loss"] .chart-plot');
  // the chart of the new axis may be laid out a frame after its points
  // arrive, and a key before that shows no readout: press until it does
  let timeX = null;
  for (let i = 0; i < 50 && !timeX; i++) {
    await page.keyboard.press("End");
    timeX = await page.$eval('figure.run-chart[data-name="loss"] .chart-readout-x',
      (e) => e.textContent).catch(() => null);
    if (!timeX) await sleep(100);
  }
  const lastPoint = history.metrics.filter((p) => p.name === "loss").at(-1);
  const firstTime = Math.min(...history.metrics.map((p) => p.wall_time));
  check("9: x by time: the loss chart drawn, its last point read as m:ss from the run's start",
    /^time \d+:\d\d$/.test(timeX) && lastPoint.wall_time - firstTime >= 0, `${timeX}`);
  await shot("9-run-by-time");
  await page.keyboard.press("Escape");
  await page.select("#chart-x", "step");
  same("9: two streams open: metrics and logs", [...streams].map((r) => new URL(r.url()).pathname).sort(),
    [`/v1/jobs/${along}/logs`, `/v1/jobs/${along}/metrics`]);
  leaving = true;
  const aborted = streamsAborted;
  await page.goBack();
  await signedInWith(namesOf("alice").length);
  await sleep(300);
  same("9: back to the runs: its streams aborted, none open", [streamsAborted - aborted, streams.size], [2, 0]);
  await openRun(along);
  await page.waitForFunction(() => document.querySelectorAll("#run-logs div").length > 0, WAIT);
  // a message this run's page shows (a failed download, say) is not the next page's
  await page.evaluate(() => { document.getElementById("run-status").textContent = "a message of this run"; });
  await page.click(".crumbs a");
  await signedInWith(namesOf("alice").length);
  await sleep(300);
  same("9: the Runs link: back to the table, no stream open", [await page.evaluate(() => location.hash), streams.size],
    ["#/", 0]);
  same("9: ... the run's status line left with it", await page.$eval("#run-status", (e) => e.textContent), "");
  leaving = false;
});

// ------------------------------------- 5. cancel alice-long from the page
await step("5 cancel", async () => {
  const sel = `tr[data-id="${along}"] button.cancel`;
  let asked = "";
  page.once("dialog", (d) => { asked = d.message(); d.dismiss(); });
  await page.click(sel);
  await new Promise((r) => setTimeout(r, 500));
  check("5: a confirm() dialog names the run", asked.includes(String(along)) && asked.includes("alice-long"), asked);
  same("5: dismissed: no cancel request, still running",
    [cancelPosts, (await rows()).find((x) => x.id === along).state], [0, "running"]);
  page.once("dialog", (d) => d.accept());
  await page.click(sel);
  await page.waitForSelector(`tr[data-id="${along}"][data-state="cancelled"]`, WAIT);
  same("5: accepted: one POST .../cancel", cancelPosts, 1);
  const r = (await rows()).find((x) => x.id === along);
  same("5: its row says cancelled, no cancel button", [r.state, r.cancel], ["cancelled", false]);
  await shot("5-cancelled");
});

// ------------------------------------- 6. sort and filter (as the admin)
await step("6 sort and filter", async () => {
  await signOut();
  await paste(env.ADMIN);
  await signedInWith(4);
  await page.click('th[data-key="name"] button');
  const up = (await rows()).map((x) => x.name);
  same("6: sorted by name, ascending", up, namesOf());
  same("6: aria-sort ascending on Name",
    await page.$eval('th[data-key="name"]', (th) => th.getAttribute("aria-sort")), "ascending");
  await page.click('th[data-key="name"] button');
  same("6: again: descending", (await rows()).map((x) => x.name), [...namesOf()].reverse());
  same("6: aria-sort descending, none on #",
    await page.$$eval("th[aria-sort]", (ths) => ths.map((th) => `${th.dataset.key}:${th.getAttribute("aria-sort")}`)),
    ["name:descending"]);
  await page.select("#filter-state", "succeeded");
  await page.waitForFunction(() => [...document.querySelectorAll("#runs-table tbody tr")]
    .every((tr) => tr.dataset.state === "succeeded"), WAIT);
  same("6: state succeeded: the two short runs", (await rows()).map((x) => x.name),
    ["bob-short", "alice-short"]);
  await page.select("#filter-user", "bob");
  await page.waitForFunction(() => document.querySelectorAll("#runs-table tbody tr").length === 1, WAIT);
  same("6: and user bob: bob-short", (await rows()).map((x) => x.name), ["bob-short"]);
  await page.select("#filter-state", "");
  await page.select("#filter-user", "");
  await signedInWith(4);
  await page.type("#filter-name", "alice-*");
  same("6: name glob alice-*", (await rows()).map((x) => x.name), ["alice-short", "alice-long"]);
  await shot("6-sorted-filtered");
  await page.type("#filter-name", "-none");
  same("6: a glob nothing matches: said so, every run fetched", [(await rows()).length,
    await page.$eval("#runs-empty", (e) => (e.hidden ? "" : e.textContent))], [0, "No run matches the filters."]);
  for (let i = 0; i < 5; i++) await page.keyboard.press("Backspace");
  await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "dark" }]);
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(`6: a dark theme when the system's is (${bg})`, bg === "rgb(20, 23, 26)", bg);
  await shot("6-dark");
  await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "light" }]);
  await page.click("#filter-name", { count: 3 });
  await page.keyboard.press("Backspace");
  await signedInWith(4);
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => {
    const e = document.activeElement;
    return `${e.tagName}:${e.closest("th")?.dataset.key}:${getComputedStyle(e).outlineStyle}`;
  });
  same("6: Tab from the name filter reaches the # header's button, outlined", focused, "BUTTON:id:solid");
  await page.keyboard.press("Enter");
  same("6: Enter on it sorts by #, newest first", (await rows()).map((x) => x.id),
    Object.values(JOBS).map((j) => j.id).sort((a, b) => b - a));
});


// ------------------------------------- 10. a finished run: charts, checkpoints, download
await step("10 finished run", async () => {
  const id = JOBS["alice-short"].id;
  await openRun(id);
  same("10: alice-short's page says succeeded", await page.$eval("#run-state", (e) => e.textContent), "succeeded");
  await page.waitForFunction(() => Number(document.querySelector('figure.run-chart[data-name="val_accuracy"]')
    ?.dataset.points) > 0, WAIT);
  same("10: its loss chart holds all 20 steps, val_accuracy its 2 epochs",
    [await chartPoints("loss"), await chartPoints("val_accuracy")], [20, 2]);
  // the controls: x by epoch, log y, smoothing by the keyboard
  const lossCanvas = () => page.$eval('figure.run-chart[data-name="loss"] canvas', (c) => c.toDataURL());
  const byStep = await lossCanvas();
  await page.select("#chart-x", "epoch");
  await page.select("#chart-y", "log");
  await page.focus("#chart-smoothing");
  await page.keyboard.press("ArrowLeft");
  await sleep(200);
  same("10: by epoch, log y, smoothing 0.59: every loss point still drawn, the slider's value shown",
    [await chartPoints("loss"), await page.$eval("#chart-smoothing-value", (e) => e.textContent)], [20, "0.59"]);
  check("10: the loss chart drawn anew", (await lossCanvas()) !== byStep, "the same pixels");
  await page.select("#chart-x", "step");
  await page.select("#chart-y", "linear");
  await page.keyboard.press("ArrowRight");
  await page.waitForSelector("#run-checkpoints li button", WAIT);
  const listed = await page.evaluate(async (id) => (await (await fetch(`/v1/jobs/${id}/checkpoints`,
    { headers: { Authorization: `Bearer ${localStorage.getItem("traind.token")}` } })).json()).checkpoints, id);
  same("10: the checkpoints panel lists each checkpoint, the newest first",
    await page.$$eval("#run-checkpoints li", (lis) => lis.map((li) => Number(li.textContent.match(/^epoch (\d+) /)[1]))),
    listed.map((c) => c.epoch).reverse());
  const dir = `${env.SHOTS}/downloads`;
  mkdirSync(dir, { recursive: true });
  const cdp = await browser.target().createCDPSession();
  await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: dir });
  const last = listed.at(-1);
  await page.click(`#run-checkpoints button[data-url="${last.url}"]`);
  await page.waitForSelector(`#run-checkpoints button[data-bytes]`, WAIT);
  same("10: the download fetched the whole file (bytes as GET .../checkpoints says)",
    await page.$eval("#run-checkpoints button[data-bytes]", (b) => Number(b.dataset.bytes)), last.bytes);
  const file = `${dir}/job-${id}-epoch-${last.epoch}.safetensors`;
  for (let i = 0; i < 50 && !(existsSync(file) && statSync(file).size === last.bytes); i++) await sleep(100);
  same("10: saved by the browser, of that size", existsSync(file) ? statSync(file).size : "no file", last.bytes);
  await page.setViewport({ width: 1280, height: 900 });
  await shot("10-run-finished");
  await page.setViewport({ width: 1280, height: 720 });
  let log = "";
  for (let i = 0; i < 100 && !/succeeded after/.test(log); i++, await sleep(100))
    log = await page.$eval("#run-logs", (e) => e.textContent);
  check("10: its log, to the end", /succeeded after 20 steps$/.test(log), log.slice(-200));
  const whole = await logShown();
  same("10: under 500 lines: all of them from line 1, no note",
    [whole.seqs[0], whole.seqs.length, whole.note],
    [1, (await apiGet(`/v1/jobs/${id}/logs?limit=10000`)).lines.length, "hidden"]);
  await sleep(300);
  same("10: a finished run opens no stream but its log's, which ends", [...streams].map((r) => r.url()), []);
});

// ------------------------------------- 14. compare the two finished runs (as the admin)
await step("14 compare", async () => {
  const a = JOBS["alice-short"].id, b = JOBS["bob-short"].id;
  await page.click(".crumbs a");
  await signedInWith(4);
  const from = requests.length;
  const button = () => page.$eval("#compare-button", (e) => `${e.textContent}:${e.disabled}`);
  same("14: no run picked: Compare (0), disabled", await button(), "Compare (0):true");
  await page.click(`tr[data-id="${a}"] input.pick`);
  same("14: one picked: Compare (1), still disabled", await button(), "Compare (1):true");
  await page.click(`tr[data-id="${b}"] input.pick`);
  same("14: two picked: Compare (2), enabled", await button(), "Compare (2):false");
  await page.click("#compare-button");
  const ready = (n) => page.waitForFunction((n) => !document.getElementById("compare-csv").disabled &&
    Number(document.getElementById("compare-chart").dataset.points) === n, WAIT, n);
  const apiVal = [await allPoints(a, "val_accuracy"), await allPoints(b, "val_accuracy")];
  await ready(apiVal[0].length + apiVal[1].length).catch(() => {});
  same("14: the address names both runs", await page.evaluate(() => location.hash), `#/compare?ids=${a},${b}`);
  same("14: val_accuracy first: the metric chosen", await page.$eval("#compare-metric", (e) => e.value), "val_accuracy");
  same(`14: the chart draws both runs' val_accuracy points (${apiVal[0].length} + ${apiVal[1].length})`,
    await page.$eval("#compare-chart", (e) => Number(e.dataset.points)), apiVal[0].length + apiVal[1].length);
  same("14: its legend names both runs, in distinct colours", await page.$$eval("#compare-chart .chart-legend li",
    (lis) => lis.map((li) => `${li.textContent}:${li.firstChild.className}`)),
  ["alice-short:chart-swatch chart-c1", "bob-short:chart-swatch chart-c2"]);
  const metrics = await page.$$eval("#compare-metric option", (os) => os.map((o) => o.value));
  const apiMetrics = [...new Set([...Object.keys((await apiGet(`/v1/jobs/${a}`)).metrics),
    ...Object.keys((await apiGet(`/v1/jobs/${b}`)).metrics)])].sort();
  same("14: the metric select offers the runs' metrics", metrics, apiMetrics);
  await page.select("#compare-metric", "loss");
  const apiLoss = [await allPoints(a, "loss"), await allPoints(b, "loss")];
  await ready(apiLoss[0].length + apiLoss[1].length).catch(() => {});
  same(`14: loss: every point of both runs drawn (${apiLoss[0].length} + ${apiLoss[1].length})`,
    await page.$eval("#compare-chart", (e) => Number(e.dataset.points)), apiLoss[0].length + apiLoss[1].length);
  same("14: the address follows the metric", await page.evaluate(() => location.hash),
    `#/compare?ids=${a},${b}&metric=loss`);
  const plot = await (await page.$("#compare-chart .chart-plot")).boundingBox();
  await page.mouse.move(plot.x + plot.width * 0.6, plot.y + plot.height / 2);
  await page.waitForSelector("#compare-chart .chart-readout:not([hidden])", WAIT);
  const readout = await page.$$eval("#compare-chart .chart-readout-row", (rs) => rs.map((r) => r.textContent));
  check("14: hovering reads both runs' values", readout.length === 2 && readout[0].startsWith("alice-short ") &&
    readout[1].startsWith("bob-short "), JSON.stringify(readout));
  await page.focus("#compare-smoothing");
  await page.keyboard.press("ArrowLeft");
  same("14: the smoothing slider", await page.$eval("#compare-smoothing-value", (e) => e.textContent), "0.59");
  await page.setViewport({ width: 1280, height: 800 });
  await shot("compare");
  await page.setViewport({ width: 1280, height: 720 });
  const width = await compareWidth();
  same("14: each run's series asked downsampled to the chart's width (max_points), each metric",
    byJob(asked(from, /\/metrics$/)),
    [a, b].flatMap((id) => ["val_accuracy", "loss"].map((n) => `${id}?name=${n}&max_points=${width}`)).sort());
  check("14: the two runs' loss curves differ (lr 0.05 and 0.2)",
    apiLoss[0].some((p, i) => p.value !== apiLoss[1][i]?.value), "the same values");
  // the CSV, as the browser saves it, against the API's points
  const csvFrom = requests.length;
  const want = csvOf([["alice-short", apiLoss[0]], ["bob-short", apiLoss[1]]]);
  const got = await savedCsv(`compare-loss-${a}-${b}.csv`, want);
  same(`14: the CSV download: run, step, value, a row per API point (${want.split("\n").length - 2})`, got, want);
  same("14: the CSV reads every point at download time (limit and after)", byJob(asked(csvFrom, /\/metrics$/)),
    [a, b].map((id) => `${id}?name=loss&after=-1&limit=100000`).sort());
  // a run's name another user chose that a spreadsheet would run as a formula
  same("14: a run's name as CSV text: a formula kept as text, a plain name as it is",
    await page.evaluate(async () => {
      const { csvText } = await import("/assets/compare.js");
      return ["=HYPERLINK(\"x\",\"y\")", "+1", "-2", "@SUM(A1)", "alice-short"].map(csvText);
    }), ["\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\"", "'+1", "'-2", "'@SUM(A1)", "alice-short"]);
  await shot("compare-csv");
});

// ------------------------------------- 16. compare a long run: bounded, zoom, the full CSV
await step("16 compare long", async () => {
  const l = JOBS["alice-long"].id, s = JOBS["alice-short"].id;
  const full = [await allPoints(l, "loss"), await allPoints(s, "loss")];
  const from = requests.length;
  await page.evaluate((l, s) => { location.hash = `#/compare?ids=${l},${s}&metric=loss`; }, l, s);
  await page.waitForFunction(() => !document.getElementById("compare-csv").disabled &&
    Number(document.getElementById("compare-chart").dataset.points) > 0, WAIT);
  const width = await compareWidth();
  same("16: each run's loss asked downsampled to the chart's width",
    byJob(asked(from, /\/metrics$/)), [l, s].map((id) => `${id}?name=loss&max_points=${width}`).sort());
  check(`16: alice-long has more loss points than the chart is wide (${full[0].length} > ${width})`,
    full[0].length > width, `${full[0].length} points`);
  const over = [(await apiGet(`/v1/jobs/${l}/metrics?name=loss&max_points=${width}`)).metrics,
    (await apiGet(`/v1/jobs/${s}/metrics?name=loss&max_points=${width}`)).metrics];
  same(`16: the chart draws the buckets, at most the width per run (${over[0].length} + ${over[1].length})`,
    [await page.$eval("#compare-chart", (e) => Number(e.dataset.points)), over[0].length <= width],
    [over[0].length + over[1].length, true]);
  same("16: the runs' list counts every point, and the buckets drawn",
    await page.$$eval("#compare-runs li", (lis) => lis.map((li) => li.textContent)),
    [`alice-long · alice · cancelled · ${full[0].length.toLocaleString("en")} points (drawn as ${over[0].length.toLocaleString("en")})`,
      `alice-short · alice · succeeded · ${full[1].length} points`]);
  // zoom: a drag over 30-50% asks each run for that range's buckets (after, before)
  const plot = await (await page.$("#compare-chart .chart-plot")).boundingBox();
  const zoomFrom = requests.length;
  await page.mouse.move(plot.x + plot.width * 0.3, plot.y + plot.height / 2);
  await page.mouse.down();
  await page.mouse.move(plot.x + plot.width * 0.5, plot.y + plot.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForSelector("#compare-chart[data-zoom]", WAIT);
  const [zf, zt] = (await page.$eval("#compare-chart", (e) => e.dataset.zoom)).split("-").map(Number);
  const range = `name=loss&after=${zf - 1}&before=${zt + 1}&max_points=${width}`;
  same(`16: zooming into steps ${zf}-${zt} asks each run for the range`, byJob(asked(zoomFrom, /\/metrics$/)),
    [l, s].map((id) => `${id}?${range}`).sort());
  const inRange = (pts) => pts.filter((p) => p.step >= zf && p.step <= zt).length;
  const fine = (await apiGet(`/v1/jobs/${l}/metrics?${range}`)).metrics;
  check(`16: finer buckets there (${inRange(over[0])} -> ${inRange(fine)}), all in the range`,
    zt > zf && inRange(fine) > inRange(over[0]) && inRange(fine) === fine.length, `${zf}-${zt}: ${fine.length}`);
  await shot("compare-long-zoomed");
  await page.click("#compare-chart .chart-plot", { count: 2 });
  await page.waitForSelector("#compare-chart:not([data-zoom])", WAIT).catch(() => {});
  same("16: a double-click: the whole runs again",
    [await page.$eval("#compare-chart", (e) => e.dataset.zoom ?? "none"),
      await page.$eval("#compare-chart", (e) => Number(e.dataset.points))], ["none", over[0].length + over[1].length]);
  // the CSV: every point, not the buckets
  const want = csvOf([["alice-long", full[0]], ["alice-short", full[1]]]);
  const got = await savedCsv(`compare-loss-${l}-${s}.csv`, want);
  same(`16: the CSV holds every point of both runs (${full[0].length} + ${full[1].length} rows), not the buckets`,
    [got.split("\n").length - 2, got === want], [full[0].length + full[1].length, true]);
});

// ------------------------------------- 11. bob cannot open alice's run
await step("11 not yours", async () => {
  await signOut();
  await paste(env.BOB);
  await signedInWith(namesOf("bob").length);
  expect404 = `/v1/jobs/${along}`;
  await page.evaluate((id) => { location.hash = `#/jobs/${id}`; }, along);
  await page.waitForSelector("#run-error:not([hidden])", WAIT);
  same("11: bob at alice's #/jobs/ID: a clear not found", await page.$eval("#run-error", (e) => e.textContent),
    `Run #${along} was not found: it does not exist, or it is not yours to see.`);
  check("11: nothing of alice's run shown", !(await visible("#run-page")), "shown");
  same("11: one 404, from GET /v1/jobs/ID", expected404, 1);
  expect404 = null;
  await shot("11-not-found");
  await page.click(".crumbs a");
  await signedInWith(namesOf("bob").length);
  // compare with alice's run among his: a message for hers, his still shown
  const a = JOBS["alice-short"].id, b = JOBS["bob-short"].id;
  expect404 = `/v1/jobs/${a}`;
  await page.evaluate((a, b) => { location.hash = `#/compare?ids=${a},${b}`; }, a, b);
  await page.waitForFunction(() => Number(document.getElementById("compare-chart").dataset.points) > 0, WAIT);
  same("11: compare with alice's run: a clear message for it",
    await page.$eval("#compare-missing-box", (e) => (e.hidden ? "hidden" : e.textContent.trim())),
    `Some runs cannot be shown:Run #${a}: not found: it does not exist, or it is not yours to see.`);
  same("11: bob's run still compared, alone", await page.$$eval("#compare-runs a",
    (es) => es.map((e) => e.textContent)), ["bob-short"]);
  same("11: one more 404, from GET /v1/jobs/ID", expected404, 2);
  expect404 = null;
  await shot("compare-missing");
  await page.click("#compare .crumbs a");
  await signedInWith(namesOf("bob").length);
  await signOut();
  await paste(env.ADMIN);
  await signedInWith(4);
});

// ------------------------------------- 17. the address and other tabs
await step("17 address and tabs", async () => {
  await openRun(JOBS["alice-short"].id);
  same("17: a run's page is titled by its run", await page.title(), "alice-short · traind");
  await signOut();
  same("17: signed out, the run's name leaves the title", await page.title(), "traind");
  // the logged #token= address pasted into this open tab: no reload
  await page.evaluate((t) => { location.hash = `#token=${t}`; }, env.ALICE);
  await signedInWith(namesOf("alice").length);
  same("17: a #token= address in an open tab signs in with it", await who(), "Signed in as alice");
  const href = await page.evaluate(() => location.href);
  check("17: ... and leaves the address bar", !href.includes("token"), href);
  // another tab of this origin signs in as bob: this one follows
  const other = await browser.newPage();
  await other.goto(`${env.DASH_URL.split("#")[0]}#/devices`, { waitUntil: "load" });
  await other.evaluate((t) => localStorage.setItem("traind.token", t), env.BOB);
  await other.close();
  await page.bringToFront(); // a tab behind another draws no frames to wait on
  await page.waitForFunction(() => document.querySelector("#who strong")?.textContent === "bob", WAIT);
  await signedInWith(namesOf("bob").length);
  same("17: another tab's sign-in is followed: bob's name over bob's runs", await who(), "Signed in as bob");
  // another user's #token= address while bob is signed in (a link someone
  // sent): asked, not done; staying keeps bob, switching signs alice in
  const question = () => page.$eval("#switch-text", (e) => e.textContent);
  const offer = async (t) => {
    await page.evaluate((t) => { location.hash = `#token=${t}`; }, t);
    await page.waitForSelector("#switch:not([hidden])", WAIT);
  };
  await offer(env.ALICE);
  same("17: another user's #token= address while bob is signed in: asked first", await question(),
    "This address signs in as alice. You are signed in as bob.");
  same("17: ... bob still signed in, his token kept", [await who(), await stored()],
    ["Signed in as bob", env.BOB]);
  same("17: ... the choices", await page.$$eval("#switch button:not([hidden])",
    (bs) => bs.map((b) => b.textContent)), ["Sign in as alice", "Stay signed in as bob"]);
  await shot("17-switch-asked");
  await page.click("#switch-no");
  check("17: staying: the question gone", !(await visible("#switch")), "still asked");
  same("17: ... bob still signed in", [await who(), await stored()], ["Signed in as bob", env.BOB]);
  expect401 = true;
  const before = expected401;
  await offer("0".repeat(64));
  check("17: a refused token's address: said, bob still signed in",
    /^The address's token was not used: invalid token\. You are still signed in as bob\.$/i
      .test(await question()) && (await stored()) === env.BOB, await question());
  same("17: ... one 401 from GET /v1/me", expected401 - before, 1);
  expect401 = false;
  await page.click("#switch-no");
  await offer(env.ALICE);
  await page.click("#switch-yes");
  await page.waitForFunction(() => document.querySelector("#who strong")?.textContent === "alice", WAIT);
  await signedInWith(namesOf("alice").length);
  same("17: switching: alice signed in, her token kept", [await who(), await stored()],
    ["Signed in as alice", env.ALICE]);
  // the same in a page opened at bob's #token= address: alice (kept) signed in, and asked
  const fresh = await browser.newPage();
  await fresh.goto(`${env.DASH_URL.split("#")[0]}#token=${env.BOB}`, { waitUntil: "load" });
  await fresh.waitForSelector("#switch:not([hidden])", WAIT);
  same("17: a page opened at another user's #token= address: the kept user's, asked",
    await fresh.evaluate(() => [document.querySelector("#who strong")?.textContent,
      document.getElementById("switch-text").textContent, localStorage.getItem("traind.token")]),
    ["alice", "This address signs in as bob. You are signed in as alice.", env.ALICE]);
  await fresh.close();
  await page.bringToFront();
  await signOut();
  await paste(env.ADMIN);
  await signedInWith(4);
});

// ------------------------------------- 8. a phone's width
await step("8 phone", async () => {
  await page.setViewport({ width: 390, height: 844 });
  const w = await page.evaluate(() => {
    const h = document.querySelector("header");
    const t = document.querySelector(".table-scroll");
    return { page: document.documentElement.scrollWidth, header: h.scrollWidth - h.clientWidth,
      table: t.scrollWidth > t.clientWidth };
  });
  same("8: at 390 px, no sideways overflow of the page or its header",
    [w.page <= 390, w.header], [true, 0]);
  check("8: the table scrolls sideways within its box", w.table, JSON.stringify(w));
  await shot("8-phone");
  await openRun(JOBS["alice-short"].id);
  await page.waitForFunction(() => Number(document.querySelector('figure.run-chart[data-name="loss"]')
    ?.dataset.points) > 0, WAIT);
  same("8: a run's page at 390 px: no sideways overflow",
    await page.evaluate(() => document.documentElement.scrollWidth), 390);
  await shot("8-phone-run");
  // the devices and compare views at a phone's width (left once loaded:
  // no request in flight to abort)
  await page.evaluate(() => { location.hash = "#/devices"; });
  await page.waitForFunction(() => Number(document.getElementById("devices").dataset.refreshes) > 0, WAIT);
  same("8: devices and queue at 390 px: no sideways overflow",
    await page.evaluate(() => document.documentElement.scrollWidth), 390);
  await shot("8-phone-devices");
  const [a, b] = [JOBS["alice-short"].id, JOBS["bob-short"].id];
  await page.evaluate((a, b) => { location.hash = `#/compare?ids=${a},${b}`; }, a, b);
  await page.waitForFunction(() => !document.getElementById("compare-csv").disabled, WAIT);
  same("8: compare at 390 px: no sideways overflow",
    await page.evaluate(() => document.documentElement.scrollWidth), 390);
  await shot("compare-phone");
});

// ------------------------------------- 7. nothing went wrong meanwhile
same("7: no console errors, page errors, failed requests or unexpected 4xx/5xx", problems, []);
await browser.close();
