// The chat page of `wgllm serve` in headless Chromium (Debian's, driven by playwright-core): a reply streams
// in, the stop button ends it (and frees the server's slot), a second turn carries the history, errors
// show, model text cannot inject HTML, and the page fits a phone. Screenshots go to WGLLM_SCREENSHOT_DIR
// (docs/images keeps copies).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startServer } from "./wgllm_server.mjs";

let server, browser;
const shots = process.env.WGLLM_SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), "wgllm-page-"));

before(async () => {
  server = await startServer(["--ctx-size", "1024"]);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/lib/chromium/chromium",
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run"],
  });
});

after(async () => {
  await browser?.close();
  assert.equal(await server?.stop(), 0, server?.log());
});

async function activeSlots() {
  const metrics = await (await fetch(server.url + "/metrics")).text();
  return Number(metrics.match(/^wgllm_slots_active (\d+)$/m)[1]);
}

async function openPage(viewport) {
  const page = await browser.newPage({ viewport });
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  await page.goto(server.url + "/");
  await page.locator("#model").filter({ hasText: "stories260K" }).waitFor();
  return { page, problems };
}

// page.waitForFunction evaluates strings in the page, which the page's Content-Security-Policy forbids;
// page.evaluate is not bound by it, so poll with that.
async function waitFor(page, predicate, arg, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await page.evaluate(predicate, arg))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${predicate}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function setSetting(page, id, value) {
  if (await page.locator("#settings").isHidden()) await page.click("#toggle-settings");
  await page.fill("#" + id, String(value));
  await page.locator("#" + id).dispatchEvent("change");
}

test("a reply streams in, stop ends it, and a second turn carries the history", async () => {
  const { page, problems } = await openPage({ width: 1000, height: 720 });
  await setSetting(page, "system", "You tell short stories.");
  await setSetting(page, "max_tokens", 600);
  await page.click("#toggle-settings");
  const bodies = [];
  page.on("request", (r) => { if (r.url().endsWith("/v1/chat/completions")) bodies.push(JSON.parse(r.postData())); });

  await page.fill("#prompt", "Tell me a story about a cat.");
  await page.press("#prompt", "Enter");
  const reply = page.locator(".msg.assistant").first();
  // Streaming: text appears and grows while the stop button shows.
  await waitFor(page, () => document.querySelector(".msg.assistant.streaming")?.textContent.length > 20);
  const early = (await reply.textContent()).length;
  await waitFor(page, (n) => document.querySelector(".msg.assistant.streaming")?.textContent.length > n, early);
  assert.ok(await page.locator("#stop").isVisible());
  assert.match(await page.locator("#stats").textContent(), /tok\/s/);
  await page.click("#stop");
  await page.locator(".msg.assistant .note").filter({ hasText: "stopped" }).waitFor();
  assert.ok(await page.locator("#send").isVisible());
  assert.equal(await page.locator(".msg.assistant.streaming").count(), 0);
  const stoppedText = (await reply.textContent()).replace(/stopped$/, "");
  // The server let go of the sequence.
  for (let i = 0; i < 100 && (await activeSlots()) !== 0; ++i) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await activeSlots(), 0);

  await setSetting(page, "max_tokens", 40);
  await page.click("#toggle-settings");
  await page.fill("#prompt", "And then?");
  await page.click("#send");
  await waitFor(page, () => document.querySelectorAll(".msg.assistant").length === 2 &&
                                   !document.querySelector(".msg.assistant.streaming"));
  assert.match(await page.locator("#stats").textContent(), /^\d+ tokens · [\d.]+ tok\/s · first token [\d.]+ s · prompt \d+/);
  assert.equal(await page.locator(".msg.user").count(), 2);
  assert.ok((await page.locator(".msg.assistant").nth(1).textContent()).length > 0);
  // The second request held the system prompt, both user turns and the stopped reply.
  assert.equal(bodies.length, 2);
  assert.deepEqual(bodies[1].messages.map((m) => m.role), ["system", "user", "assistant", "user"]);
  assert.equal(bodies[1].messages[0].content, "You tell short stories.");
  // The stopped reply as shown and as sent share their start (a token may land between reading the page
  // and the stop taking effect, so either may be the longer), whitespace aside: the page shows a newline as
  // a line break, which textContent does not hold.
  const squash = (s) => s.replace(/\s+/g, "");
  const sent = squash(bodies[1].messages[2].content);
  const shown = squash(stoppedText);
  const common = Math.min(20, shown.length, sent.length);
  assert.ok(common > 0, `stopped reply shown ${JSON.stringify(stoppedText)}, sent ${JSON.stringify(sent)}`);
  assert.equal(shown.slice(0, common), sent.slice(0, common));
  assert.equal(bodies[1].stream, true);
  await page.screenshot({ path: path.join(shots, "chat-page.png") });
  assert.deepEqual(problems, []);
  await page.close();
});

