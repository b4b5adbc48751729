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
import { mkdirSync } from "node:fs";

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
let expect401 = false, expected401 = 0, listRequests = 0, cancelPosts = 0;
page.on("console", (m) => {
  if (m.type() !== "error" && m.type() !== "warn") return;
  if (expect401 && /status of 401/.test(m.text())) return;
  problems.push(`console ${m.type()}: ${m.text()} (${m.location()?.url ?? ""})`);
});
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
page.on("request", (r) => {
  if (/\/v1\/jobs\?/.test(r.url())) listRequests++;
  if (r.method() === "POST" && /\/cancel$/.test(r.url())) cancelPosts++;
});
page.on("response", (r) => {
  if (r.status() < 400) return;
  if (expect401 && r.status() === 401 && r.url().endsWith("/v1/me")) expected401++;
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

// ------------------------------------- 3. a bad token, a revoked one
for (const [what, t] of [["bad", "0".repeat(64)], ["revoked", env.CAROL]]) {
  await step(`3 ${what} token`, async () => {
    await signOut();
    expect401 = true;
    const before = expected401;
    await paste(t);
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
});

// ------------------------------------- 7. nothing went wrong meanwhile
same("7: no console errors, page errors, failed requests or unexpected 4xx/5xx", problems, []);
await browser.close();
