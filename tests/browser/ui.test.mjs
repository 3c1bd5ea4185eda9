// The Iris web UI in a real browser (Debian's chromium, headless, driven by playwright-core)
// against a live stack. `run` beside this file brings the stack up and sets:
//   IRIS_UI_URL          the page, e.g. http://127.0.0.1:25174/
//   IRIS_API_CONTAINER   the API's container, stopped and started again by the outage test
//   IRIS_CHROMIUM        the browser binary (default /usr/bin/chromium)
//   IRIS_SCREENSHOT      where to write a screenshot of a prediction; empty: none
// The tests share one page and run in order (node --test --test-concurrency=1).
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { statSync } from "node:fs";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const UI_URL = required("IRIS_UI_URL");
const API_CONTAINER = required("IRIS_API_CONTAINER");
const SCREENSHOT = process.env.IRIS_SCREENSHOT ?? "";

const FIELDS = ["Sepal length (cm)", "Sepal width (cm)", "Petal length (cm)", "Petal width (cm)"];
const SPECIES = ["setosa", "versicolor", "virginica"];
const FLOWERS = [
  { species: "setosa", values: ["5.1", "3.5", "1.4", "0.2"] },
  { species: "versicolor", values: ["6.4", "3.2", "4.5", "1.5"] },
  { species: "virginica", values: ["6.3", "3.3", "6.0", "2.5"] },
];
const OUTAGE = /^The model API is not reachable right now \(HTTP 50[234]\)\. Try again in a moment\.$/;

const run = promisify(execFile);

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run this test through tests/browser/run`);
  }
  return value;
}

let browser;
let page;
/** Every request the page sent to the API through nginx (`/api/...`), in order. */
const apiRequests = [];
/** Uncaught exceptions and console errors of the page, other than the expected failed loads. */
const pageProblems = [];
let outageExpected = false;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.IRIS_CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 900, height: 760 }, locale: "en-GB" });
  context.setDefaultTimeout(10_000);
  // Count the page's API calls as they are made (see `settle`).
  await context.addInitScript(() => {
    const original = window.fetch.bind(window);
    window.__irisApiCalls = 0;
    window.fetch = (input, init) => {
      const url = typeof input === "string" ? input : (input.url ?? String(input));
      if (new URL(url, window.location.href).pathname.startsWith("/api/")) {
        window.__irisApiCalls += 1;
      }
      return original(input, init);
    };
  });
  page = await context.newPage();
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith("/api/")) {
      apiRequests.push({ method: request.method(), path: url.pathname, body: request.postData() });
    }
  });
  page.on("pageerror", (err) => pageProblems.push(`uncaught: ${err.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") {
      return;
    }
    // Chromium logs every non-2xx answer; during the outage the 50x is the point of the test.
    if (outageExpected && /Failed to load resource: the server responded with a status of 50[234]/.test(message.text())) {
      return;
    }
    pageProblems.push(`console: ${message.text()}`);
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh page for each test, with no request counted yet. */
async function openPage() {
  const response = await page.goto(UI_URL);
  assert.equal(response?.status(), 200, `GET ${UI_URL}`);
  await page.getByRole("heading", { name: "Iris classifier", level: 1 }).waitFor();
  apiRequests.length = 0;
}

const field = (label) => page.getByLabel(label, { exact: true });
const predictButton = () => page.getByRole("button", { name: "Predict", exact: true });
const result = () => page.getByRole("region", { name: "Result" });

async function fillFlower(values) {
  for (const [i, label] of FIELDS.entries()) {
    await field(label).fill(values[i]);
  }
}

/**
 * Submits the form with `action` (a click, a key press) and waits until the page has shown the
 * answer of /api/predict; returns its HTTP status.
 */
async function submit(action) {
  const answer = page.waitForResponse((r) => new URL(r.url()).pathname === "/api/predict");
  await action();
  const status = (await answer).status();
  // The form is busy from the submission (rendered before the request leaves) until the page
  // has shown the outcome.
  await page.waitForFunction(() => document.querySelector("form")?.getAttribute("aria-busy") === "false");
  return status;
}

/** Checks that the page shows the prediction `species` and the probabilities with it. */
async function expectPrediction(species) {
  const heading = result().getByRole("heading", { level: 2 });
  assert.equal(await heading.count(), 1, `a prediction is shown, not: ${await result().textContent()}`);
  assert.equal((await heading.textContent()).trim(), `Predicted species: ${species}`);

  const rows = result().getByRole("list", { name: "Probabilities" }).getByRole("listitem");
  const shown = await rows.evaluateAll((items) =>
    items.map((li) => ({
      species: li.querySelector(".bar-label")?.textContent ?? "",
      value: li.querySelector(".bar-value")?.textContent ?? "",
      winner: li.classList.contains("winner"),
      visible: li.getBoundingClientRect().height > 0,
    })),
  );
  assert.deepEqual(
    shown.map((r) => r.species).sort(),
    SPECIES,
    `one probability per species: ${JSON.stringify(shown)}`,
  );
  for (const row of shown) {
    assert.match(row.value, /^\d{1,3}\.\d%$/, `probability of ${row.species} as a percentage`);
    assert.ok(row.visible, `row of ${row.species} is visible`);
  }
  const percent = (row) => Number.parseFloat(row.value);
  const total = shown.reduce((sum, row) => sum + percent(row), 0);
  assert.ok(Math.abs(total - 100) <= 0.2, `probabilities add up to 100%, not ${total}`);
  const winner = shown.find((row) => row.species === species);
  assert.ok(winner.winner, `${species} is the highlighted row`);
  assert.ok(
    shown.every((row) => percent(row) <= percent(winner)),
    `${species} has the highest probability: ${JSON.stringify(shown)}`,
  );
}

