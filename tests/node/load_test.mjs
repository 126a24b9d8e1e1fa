#!/usr/bin/env node
// Load test of `wgllm serve` (issue 10, docs/reliability.md): N connections for T seconds of mixed requests,
// as real clients make them: chat and completions, streamed and not, greedy and sampled, multi-turn
// follow-ups (prefix reuse), stop sequences; streams that the client drops mid-way or while queued; malformed
// requests (bad JSON, wrong types and ranges, unknown model, a prompt over the context, a body over
// --max-body, wrong method, a cross-origin content type, a broken HTTP request line); and the quick routes.
//
// It fails (exit 1) on: a crash or hang of the server (it must still answer /health and exit 0 on
// SIGTERM), a 5xx or a connection error on a valid request, an answer other than the expected status to a
// malformed one, a stream that does not end with [DONE], a slot or queue entry still held once every
// client is done, or RSS growth above --max-rss-growth between the first and the last window (20 s, or a
// third of a shorter run; the largest RSS of each, after a warm-up that has every slot generate once). It
// reports latency percentiles (whole request; time to the first streamed text) and request counts.
//
//   node tests/node/load_test.mjs [--connections 8] [--seconds 12] [--parallel 8] [--ctx-size 512]
//        [--max-rss-growth 0.10] [--seed N] [--json FILE] [-- extra wgllm serve flags]
// The server is WGLLM_BINARY (else build/wgllm) started on a free port with the built-in stories260K.
import http from "node:http";
import net from "node:net";
import fs from "node:fs";
import os from "node:os";
import { startServer } from "./wgllm_server.mjs";

const options = {
  connections: 8, seconds: 12, parallel: 8, "ctx-size": 512, "max-rss-growth": 0.1,
  seed: Math.floor(Math.random() * 2 ** 31), json: null,
};
const argv = process.argv.slice(2);
const dash = argv.indexOf("--");
const extra = dash >= 0 ? argv.splice(dash).slice(1) : [];
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, "");
  if (!(key in options) || i + 1 >= argv.length) {
    console.error(`unknown or incomplete option ${argv[i]}; see the header of ${process.argv[1]}`);
    process.exit(2);
  }
  options[key] = key === "json" ? argv[i + 1] : Number(argv[i + 1]);
}
const maxBody = 65536;

// mulberry32: the run's choices follow from --seed (printed), so a failing mix can be replayed.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const words = ["cat", "dog", "ball", "sun", "tree", "Lily", "Tom", "park", "happy", "red", "big", "bird", "ran",
  "played", "saw", "the", "a", "and", "friend", "toy"];
const pick = (r, list) => list[Math.floor(r() * list.length)];
const sentence = (r, n) => Array.from({ length: n }, () => pick(r, words)).join(" ");

function sampling(r) {
  const s = { max_tokens: 1 + Math.floor(r() * 48) };
  if (r() < 0.5) s.temperature = 0;
  else Object.assign(s, { temperature: 0.8, seed: Math.floor(r() * 1e6) });
  if (r() < 0.2) s.stop = [pick(r, words), "\n"];
  if (r() < 0.1) Object.assign(s, { presence_penalty: 0.5, frequency_penalty: 0.3 });
  return s;
}

function chatBody(r, stream) {
  const messages = [];
  if (r() < 0.2) messages.push({ role: "system", content: "You tell short stories." });
  messages.push({ role: "user", content: sentence(r, 2 + Math.floor(r() * 12)) });
  if (r() < 0.3) {  // a follow-up turn
    messages.push({ role: "assistant", content: sentence(r, 5 + Math.floor(r() * 20)) });
    messages.push({ role: "user", content: sentence(r, 3) });
  }
  const body = { model: "stories260K", messages, stream, ...sampling(r) };
  if (stream && r() < 0.5) body.stream_options = { include_usage: true };
  return body;
}

function completionBody(r, stream) {
  const prompt = r() < 0.8 ? "Once upon a time " + sentence(r, Math.floor(r() * 10)) : [1, 100, 200, 300];
  return { prompt, stream, ...sampling(r) };
}

