// Drives the dashboard in headless Chromium: sign in, read the summary, the open exceptions
// and the latest records, retry one exception, resolve another with a note, then sign in with
// a wrong token. Run by edge-service/tests/api.rs (dashboard_in_headless_chromium), which
// starts the service with known data and plays the runner.
//
//   node dashboard_check.cjs BASE_URL TOKEN SCREENSHOT_PATH
//
// Prints one JSON line with what the page showed; exits 1 with a message on any failure,
// including a console error (a CSP violation shows up as one) or a failed request.
"use strict";

const { chromium } = require("playwright-core");

const [base, token, screenshot] = process.argv.slice(2);
const executablePath = process.env.TILLBRIDGE_CHROMIUM || "/usr/bin/chromium";

function fail(message) {
  console.error("dashboard check failed: " + message);
  process.exit(1);
}

(async () => {
  const browser = await chromium.launch({
    executablePath,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
  const problems = [];
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(15000);
    page.on("console", (m) => { if (m.type() === "error") { problems.push("console: " + m.text()); } });
    page.on("pageerror", (e) => problems.push("page error: " + e.message));
    page.on("requestfailed", (r) => problems.push("request failed: " + r.url()));

    await page.goto(base + "/");
    await page.getByLabel("API token").fill(token);
    await page.getByLabel("Your name (kept with retries and resolutions)").fill("Dana");
    await page.getByRole("button", { name: "Show the dashboard" }).click();

    // Summary and tables.
    await page.locator("#exceptions tbody tr").first().waitFor();
    const card = async (label) =>
      (await page.locator("#summary div", { hasText: label }).locator("dd").first().textContent()).trim();
    const summary = {
      ready: (await page.locator("#ready").textContent()).trim(),
      open: await card("Open exceptions"),
      stalled: await card("Stalled records"),
      pending: await card("Pending pushes"),
      p99: await card("Push latency p99"),
    };
    const reasons = await page.locator("#reasons li").allTextContents();
    const exceptions = await page.locator("#exceptions tbody tr").evaluateAll((rows) =>
      rows.map((r) => Array.from(r.cells).slice(0, 4).map((c) => c.textContent.trim())));
    await page.locator("#records tbody tr").first().waitFor();
    const records = await page.locator("#records tbody tr").evaluateAll((rows) =>
      rows.map((r) => Array.from(r.cells).map((c) => c.textContent.trim())));
    if (screenshot) { await page.screenshot({ path: screenshot, fullPage: true }); }

    // Retry the first exception, resolve the second with a note.
    const firstId = exceptions[0][0];
    const secondId = exceptions[1][0];
    await page.getByRole("button", { name: "Retry exception " + firstId }).click();
    await page.locator("#status", { hasText: "Retry of exception " + firstId + ":" }).waitFor();
    const retried = (await page.locator("#status").textContent()).trim();
    await page.locator("#note-" + secondId).fill("counted the shelf, corrected the till");
    await page.getByRole("button", { name: "Resolve exception " + secondId }).click();
    await page.locator("#status", { hasText: "Resolution of exception " + secondId + ":" }).waitFor();
    const resolved = (await page.locator("#status").textContent()).trim();

    // A wrong token brings the sign-in form back with the reason.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("API token").fill("not-the-token");
    await page.getByRole("button", { name: "Show the dashboard" }).click();
    await page.locator("#status", { hasText: "Signed out:" }).waitFor();
    const refused = (await page.locator("#status").textContent()).trim();
    const formVisible = await page.locator("#signin").isVisible();

    // The 401s of the wrong token are expected console noise; nothing else is.
    const unexpected = problems.filter((p) => !p.includes("401"));
    if (unexpected.length) { fail(unexpected.join("; ")); }
    console.log(JSON.stringify({ summary, reasons, exceptions, records, retried, resolved, refused, formVisible }));
  } catch (e) {
    fail((e && e.message ? e.message : String(e)) + (problems.length ? " [" + problems.join("; ") + "]" : ""));
  } finally {
    await browser.close();
  }
})();