/** Checks that no outcome has been shown since the page loaded. */
async function expectIdle() {
  assert.equal((await result().textContent()).trim(), "The prediction will appear here.");
}

/** The field's error message, found the way assistive technology finds it (aria-describedby). */
async function fieldError(label) {
  const input = field(label);
  assert.equal(await input.getAttribute("aria-invalid"), "true", `${label} is marked invalid`);
  const id = await input.getAttribute("aria-describedby");
  assert.ok(id, `${label} points to its error message`);
  const message = page.locator(`[id="${id}"]`);
  assert.ok(await message.isVisible(), `the error message of ${label} is visible`);
  return (await message.textContent()).trim();
}

async function apiHealth() {
  const { stdout } = await run("docker", ["inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", API_CONTAINER]);
  return stdout.trim();
}

async function waitForApi(expected, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    last = await apiHealth();
    if (last === expected) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.fail(`${API_CONTAINER} is "${last}" after ${timeoutMs / 1000}s, expected "${expected}"`);
}

/**
 * Waits until every API call the page has made (its `fetch`, counted as it is called: see
 * `before`) has been seen as a request, so that counting `apiRequests` afterwards is exact — no
 * fixed pause: the page calls `fetch` synchronously in its handlers, so by the time this runs a
 * request an action caused is counted.
 */