// Malformed requests and the status each must get.
const malformed = [
  { name: "bad JSON", path: "/v1/chat/completions", body: '{"messages": [', status: 400 },
  { name: "messages not a list", path: "/v1/chat/completions", body: '{"messages": "hi"}', status: 400 },
  { name: "missing messages", path: "/v1/chat/completions", body: '{"max_tokens": 3}', status: 400 },
  { name: "temperature 7", path: "/v1/chat/completions",
    body: JSON.stringify({ messages: [{ role: "user", content: "x" }], temperature: 7 }), status: 400 },
  { name: "max_tokens a string", path: "/v1/completions", body: '{"prompt": "x", "max_tokens": "ten"}', status: 400 },
  { name: "token id outside the vocabulary", path: "/v1/completions", body: '{"prompt": [1, 99999]}', status: 400 },
  { name: "n = 2", path: "/v1/completions", body: '{"prompt": "x", "n": 2}', status: 400 },
  { name: "bad role", path: "/v1/chat/completions", body: '{"messages": [{"role": "wizard", "content": "x"}]}',
    status: 400 },
  { name: "stop not strings", path: "/v1/completions", body: '{"prompt": "x", "stop": [1, 2]}', status: 400 },
  { name: "nested 200 deep", path: "/v1/completions", body: "[".repeat(200) + "]".repeat(200), status: 400 },
  { name: "not UTF-8", path: "/v1/completions", body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), status: 400 },
  { name: "unknown model", path: "/v1/chat/completions",
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] }), status: 404 },
  { name: "prompt over the context", path: "/v1/completions",
    body: JSON.stringify({ prompt: "cat ".repeat(700) }), status: 400 },
  { name: "body over --max-body", path: "/v1/completions",
    body: JSON.stringify({ prompt: "a".repeat(maxBody + 100) }), status: 413 },
  { name: "text/plain body", path: "/v1/completions", body: '{"prompt": "x"}', type: "text/plain", status: 415 },
  { name: "GET on a POST route", path: "/v1/chat/completions", method: "GET", status: 405 },
  { name: "unknown route", path: "/v1/embeddings", body: "{}", status: 404 },
];

const stats = {
  requests: 0, byKind: {}, status: {}, failures: [], latency: [], ttft: [], busy429: 0, retriedOnClosedKeepAlive: 0,
};
function fail(what) {
  if (stats.failures.length < 50) stats.failures.push(what);
  else stats.failures.length === 50 && stats.failures.push("(more failures not listed)");
}
function count(kind) {
  stats.byKind[kind] = (stats.byKind[kind] || 0) + 1;
  stats.requests += 1;
}

// One HTTP request. `drop`: {chunks: k} (leave after k pieces of a 200 response have come) or {ms: t}
// (leave after t ms, whatever came). Resolves with {status, body, ms, ttft, error, dropped}.
// A request on a kept-alive socket can meet the server closing that socket as it goes out (its idle close
// and our write cross): Node reports ECONNRESET with req.reusedSocket set and no response. Clients retry
// such a request once on a new connection (Node's documentation of reusedSocket; RFC 9112, 9.3.1), and so
// does this one, counting it; every other error fails the test.
async function request(server, agent, options) {
  const res = await requestOnce(server, agent, options);
  if (res.error === "ECONNRESET" && res.reusedSocket && res.status === 0 && !options.drop) {
    stats.retriedOnClosedKeepAlive++;
    return requestOnce(server, agent, options);
  }
  return res;
}

