// `wgllm serve` driven by the official `openai` npm client, as an application would use it. The built-in
// stories260K has no chat template, so chat requests are rendered with the ChatML fallback. Greedy text
// from BOS is checked against llama2.c's (another implementation, testdata/karpathy-llama2.c).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import OpenAI from "openai";
import { startServer, repoRoot } from "./wgllm_server.mjs";

let server, client;

before(async () => {
  server = await startServer(["--parallel", "8", "--ctx-size", "512"]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "unused", maxRetries: 0, timeout: 120000 });
});

after(async () => {
  assert.equal(await server.stop(), 0, server.log());
});

const llama2cStory = fs
  .readFileSync(path.join(repoRoot, "testdata/karpathy-llama2.c/expected_stories260K_t0_n200.txt"), "utf8")
  .replace(/\n$/, "");

async function streamText(stream) {
  let text = "", finish = null, usage = null, chunks = 0, role = null;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    if (choice.delta) {
      if (choice.delta.role) role = choice.delta.role;
      text += choice.delta.content ?? "";
    } else {
      text += choice.text ?? "";
    }
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  return { text, finish, usage, chunks, role };
}

const chat = (content, extra = {}) => ({
  model: "stories260K",
  messages: [{ role: "user", content }],
  temperature: 0,
  max_tokens: 24,
  ...extra,
});

test("models lists the served model", async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ["stories260K"]);
  const model = await client.models.retrieve("stories260K");
  assert.equal(model.id, "stories260K");
});

test("completions: greedy text from BOS is llama2.c's story, streamed or not", async () => {
  const r = await client.completions.create({ model: "stories260K", prompt: "", temperature: 0, max_tokens: 200 });
  assert.equal(r.object, "text_completion");
  assert.equal(r.choices[0].text, llama2cStory);
  assert.equal(r.choices[0].finish_reason, "length");
  assert.deepEqual(r.usage, {
    prompt_tokens: 1, completion_tokens: 200, total_tokens: 201, prompt_tokens_details: { cached_tokens: 0 },
  });
  // Streamed, 64 tokens: the start of the same story.
  const s = await streamText(await client.completions.create({
    model: "stories260K", prompt: "", temperature: 0, max_tokens: 64, stream: true,
    stream_options: { include_usage: true },
  }));
  assert.ok(s.text.length > 150 && llama2cStory.startsWith(s.text), s.text);
  assert.equal(s.finish, "length");
  assert.equal(s.usage.completion_tokens, 64);
  assert.ok(s.chunks > 32, `streamed in ${s.chunks} chunks`);
});

test("chat: non-streaming and streaming give the same greedy reply, with usage", async () => {
  const r = await client.chat.completions.create(chat("Tell me about a dog."));
  assert.equal(r.object, "chat.completion");
  assert.equal(r.model, "stories260K");
  assert.equal(r.choices[0].message.role, "assistant");
  const text = r.choices[0].message.content;
  assert.ok(text.length > 0);
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 24);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 24);
  assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, "number");

  const s = await streamText(await client.chat.completions.create(
    chat("Tell me about a dog.", { stream: true, stream_options: { include_usage: true } })));
  assert.equal(s.role, "assistant");
  assert.equal(s.text, text);
  assert.equal(s.finish, "length");
  assert.equal(s.usage.prompt_tokens, r.usage.prompt_tokens);
  assert.equal(s.usage.completion_tokens, 24);

  const plain = await streamText(await client.chat.completions.create(chat("Tell me about a dog.", { stream: true })));
  assert.equal(plain.usage, null, "no usage chunk unless stream_options.include_usage");
});

test("stop sequences end the text before them, streamed or not", async () => {
  // Six characters from the middle of llama2.c's greedy story, and a sequence that never occurs.
  const stop = llama2cStory.slice(100, 106);
  const expected = llama2cStory.slice(0, llama2cStory.indexOf(stop));
  const r = await client.completions.create({ prompt: "", temperature: 0, max_tokens: 64, stop: [stop, "zzzq"] });
  assert.equal(r.choices[0].text, expected);
  assert.equal(r.choices[0].finish_reason, "stop");
  const s = await streamText(await client.completions.create({
    prompt: "", temperature: 0, max_tokens: 64, stop, stream: true,
  }));
  assert.equal(s.text, expected);
  assert.equal(s.finish, "stop");

  const c = await client.chat.completions.create(chat("Hello", { max_tokens: 30 }));
  const reply = c.choices[0].message.content;
  const chatStop = reply.slice(10, 14);
  const cut = await client.chat.completions.create(chat("Hello", { max_tokens: 30, stop: chatStop }));
  assert.equal(cut.choices[0].message.content, reply.slice(0, reply.indexOf(chatStop)));
  assert.equal(cut.choices[0].finish_reason, "stop");
});