async function settle() {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const calls = await page.evaluate(() => window.__irisApiCalls ?? 0);
    if (apiRequests.length >= calls) {
      return;
    }
    assert.ok(Date.now() < deadline, `${calls} API calls, but ${apiRequests.length} requests seen`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("Iris web UI", () => {
  beforeEach(openPage);

  test("predicts the species of one flower of each species, with the probabilities", async () => {
    for (const { species, values } of FLOWERS) {
      const before = apiRequests.length;
      await fillFlower(values);
      await settle();
      assert.equal(apiRequests.length, before, "typing sends no request");

      assert.equal(await submit(() => predictButton().click()), 200);
      await expectPrediction(species);
      await settle();

      const sent = apiRequests.slice(before);
      assert.equal(sent.length, 1, `one request per prediction: ${JSON.stringify(sent)}`);
      assert.equal(sent[0].method, "POST");
      assert.equal(sent[0].path, "/api/predict");
      const [sl, sw, pl, pw] = values.map(Number);
      assert.deepEqual(JSON.parse(sent[0].body), {
        items: [{ sepal_length: sl, sepal_width: sw, petal_length: pl, petal_width: pw }],
      });
    }
    if (SCREENSHOT) {
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      const size = statSync(SCREENSHOT).size;
      assert.ok(size < 300_000, `${SCREENSHOT} is ${size} bytes, keep it under 300 KB`);
    }
    assert.deepEqual(pageProblems, []);
  });

  test("invalid values show a readable message and send no request", async () => {
    const cases = [
      { label: "Sepal length (cm)", value: "", message: "Enter a value in cm." },
      { label: "Sepal width (cm)", value: "abc", message: "Enter a number such as 5.1 (use a dot for decimals)." },
      { label: "Petal length (cm)", value: "4,5", message: "Enter a number such as 5.1 (use a dot for decimals)." },
      { label: "Petal width (cm)", value: "1e1", message: "Enter a number such as 5.1 (use a dot for decimals)." },
      { label: "Sepal length (cm)", value: "0", message: "Must be greater than 0 cm." },
      { label: "Sepal width (cm)", value: "-1", message: "Must be greater than 0 cm." },
      { label: "Petal length (cm)", value: "51", message: "Must be at most 50 cm." },
    ];
    for (const { label, value, message } of cases) {
      await fillFlower(FLOWERS[0].values);
      await field(label).fill(value);
      assert.equal(await fieldError(label), message, `message for ${JSON.stringify(value)}`);
      assert.ok(await predictButton().isDisabled(), `Predict is disabled for ${JSON.stringify(value)}`);
      // Enter submits a form even when its button is disabled in some browsers: still nothing.
      await field(label).press("Enter");
      await predictButton().click({ force: true });
      await settle();
      assert.deepEqual(apiRequests, [], `no request for ${label} = ${JSON.stringify(value)}`);
      await expectIdle();
    }

    // Every field wrong at once: four messages, still nothing sent.
    await fillFlower(["", "x", "0", "99"]);
    await field(FIELDS[3]).press("Enter");
    await settle();
    assert.deepEqual(
      await Promise.all(FIELDS.map(fieldError)),
      [
        "Enter a value in cm.",
        "Enter a number such as 5.1 (use a dot for decimals).",
        "Must be greater than 0 cm.",
        "Must be at most 50 cm.",
      ],
    );
    assert.deepEqual(apiRequests, []);

    // Corrected, the same form predicts, with exactly one request.
    await fillFlower(FLOWERS[2].values);
    for (const label of FIELDS) {
      assert.equal(await field(label).getAttribute("aria-invalid"), "false", `${label} is valid again`);
    }
    assert.equal(await submit(() => predictButton().click()), 200);
    await expectPrediction("virginica");
    await settle();
    assert.equal(apiRequests.length, 1, JSON.stringify(apiRequests));
    assert.deepEqual(pageProblems, []);
  });

  test("an API outage is reported in words, and predictions work again once it is back", async () => {
    await run("docker", ["stop", "--time", "5", API_CONTAINER]);
    outageExpected = true;
    try {
      await fillFlower(FLOWERS[1].values);
      assert.match(String(await submit(() => predictButton().click())), /^50[234]$/);
      const alert = result().getByRole("alert");
      assert.equal(await alert.count(), 1, `an alert is shown, not: ${await result().textContent()}`);
      const text = (await alert.textContent()).trim();
      assert.match(text, OUTAGE);
      assert.doesNotMatch(text, /[{}[\]<>]|detail/, "no raw JSON or HTML in the message");
      assert.equal(await result().getByRole("heading", { name: /Predicted species/ }).count(), 0);
      assert.ok(await predictButton().isEnabled(), "the user can try again");
      await settle();
      assert.equal(apiRequests.length, 1, `one request, no retry storm: ${JSON.stringify(apiRequests)}`);

      // Trying again while the API is still down: the same message, one more request.
      assert.match(String(await submit(() => predictButton().click())), /^50[234]$/);
      assert.match((await alert.textContent()).trim(), OUTAGE);
      await settle();
      assert.equal(apiRequests.length, 2, JSON.stringify(apiRequests));
    } finally {
      // Even when a check above failed, so that the next test finds the API up.
      await run("docker", ["start", API_CONTAINER]);
      outageExpected = false;
      await waitForApi("running healthy", 60_000);
    }

    assert.equal(await submit(() => predictButton().click()), 200);
    await expectPrediction("versicolor");
    assert.equal(await result().getByRole("alert").count(), 0, "the outage message is gone");
    await settle();
    assert.equal(apiRequests.length, 3, JSON.stringify(apiRequests));
    assert.deepEqual(pageProblems, []);
  });

  test("works with the keyboard alone: focus, type, Tab, Enter", async () => {
    const values = ["7.0", "3.2", "4.7", "1.4"];
    await field(FIELDS[0]).focus();
    for (const [i, label] of FIELDS.entries()) {
      assert.equal(
        await page.evaluate(() => document.activeElement?.id),
        await field(label).getAttribute("id"),
        `focus is on ${label}`,
      );
      await page.keyboard.press("ControlOrMeta+A");
      await page.keyboard.type(values[i]);
      if (i < FIELDS.length - 1) {
        await page.keyboard.press("Tab");
      }
    }
    assert.deepEqual(await Promise.all(FIELDS.map((label) => field(label).inputValue())), values);
    assert.deepEqual(apiRequests, [], "typing sends no request");

    assert.equal(await submit(() => page.keyboard.press("Enter")), 200);
    await expectPrediction("versicolor");
    await settle();
    assert.equal(apiRequests.length, 1, JSON.stringify(apiRequests));

    // Tab from the last field reaches the button, which Enter activates too.
    await field(FIELDS[3]).focus();
    await page.keyboard.press("Tab");
    assert.ok(await predictButton().evaluate((b) => b === document.activeElement), "Tab reaches Predict");
    assert.equal(await submit(() => page.keyboard.press("Enter")), 200);
    await expectPrediction("versicolor");
    await settle();
    assert.equal(apiRequests.length, 2, JSON.stringify(apiRequests));
    assert.deepEqual(pageProblems, []);
  });

  test("the API documentation renders from the stack alone, with nothing fetched from elsewhere", async () => {
    const docsPage = await page.context().newPage();
    const origin = new URL(UI_URL).origin;
    const elsewhere = [];
    // An air-gapped host: every request to another origin fails.
    await docsPage.route("**/*", (route) => {
      if (new URL(route.request().url()).origin === origin) {
        return route.continue();
      }
      elsewhere.push(route.request().url());
      return route.abort("internetdisconnected");
    });
    const response = await docsPage.goto(new URL("api/docs", UI_URL).toString());
    assert.equal(response?.status(), 200, "GET /api/docs");
    await docsPage.locator(".swagger-ui .info .title").filter({ hasText: "Iris API" }).waitFor();
    await docsPage.locator(".opblock-summary-path", { hasText: "/predict" }).first().waitFor();
    assert.deepEqual(elsewhere, [], "the docs page fetched from another origin");
    await docsPage.close();
  });
});