function requestOnce(server, agent, { method = "POST", path, body, type = "application/json", drop, timeout = 120000 }) {
  return new Promise((resolve) => {
    const started = performance.now();
    const headers = {};
    const data = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
    if (data) Object.assign(headers, { "Content-Type": type, "Content-Length": data.length });
    const req = http.request(server.url + path, { method, headers, agent });
    let done = false, ttft = null, status = 0, chunks = [];
    const finish = (result) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ status, body: Buffer.concat(chunks).toString("utf8"), ms: performance.now() - started, ttft, ...result });
    };
    const timer = setTimeout(() => {
      req.destroy();
      finish({ error: `no answer within ${timeout / 1000} s` });
    }, timeout);
    if (drop?.ms !== undefined) setTimeout(() => { req.destroy(); finish({ dropped: true }); }, drop.ms);
    req.on("response", (res) => {
      status = res.statusCode;
      res.on("data", (c) => {
        if (ttft === null) ttft = performance.now() - started;
        chunks.push(c);
        if (drop?.chunks !== undefined && status === 200 && chunks.length >= drop.chunks) {
          req.destroy();
          finish({ dropped: true });
        }
      });
      res.on("end", () => finish({}));
      res.on("error", (e) => finish({ error: e.message }));
    });
    req.on("error", (e) => finish({ error: e.code || e.message, reusedSocket: req.reusedSocket }));
    req.end(data ?? undefined);
  });
}

// A broken request line straight onto a socket: cpp-httplib must answer 400 and keep serving.
function rawGarbage(server) {
  return new Promise((resolve) => {
    const { hostname, port } = new URL(server.url);
    const sock = net.connect(Number(port), hostname);
    let reply = "";
    const timer = setTimeout(() => { sock.destroy(); resolve({ error: "no answer within 30 s" }); }, 30000);
    sock.on("connect", () => sock.write("BLAH /\x01\x02 HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n"));
    sock.on("data", (d) => { reply += d; });
    sock.on("close", () => { clearTimeout(timer); resolve({ reply }); });
    sock.on("error", () => {});
  });
}

// Checks a finished generation request; returns whether it counts as served.
function checkGeneration(kind, r, stream) {
  if (r.error) return fail(`${kind}: connection error ${r.error}`), false;
  if (r.status === 429) return (stats.busy429 += 1), false;
  if (r.status !== 200) return fail(`${kind}: status ${r.status}: ${r.body.slice(0, 200)}`), false;
  if (stream) {
    if (!r.body.endsWith("data: [DONE]\n\n")) return fail(`${kind}: stream without [DONE]: ${r.body.slice(-200)}`), false;
    if (r.body.includes('"error"')) return fail(`${kind}: error event: ${r.body.slice(-300)}`), false;
  } else {
    let j;
    try {
      j = JSON.parse(r.body);
    } catch {
      return fail(`${kind}: not JSON: ${r.body.slice(0, 200)}`), false;
    }
    if (!j.choices?.[0] || !j.usage) return fail(`${kind}: no choice or usage: ${r.body.slice(0, 200)}`), false;
  }
  stats.latency.push(r.ms);
  if (stream && r.ttft !== null) stats.ttft.push(r.ttft);
  return true;
}

async function one(server, agent, r) {
  const x = r();
  if (x < 0.25) {
    count("chat");
    checkGeneration("chat", await request(server, agent, { path: "/v1/chat/completions", body: chatBody(r, false) }), false);
  } else if (x < 0.45) {
    count("chat stream");
    checkGeneration("chat stream", await request(server, agent, { path: "/v1/chat/completions", body: chatBody(r, true) }), true);
  } else if (x < 0.55) {
    count("completion");
    checkGeneration("completion", await request(server, agent, { path: "/v1/completions", body: completionBody(r, false) }), false);
  } else if (x < 0.63) {
    count("completion stream");
    checkGeneration("completion stream", await request(server, agent, { path: "/v1/completions", body: completionBody(r, true) }), true);
  } else if (x < 0.73) {
    // Leaves mid-stream (after its first bytes) or at a random moment, perhaps while still queued.
    count("dropped stream");
    const body = { ...chatBody(r, true), max_tokens: 64 };
    const drop = r() < 0.6 ? { chunks: 1 + Math.floor(r() * 4) } : { ms: Math.floor(r() * 400) };
    const res = await request(server, null, { path: "/v1/chat/completions", body, drop });
    if (res.status >= 500) fail(`dropped stream: status ${res.status}: ${res.body.slice(0, 200)}`);
    if (res.error && res.error !== "ECONNRESET") fail(`dropped stream: ${res.error}`);
  } else if (x < 0.88) {
    const m = pick(r, malformed);
    count("malformed");
    // A body over the limit goes on a connection of its own: the server answers 413 and closes it.
    const res = await request(server, m.body?.length > maxBody ? null : agent, { ...m, timeout: 30000 });
    let message;
    try {
      message = JSON.parse(res.body).error?.message;
    } catch {
      // not JSON: reported below
    }
    if (res.status !== m.status) fail(`malformed (${m.name}): status ${res.status} (want ${m.status}) ${res.error ?? ""} ${res.body.slice(0, 200)}`);
    else if (!message) fail(`malformed (${m.name}): no OpenAI error object: ${res.body.slice(0, 200)}`);
  } else if (x < 0.9) {
    count("broken request line");
    const res = await rawGarbage(server);
    if (!res.reply?.startsWith("HTTP/1.1 400")) fail(`broken request line: ${res.error ?? JSON.stringify(res.reply.slice(0, 80))}`);
  } else {
    const path = pick(r, ["/health", "/metrics", "/v1/models"]);
    count("GET " + path);
    const res = await request(server, agent, { method: "GET", path, timeout: 30000 });
    if (res.error || res.status !== 200) fail(`GET ${path}: ${res.error ?? res.status} ${res.body.slice(0, 200)}`);
  }
}