test("a seed reproduces a sampled reply; another seed gives another", async () => {
  const sampled = (seed) => client.chat.completions.create(chat("Once there was a frog.", {
    temperature: 1.0, top_p: 1, top_k: 0, min_p: 0, max_tokens: 32, seed,
  }));
  const a = (await sampled(42)).choices[0].message.content;
  const b = (await sampled(42)).choices[0].message.content;
  const c = (await sampled(7)).choices[0].message.content;
  assert.equal(a, b);
  assert.notEqual(a, c);
});

test("8 concurrent greedy requests each return exactly the text it returns alone", async () => {
  const prompts = ["Lily", "Tom and the ball", "The sun", "A big dog", "Once", "The bird sang", "Sue", "Ben ran"];
  const request = (p) => client.completions.create({ prompt: p, temperature: 0, max_tokens: 32 });
  const alone = [];
  for (const p of prompts) alone.push((await request(p)).choices[0].text);
  const together = await Promise.all(prompts.map(request));
  together.forEach((r, i) => assert.equal(r.choices[0].text, alone[i], `prompt ${JSON.stringify(prompts[i])}`));
});

test("a follow-up chat turn reports the reused prefix in cached_tokens", async () => {
  const first = [{ role: "user", content: "Tell me a story about a red ball." }];
  const r1 = await client.chat.completions.create({ ...chat(""), messages: first, max_tokens: 16 });
  const follow = [...first, { role: "assistant", content: r1.choices[0].message.content },
    { role: "user", content: "And then?" }];
  const r2 = await client.chat.completions.create({ ...chat(""), messages: follow, max_tokens: 8 });
  const cached = r2.usage.prompt_tokens_details.cached_tokens;
  // At least the first turn's prompt; never the last prompt token, whose logits sample the reply.
  assert.ok(cached >= r1.usage.prompt_tokens && cached < r2.usage.prompt_tokens, JSON.stringify(r2.usage));
});

test("a lost GPU device fails the request in flight; the server makes the device again and serves", async () => {
  // WGLLM_FAULT_DEVICE_LOSS: the device is destroyed at the start of the 4th step, as a driver reset would.
  const lossy = await startServer(["--ctx-size", "256"], { WGLLM_FAULT_DEVICE_LOSS: "4" });
  try {
    const c = new OpenAI({ baseURL: lossy.url + "/v1", apiKey: "unused", maxRetries: 0, timeout: 120000 });
    const stream = await c.completions.create({ prompt: "", temperature: 0, max_tokens: 64, stream: true });
    let text = "";
    await assert.rejects(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
    }, /GPU device lost/);
    assert.ok(llama2cStory.startsWith(text), text);
    let health;
    for (let i = 0; i < 600; i++) {
      health = await fetch(lossy.url + "/health");
      if (health.status === 200) break;
      assert.equal(health.status, 503);
      assert.match((await health.json()).reason, /GPU device lost/);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(health.status, 200);
    const r = await c.completions.create({ prompt: "", temperature: 0, max_tokens: 200 });
    assert.equal(r.choices[0].text, llama2cStory);
    assert.match(await (await fetch(lossy.url + "/metrics")).text(), /^wgllm_recoveries_total 1$/m);
  } finally {
    assert.equal(await lossy.stop(), 0, lossy.log());
  }
  assert.match(lossy.log(), /generating again after/);
});

test("errors arrive as the client's typed errors", async () => {
  await assert.rejects(client.chat.completions.create({ ...chat("hi"), model: "gpt-4o" }), (e) => {
    assert.equal(e.status, 404);
    assert.match(e.message, /stories260K/);
    return true;
  });
  await assert.rejects(client.chat.completions.create({ ...chat("hi"), temperature: 7 }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.param, "temperature");
    return true;
  });
  await assert.rejects(client.completions.create({ prompt: "cat ".repeat(600) }), (e) => {
    assert.equal(e.status, 400);
    assert.match(e.message, /512/);
    return true;
  });
});
