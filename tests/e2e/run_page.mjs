// run_page.mjs - what a person sees on one run's page, for e2e scripts
// other than the dashboard's: headless Chromium (puppeteer-core, from
// web/node_modules) opens URL#token=TOKEN, then the run #/jobs/JOB, and
// waits until the text of #ELEMENT matches the regular expression EXPECT.
// Prints "PASS NAME: the text" or "FAIL NAME: what it showed" for
// browser_checks (tests/e2e/lib.sh) and saves $SHOTS/NAME.png.
//
// Environment: CHROMIUM, SHOTS, URL, TOKEN, JOB, ELEMENT, EXPECT, NAME.

import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";

const require = createRequire(new URL("../../web/package.json", import.meta.url));
const puppeteer = require("puppeteer-core");
const env = process.env;

const browser = await puppeteer.launch({
  executablePath: env.CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-extensions", "--disable-background-networking"],
});
const page = await browser.newPage();
const text = () => page.$eval(`#${env.ELEMENT}`, (e) => (e.hidden ? "(hidden)" : e.textContent));
try {
  await page.goto(`${env.URL}/#token=${env.TOKEN}`, { waitUntil: "load" });
  await page.evaluate((id) => { location.hash = `#/jobs/${id}`; }, env.JOB);
  const expect = new RegExp(env.EXPECT);
  let shown = "";
  for (let i = 0; i < 150 && !expect.test(shown); i++) {
    shown = await text().catch((e) => `(${e.message})`);
    if (!expect.test(shown)) await new Promise((r) => setTimeout(r, 100));
  }
  mkdirSync(env.SHOTS, { recursive: true });
  await page.screenshot({ path: `${env.SHOTS}/${env.NAME.replace(/\W+/g, "-").replace(/^-|-$/g, "")}.png` });
  console.log(expect.test(shown) ? `PASS ${env.NAME}: ${shown}`
    : `FAIL ${env.NAME}: #${env.ELEMENT} shows "${shown}", not /${env.EXPECT}/`);
} finally {
  await browser.close();
}