function rssBytes(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : NaN;
}

function percentile(values, p) {
  if (!values.length) return NaN;
  const v = [...values].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))];
}

async function metricValue(server, name) {
  const res = await request(server, null, { method: "GET", path: "/metrics", timeout: 30000 });
  const m = res.body.match(new RegExp(`^${name} (\\S+)$`, "m"));
  return m ? Number(m[1]) : NaN;
}

const server = await startServer(["--parallel", String(options.parallel), "--ctx-size", String(options["ctx-size"]),
  "--max-body", String(maxBody), ...extra]);
console.log(`load test: ${options.connections} connections for ${options.seconds} s, server ${server.url} ` +
  `(pid ${server.pid}, --parallel ${options.parallel}), seed ${options.seed}`);
// Warm-up before the clock starts: every slot at once, with prompts short and long, builds the pipelines of
// every pass width (and the prefill GEMM), which the server creates on first use. Memory that grows after
// this is what the RSS check is for.
{
  const r = rng(options.seed - 1);
  const warm = await Promise.all(Array.from({ length: options.parallel }, (_, i) =>
    request(server, null, { path: "/v1/completions",
      body: { prompt: "Once upon a time " + sentence(r, 4 * i), max_tokens: 16, temperature: 0 } })));
  for (const w of warm) if (w.status !== 200) fail(`warm-up: ${w.status} ${w.error ?? ""} ${w.body.slice(0, 200)}`);
}
const t0 = performance.now();
const deadline = t0 + options.seconds * 1000;
const rss = [];  // [seconds since start, bytes]
const sampler = setInterval(() => {
  try {
    rss.push([(performance.now() - t0) / 1000, rssBytes(server.pid)]);
  } catch {
    // the process is gone: reported below
  }
}, 1000);
rss.push([0, rssBytes(server.pid)]);
const generatedBefore = await metricValue(server, "wgllm_generated_tokens_total");

const workers = Array.from({ length: options.connections }, async (_, i) => {
  const r = rng(options.seed + i * 7919);
  // Half the clients keep their connection alive between requests, as SDKs do; the others open one each.
  const agent = i % 2 === 0 ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : null;
  while (performance.now() < deadline) await one(server, agent, r);
  agent?.destroy();
});
await Promise.all(workers);
const elapsed = (performance.now() - t0) / 1000;
clearInterval(sampler);
rss.push([elapsed, rssBytes(server.pid)]);