test("New chat during a reply starts an empty conversation", async () => {
  const { page, problems } = await openPage({ width: 1000, height: 720 });
  await setSetting(page, "max_tokens", 600);
  await page.click("#toggle-settings");
  const bodies = [];
  page.on("request", (r) => { if (r.url().endsWith("/v1/chat/completions")) bodies.push(JSON.parse(r.postData())); });
  await page.fill("#prompt", "First conversation");
  await page.press("#prompt", "Enter");
  await waitFor(page, () => document.querySelector(".msg.assistant.streaming")?.textContent.length > 5);
  await page.click("#new-chat");
  await waitFor(page, () => !document.querySelector("#stop:not([hidden])"));
  assert.equal(await page.locator(".msg").count(), 0);
  await setSetting(page, "max_tokens", 4);
  await page.click("#toggle-settings");
  await page.fill("#prompt", "Second conversation");
  await page.press("#prompt", "Enter");
  await waitFor(page, () => document.querySelector(".msg.assistant") &&
                           !document.querySelector(".msg.assistant.streaming"));
  assert.deepEqual(bodies[1].messages, [{ role: "user", content: "Second conversation" }]);
  assert.deepEqual(problems, []);
  await page.close();
});

test("server errors are shown", async () => {
  const { page } = await openPage({ width: 1000, height: 720 });
  await setSetting(page, "temperature", 9);
  await page.fill("#prompt", "hi");
  await page.press("#prompt", "Enter");
  const error = page.locator(".msg.error");
  await error.waitFor();
  assert.match(await error.textContent(), /400: 'temperature' must be between 0 and 2/);
  assert.ok(await page.locator("#send").isVisible());
  await setSetting(page, "temperature", 0.8);  // settings persist in localStorage; leave them sane
  await page.close();
});

test("model text is escaped before the Markdown subset is applied", async () => {
  const { page } = await openPage({ width: 1000, height: 720 });
  const html = await page.evaluate(() => renderMarkdown(
    "# Title\n<img src=x onerror=alert(1)> **bold** *it* `<b>` [x](javascript:alert(1)) [ok](https://a.example/?q=\"x\")\n" +
    "- one\n- two\n\n```js\n<script>alert(1)</script>\n```"));
  assert.ok(!/<img|<script|<b>|href="javascript/i.test(html), html);
  assert.match(html, /\[x\]\(javascript:alert\(1\)\)/, "a link to anything but http(s) stays text");
  assert.match(html, /&lt;img src=x onerror=alert\(1\)&gt;/);
  assert.match(html, /<h2>Title<\/h2>/);
  assert.match(html, /<strong>bold<\/strong> <em>it<\/em> <code>&lt;b&gt;<\/code>/);
  assert.match(html, /<a href="https:\/\/a\.example\/\?q=&quot;x&quot;" target="_blank" rel="noopener noreferrer nofollow">ok<\/a>/);
  assert.match(html, /<ul><li>one<\/li><li>two<\/li><\/ul>/);
  assert.match(html, /<pre><code>&lt;script&gt;alert\(1\)&lt;\/script&gt;\n<\/code><\/pre>/);
  await page.close();
});

test("the page fits a phone-sized screen", async () => {
  const { page, problems } = await openPage({ width: 375, height: 667 });
  await setSetting(page, "max_tokens", 16);
  await page.click("#toggle-settings");
  await page.fill("#prompt", "Hello there, tell me a story with a long long line of text in it please");
  await page.click("#send");
  await waitFor(page, () => document.querySelector(".msg.assistant") &&
                                   !document.querySelector(".msg.assistant.streaming"));
  const widths = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(widths[0] <= widths[1], `page is ${widths[0]} px wide in a ${widths[1]} px window`);
  for (const id of ["#prompt", "#send", "#new-chat", "#toggle-settings"]) {
    const box = await page.locator(id).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 375, `${id} is on screen: ${JSON.stringify(box)}`);
  }
  await page.screenshot({ path: path.join(shots, "chat-page-phone.png") });
  assert.deepEqual(problems, []);
  await page.close();
});