// Every client is done: the server must be healthy, hold no slot or queue entry, and stop cleanly.
let crashed = server.exited() !== null;
if (!crashed) {
  const health = await request(server, null, { method: "GET", path: "/health", timeout: 30000 });
  if (health.status !== 200) fail(`/health after the run: ${health.status} ${health.error ?? ""} ${health.body}`);
  // A dropped client leaves at the scheduler's next step; give it a moment.
  let active = NaN, queued = NaN;
  for (let i = 0; i < 50; i++) {
    active = await metricValue(server, "wgllm_slots_active");
    queued = await metricValue(server, "wgllm_queue_depth");
    if (active === 0 && queued === 0) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  if (active !== 0 || queued !== 0) fail(`after the run: ${active} slots active, ${queued} queued`);
}
const generated = (await metricValue(server, "wgllm_generated_tokens_total")) - generatedBefore;
const code = await server.stop();
if (code !== 0) {
  crashed = true;
  fail(`the server exited with ${code}:\n${server.log().slice(-2000)}`);
}

const window = Math.min(20, options.seconds / 3);
const maxIn = (from, to) => Math.max(...rss.filter(([t]) => t >= from && t <= to).map(([, b]) => b));
const rssFirst = maxIn(0, window), rssLast = maxIn(elapsed - window, elapsed);
const growth = rssLast / rssFirst - 1;
if (!(growth < options["max-rss-growth"]))
  fail(`RSS grew by ${(growth * 100).toFixed(1)}% (limit ${(options["max-rss-growth"] * 100).toFixed(0)}%)`);

const ms = (v) => (Number.isFinite(v) ? v.toFixed(0) + " ms" : "-");
const summary = {
  date: new Date().toISOString(), host: os.hostname(), cpus: os.cpus().length, seed: options.seed,
  connections: options.connections, seconds: Number(elapsed.toFixed(1)), parallel: options.parallel,
  requests: stats.requests, requests_per_second: Number((stats.requests / elapsed).toFixed(1)), by_kind: stats.byKind,
  served_generations: stats.latency.length, busy_429: stats.busy429, generated_tokens: generated,
  generated_tokens_per_second: Number((generated / elapsed).toFixed(1)),
  latency_ms: { p50: Math.round(percentile(stats.latency, 50)), p90: Math.round(percentile(stats.latency, 90)),
    p99: Math.round(percentile(stats.latency, 99)), max: Math.round(Math.max(...stats.latency)) },
  first_text_ms: { p50: Math.round(percentile(stats.ttft, 50)), p99: Math.round(percentile(stats.ttft, 99)) },
  rss_mib: { first_window: rssFirst / 2 ** 20, last_window: rssLast / 2 ** 20, window_seconds: window,
    growth_percent: Number((growth * 100).toFixed(2)) },
  retried_on_closed_keep_alive: stats.retriedOnClosedKeepAlive, crashed, failures: stats.failures,
};
console.log(`requests: ${stats.requests} (${summary.requests_per_second}/s): ` +
  Object.entries(stats.byKind).map(([k, v]) => `${k} ${v}`).join(", "));
if (stats.retriedOnClosedKeepAlive) {
  console.log(`retried on a new connection after the server closed a kept-alive one: ${stats.retriedOnClosedKeepAlive}`);
}
console.log(`generations served: ${stats.latency.length}, 429 (busy): ${stats.busy429}, tokens generated: ${generated} ` +
  `(${summary.generated_tokens_per_second}/s)`);
console.log(`latency (whole request): p50 ${ms(summary.latency_ms.p50)}, p90 ${ms(summary.latency_ms.p90)}, ` +
  `p99 ${ms(summary.latency_ms.p99)}, max ${ms(summary.latency_ms.max)}; first streamed text: ` +
  `p50 ${ms(summary.first_text_ms.p50)}, p99 ${ms(summary.first_text_ms.p99)}`);
console.log(`RSS: ${summary.rss_mib.first_window.toFixed(1)} MiB (largest in the first ${window.toFixed(0)} s) -> ` +
  `${summary.rss_mib.last_window.toFixed(1)} MiB (largest in the last ${window.toFixed(0)} s): ${summary.rss_mib.growth_percent}%`);
console.log(crashed ? "the server CRASHED" : "the server stayed up and stopped cleanly");
if (options.json) fs.writeFileSync(options.json, JSON.stringify(summary, null, 2) + "\n");
if (stats.failures.length) {
  console.log(`FAILED (${stats.failures.length}):\n  ` + stats.failures.join("\n  "));
  process.exit(1);
}
console.log("load test passed");
