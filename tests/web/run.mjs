// The browser build's tests: headless Chromium (Debian's, with SwiftShader's WebGPU; flags as
// ../shared/browser/BROWSER.md found them) drives the JS API and the chat page of `make web`'s output,
// served by tests/web/server.mjs. Expected values come from other implementations: llama2.c's greedy text
// for stories260K, and the native wgllm's logits on the same files, run here in the same test run.
//
//   node tests/web/run.mjs --web BUILD-WEB-DIR --wgllm NATIVE-WGLLM [--only NAME]
//
// Random models are seeded by WGLLM_TEST_SEED when set, else freshly; the seed is printed on failure.
import {spawnSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

import {chromium} from '../node/node_modules/playwright-core/index.mjs';
import {writeLlama} from './gguf.mjs';
import {serve} from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const args = Object.fromEntries(process.argv.slice(2).reduce((a, x, i, all) => (x.startsWith('--') ? [...a, [x.slice(2), all[i + 1]]] : a), []));
const webDir = path.resolve(args.web || path.join(repo, 'build-web'));
const wgllm = args.wgllm;
const seed = Number(process.env.WGLLM_TEST_SEED || Math.floor(Math.random() * 2 ** 31));
const CHROMIUM = '/usr/lib/chromium/chromium';
const FLAGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

if (!fs.existsSync(path.join(webDir, 'pkg', 'wgllm.wasm'))) {
  console.error(`no browser build in ${webDir}: run \`make web\` first`);
  process.exit(1);
}
if (!wgllm || !fs.existsSync(wgllm)) {
  console.error('--wgllm: the native wgllm binary is needed for the reference logits and error messages');
  process.exit(1);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wgllm-web-'));
process.on('exit', () => fs.rmSync(tmp, {recursive: true, force: true}));
const srv = await serve({
  '/pkg/': path.join(webDir, 'pkg'), '/chat/': path.join(webDir, 'chat'), '/models/': path.join(repo, 'models'),
  '/files/': tmp, '/test/': path.join(here, 'pages'),
});

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

// ||a - b||_2 / ||b||_2 (CONTRACTS.md).
function relativeError(a, b) {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; ++i) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

// The native build's logits for `ids` on `file`: [positions][vocab].
function nativeLogits(file, ids, vocab) {
  const out = path.join(tmp, 'native.f32');
  const p = spawnSync(wgllm, ['logits', '-m', file, '--ids', ids.join(','), '-o', out], {encoding: 'utf8'});
  expect(p.status === 0, `wgllm logits failed: ${p.stderr}`);
  const all = new Float32Array(fs.readFileSync(out).buffer.slice(0));
  return ids.map((_, i) => all.subarray(i * vocab, (i + 1) * vocab));
}

// The message the native build gives for a file (what `wgllm info` prints after "wgllm: ").
function nativeError(name) {
  const p = spawnSync(wgllm, ['info', name], {cwd: tmp, encoding: 'utf8'});
  expect(p.status === 2, `wgllm info ${name} should fail with exit code 2, got ${p.status}: ${p.stderr}`);
  return p.stderr.trim().replace(/^wgllm: /, '');
}

async function launch(webgpu = true) {
  return chromium.launch({executablePath: CHROMIUM, headless: true,
                          args: webgpu ? [...FLAGS, '--enable-unsafe-webgpu'] : FLAGS});
}

async function harness(context) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log('  [page error]', e.message));
  await page.goto(srv.url + '/test/harness.html');
  await page.waitForFunction(() => window.harnessReady);
  return page;
}

const browser = await launch();

// A model whose KV cache outgrows the adapter at long contexts: K (and V) of one layer take 2 KiB per
// position (32 KV heads of 16 f32), so 2^19 positions make a 1 GiB buffer, SwiftShader's maxBufferSize.
// F32 weights: SwiftShader compiles the quantized kernels for 10 s more.
const LONG = {dim: 512, layers: 2, heads: 32, kvHeads: 32, ffn: 256, vocab: 256, context: 1 << 20};
const kvLayerBytes = (ctx) => ctx * LONG.kvHeads * (LONG.dim / LONG.heads) * 4;
const kvBytes = (ctx) => 2 * LONG.layers * kvLayerBytes(ctx);
let longWeights = 0;
function writeLong() {
  if (!longWeights) longWeights = writeLlama(path.join(tmp, 'long.gguf'), LONG, {'*': 'f32'}, seed + 2);
  return longWeights;
}

// The adapter as the page sees it, asked directly rather than through the engine.
async function adapterFacts(page) {
  return page.evaluate(async () => {
    const a = await navigator.gpu.requestAdapter();
    const heaps = (a.info.memoryHeaps || []).map((h) => ({size: Number(h.size), local: (h.properties & 1) !== 0}));
    return {maxBufferSize: a.limits.maxBufferSize, heaps};
  });
}

const tests = {
  // stories260K greedy: llama2.c's text byte for byte, the model streamed from the network (no cache).
  async greedyText() {
    const page = await harness(await browser.newContext());
    const r = await page.evaluate(async () => {
      const e = await wgllm.createEngine();
      await e.load('/models/stories260K.gguf', {cache: false});
      const out = await e.complete('', {temperature: 0, maxTokens: 200});
      return {text: out.text, stats: out.stats};
    });
    const expected = fs.readFileSync(path.join(repo, 'testdata/karpathy-llama2.c/expected_stories260K_t0_n200.txt'), 'utf8');
    const strip = (s) => (s.endsWith('\n') ? s.slice(0, -1) : s);
    expect(strip(r.text) === strip(expected), `greedy text differs from llama2.c's:\n${r.text}`);
    return `${r.stats.tokens} tokens, ${r.stats.tokensPerSecond.toFixed(1)} tok/s on SwiftShader`;
  },

  // A random Q4_0/Q8_0 model from a File (Blob): every position's logits equal the native build's.
  async logitsMatchNative() {
    const shape = {dim: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 96, vocab: 256};
    const file = path.join(tmp, 'mixed.gguf');
    writeLlama(file, shape, {attn_q: 'q4_0', attn_k: 'q4_0', attn_output: 'q4_0', ffn_gate: 'q4_0', ffn_down: 'q4_0'}, seed);
    const ids = [1, 17, 200, 3, 99, 255, 0, 42];
    const reference = nativeLogits(file, ids, shape.vocab);
    const page = await harness(await browser.newContext());
    const rows = await page.evaluate(async (ids) => {
      const e = await wgllm.createEngine();
      const blob = await (await fetch('/files/mixed.gguf')).blob();
      await e.load(new File([blob], 'mixed.gguf'));
      return (await e.logits(ids)).map((r) => Array.from(r));
    }, ids);
    const errors = rows.map((row, i) => relativeError(row, reference[i]));
    expect(Math.max(...errors) <= 1e-3, `logits differ from the native build's: relative errors ${errors}`);
    return `relative error at most ${Math.max(...errors).toExponential(2)} over ${ids.length} positions`;
  },

  // Loading streams the weights past the wasm heap: a model several times larger than the heap loads
  // without the heap growing. (Its logits are not checked: SwiftShader takes ~40 s per position here;
  // logitsMatchNative checks the same path on a small model.)
  async wasmMemoryStaysSmall() {
    const shape = {dim: 512, layers: 20, heads: 8, kvHeads: 4, ffn: 2048, vocab: 1024};
    const bytes = writeLlama(path.join(tmp, 'large.gguf'), shape, {ffn_up: 'q4_0'}, seed + 1);
    const page = await harness(await browser.newContext());
    const r = await page.evaluate(async () => {
      const e = await wgllm.createEngine();
      const info = await e.load('/files/large.gguf', {cache: false, contextSize: 64});
      return {info, memory: e.wasmMemoryBytes};
    });
    expect(r.info.weightBytes === bytes, `weights of ${r.info.weightBytes} bytes loaded, the file has ${bytes}`);
    expect(r.memory * 4 < bytes, `wasm memory ${r.memory} bytes is not far below the model's ${bytes} bytes`);
    return `${(bytes / 2 ** 20).toFixed(1)} MiB of weights, wasm memory ${(r.memory / 2 ** 20).toFixed(1)} MiB, ` +
        `loaded in ${r.info.loadSeconds.toFixed(1)} s`;
  },

  // The chat page: a URL loads (downloaded into OPFS), a reply streams with tok/s; after a reload the
  // model comes from OPFS without a request for it.
  async chatPageAndCache() {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (e) => console.log('  [page error]', e.message));
    const modelRequests = () => srv.log.filter((r) => r.path === '/models/stories260K.gguf').length;
    const before = modelRequests();
    await page.goto(srv.url + '/chat/index.html?model=/models/stories260K.gguf');
    await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, {timeout: 120000});
    expect(await page.textContent('#error') === '', `load failed: ${await page.textContent('#error')}`);
    expect(modelRequests() === before + 1, 'the first visit should download the model once');
    await page.fill('#max', '12');
    await page.fill('#temp', '0');
    await page.fill('#prompt', 'Tell me a story.');
    await page.click('#send');
    await page.waitForFunction(() => document.body.dataset.state === 'generating');
    await page.waitForFunction(() => document.body.dataset.state !== 'generating', null, {timeout: 120000});
    const reply = await page.textContent('.msg.assistant');
    const speed = await page.textContent('#speed');
    expect(reply.length > 0, 'no reply streamed');
    expect(/tok\/s/.test(speed), `no tok/s shown: '${speed}'`);
    await page.reload();
    await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, {timeout: 120000});
    const status = await page.textContent('#status');
    expect(await page.textContent('#error') === '', `reload failed: ${await page.textContent('#error')}`);
    expect(modelRequests() === before + 1, 'the second visit fetched the model again instead of using OPFS');
    expect(/cache/.test(status), `the status does not say the model came from the cache: '${status}'`);
    return `reply '${reply.slice(0, 40)}…' (${speed}); second visit: ${status.slice(status.indexOf('loaded in'))}`;
  },

  // `wgllm serve --web-dir --models-dir`: /local/ serves the page with COOP/COEP, /models/ only the folder's
  // own .gguf files, and the page loads one of them and replies.
  async serveLocal() {
    const models = path.join(tmp, 'served');
    fs.mkdirSync(path.join(models, 'sub'), {recursive: true});
    fs.copyFileSync(path.join(repo, 'models/stories260K.gguf'), path.join(models, 'story.gguf'));
    fs.copyFileSync(path.join(repo, 'models/stories260K.gguf'), path.join(models, 'sub/hidden.gguf'));
    fs.writeFileSync(path.join(models, 'notes.txt'), 'not a model');
    process.env.WGLLM_BINARY = wgllm;
    const {startServer} = await import('../node/wgllm_server.mjs');
    const server = await startServer(['--web-dir', webDir, '--models-dir', models]);
    try {
      const local = await fetch(server.url + '/local/', {redirect: 'manual'});
      expect(local.status === 302 && local.headers.get('location') === '/local/chat/', `/local/: ${local.status}`);
      const page = await fetch(server.url + '/local/chat/');
      expect(page.ok && page.headers.get('cross-origin-opener-policy') === 'same-origin' &&
             page.headers.get('cross-origin-embedder-policy') === 'require-corp', 'the page lacks COOP/COEP');
      const wasm = await fetch(server.url + '/local/pkg/wgllm.wasm');
      expect(wasm.headers.get('content-type') === 'application/wasm', `wasm served as ${wasm.headers.get('content-type')}`);
      const model = await fetch(server.url + '/models/story.gguf');
      expect(model.ok && (await model.arrayBuffer()).byteLength === fs.statSync(path.join(models, 'story.gguf')).size,
             '/models/story.gguf is not the file');
      for (const p of ['/models/sub/hidden.gguf', '/models/notes.txt', '/models/..%2Fstory.gguf', '/models/%2E%2E/run.mjs'])
        expect((await fetch(server.url + p)).status === 404, `${p} should be 404`);
      const context = await browser.newContext();
      const tab = await context.newPage();
      await tab.goto(server.url + '/local/chat/?model=/models/story.gguf');
      await tab.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, {timeout: 120000});
      expect(await tab.textContent('#error') === '', `load failed: ${await tab.textContent('#error')}`);
      await tab.fill('#max', '4');
      await tab.fill('#prompt', 'Hi');
      await tab.click('#send');
      await tab.waitForFunction(() => document.querySelector('.msg.assistant') && document.body.dataset.state === 'ready',
                                null, {timeout: 120000});
      expect((await tab.textContent('.msg.assistant')).length > 0, 'no reply');
      return 'page, wasm type, isolation headers, /models/ confined to the folder, a reply';
    } finally {
      await server.stop();
    }
  },

  // A context whose KV cache needs a buffer beyond the adapter's maxBufferSize: the chat page refuses it
  // before allocating, naming the buffer's size and the limit, and then loads the model at a context that fits.
  async tooLargeForABuffer() {
    writeLong();
    const page = await (await browser.newContext()).newPage();
    page.on('pageerror', (e) => console.log('  [page error]', e.message));
    await page.goto(srv.url + '/chat/index.html');
    await page.waitForFunction(() => document.body.dataset.state === 'idle');
    const {maxBufferSize} = await adapterFacts(page);
    let ctx = 256;
    while (kvLayerBytes(ctx) <= maxBufferSize) ctx *= 2;
    expect(ctx <= LONG.context, `the test model's context ${LONG.context} is too short for maxBufferSize ${maxBufferSize}`);
    const load = async (context) => {
      await page.fill('#ctx', String(context));
      await page.click('#load');
      await page.waitForFunction(() => ['loaded', 'ready', 'error'].includes(document.body.dataset.state), null,
                                 {timeout: 120000});
      return {state: await page.evaluate(() => document.body.dataset.state), error: await page.textContent('#error')};
    };
    await page.uncheck('#cache');
    await page.fill('#url', '/files/long.gguf');
    const refused = await load(ctx);
    expect(refused.state === 'error', `a ${ctx}-token context loaded (state ${refused.state})`);
    for (const part of ['does not fit', 'long.gguf: one GPU buffer of the model needs', `(${kvLayerBytes(ctx)} bytes)`,
                        `maxBufferSize) is`, `(${maxBufferSize} bytes)`, `now ${ctx} positions`])
      expect(refused.error.includes(part), `'${part}' is not in the page's message: ${refused.error}`);
    const fits = await load(256);
    expect(fits.state === 'loaded' && fits.error === '', `a 256-token context after the refusal: ${fits.state} ${fits.error}`);
    return `'${refused.error.slice(0, 160)}…'; then 256 positions loaded`;
  },

  // A buffer within the limits that the GPU refuses all the same (SwiftShader allocates less than its 1 GiB
  // maxBufferSize): the load stops before any weight is uploaded, names the model's needs and the adapter's
  // limits, and leaves no model behind; the same engine then loads another model.
  async refusedAllocation() {
    const weights = writeLong();
    const page = await harness(await browser.newContext());
    const {maxBufferSize} = await adapterFacts(page);
    const ctx = maxBufferSize / kvLayerBytes(1);
    const r = await page.evaluate(async (ctx) => {
      const e = await wgllm.createEngine();
      const phases = new Set();
      let error = null;
      try {
        await e.load('/files/long.gguf', {cache: false, contextSize: ctx, onProgress: (p) => phases.add(p.phase)});
      } catch (err) {
        error = {code: err.code, message: err.message};
      }
      const left = e.model;
      const info = await e.load('/models/stories260K.gguf', {cache: false});
      return {error, phases: [...phases], left, next: info.name};
    }, ctx);
    expect(r.error, `a context of ${ctx} (K and V buffers of ${maxBufferSize} bytes) loaded: SwiftShader allocated them`);
    expect(r.error.code === 'too-large', `${r.error.code}: ${r.error.message}`);
    for (const part of ['long.gguf: the model needs', `weights ${(weights / 2 ** 20).toFixed(1)} MiB (${weights} bytes)`,
                        `(${kvBytes(ctx)} bytes) for a context of ${ctx} tokens`,
                        `${maxBufferSize} bytes) (maxBufferSize)`, 'does not tell its memory', 'VK_ERROR_OUT_OF_DEVICE_MEMORY'])
      expect(r.error.message.includes(part), `'${part}' is not in: ${r.error.message}`);
    expect(!r.phases.includes('load'), 'weights were uploaded before the refusal was noticed');
    expect(r.left === null && r.next === 'stories260K.gguf', `after the refusal: model ${JSON.stringify(r.left)}, then ${r.next}`);
    return `'${r.error.message.slice(0, 160)}…'; nothing uploaded; then another model loaded`;
  },

  // Where the browser tells the adapter's memory (Chromium's WebGPU developer features: memoryHeaps), a
  // model whose KV cache alone exceeds it is refused before anything is allocated, with both sizes.
  async tooLargeForTheMemory() {
    const weights = writeLong();
    const dev = await chromium.launch({executablePath: CHROMIUM, headless: true,
                                       args: [...FLAGS, '--enable-unsafe-webgpu', '--enable-webgpu-developer-features']});
    try {
      const page = await harness(await dev.newContext());
      const {maxBufferSize, heaps} = await adapterFacts(page);
      const local = heaps.filter((h) => h.local);
      expect(heaps.length, 'Chromium shows no adapter.info.memoryHeaps with --enable-webgpu-developer-features');
      const memory = Math.max(...(local.length ? local : heaps).map((h) => h.size));
      const ctx = (Math.floor(memory / kvBytes(256)) + 1) * 256;  // a KV cache just over the memory
      expect(kvLayerBytes(ctx) <= maxBufferSize, `${memory} bytes of memory need buffers beyond maxBufferSize here`);
      const r = await page.evaluate(async (ctx) => {
        const e = await wgllm.createEngine();
        let error = null;
        try {
          await e.load('/files/long.gguf', {cache: false, contextSize: ctx});
        } catch (err) {
          error = {code: err.code, message: err.message};
        }
        const left = e.model;
        const info = await e.load('/models/stories260K.gguf', {cache: false});
        return {error, left, next: info.name, memoryBytes: e.adapter.memoryBytes};
      }, ctx);
      expect(r.error && r.error.code === 'too-large', `context ${ctx}: ${JSON.stringify(r.error)}`);
      const needs = /the model needs [\d.]+ GiB \((\d+) bytes\) of GPU memory/.exec(r.error.message);
      expect(needs && Number(needs[1]) >= weights + kvBytes(ctx), `no total of at least the weights and KV cache in: ${r.error.message}`);
      for (const part of [`weights ${(weights / 2 ** 20).toFixed(1)} MiB (${weights} bytes)`, `(${kvBytes(ctx)} bytes)`,
                          `but the device has`, `(${memory} bytes)`, `now ${ctx} positions`])
        expect(r.error.message.includes(part), `'${part}' is not in: ${r.error.message}`);
      expect(r.left === null && r.next === 'stories260K.gguf', `after the refusal: model ${JSON.stringify(r.left)}, then ${r.next}`);
      expect(r.memoryBytes === memory, `engine.adapter.memoryBytes ${r.memoryBytes}, the adapter's heap ${memory}`);
      return `'${r.error.message.slice(0, 160)}…'; then another model loaded`;
    } finally {
      await dev.close();
    }
  },

  // Corrupt files give the native build's GGUF message; a browser without WebGPU gets a clear one.
  async errors() {
    const model = fs.readFileSync(path.join(repo, 'models/stories260K.gguf'));
    const bad = {
      'magic.gguf': Buffer.concat([Buffer.from('GGUX'), model.subarray(4)]),
      'header.gguf': model.subarray(0, 100),
      'data.gguf': model.subarray(0, model.length - 10000),
    };
    const page = await harness(await browser.newContext());
    for (const [name, bytes] of Object.entries(bad)) {
      fs.writeFileSync(path.join(tmp, name), bytes);
      const expected = nativeError(name);
      const got = await page.evaluate(async (name) => {
        const e = await wgllm.createEngine();
        try {
          await e.load('/files/' + name, {cache: false});
          return {code: 'loaded'};
        } catch (err) {
          return {code: err.code, message: err.message};
        }
      }, name);
      expect(got.code === 'bad-file' && got.message === expected,
             `${name}: expected bad-file '${expected}', got ${got.code} '${got.message}'`);
    }
    // No navigator.gpu at all: the API and the chat page say so.
    const context = await browser.newContext();
    await context.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', {get: () => undefined}));
    const noGpu = await harness(context);
    const missing = await noGpu.evaluate(() => wgllm.createEngine().then(() => 'created', (e) => e.code + ': ' + e.message));
    expect(missing.startsWith('no-webgpu: This browser has no WebGPU'), `without navigator.gpu: ${missing}`);
    const chat = await context.newPage();
    await chat.goto(srv.url + '/chat/index.html');
    await chat.waitForFunction(() => document.body.dataset.state === 'error');
    expect(/no WebGPU/.test(await chat.textContent('#error')), 'the chat page does not say WebGPU is missing');
    // WebGPU without an adapter (Chromium blocklists CPU adapters unless told otherwise).
    const plain = await launch(false);
    const noAdapter = await (await harness(await plain.newContext())).evaluate(
        () => wgllm.createEngine().then(() => 'created', (e) => e.code + ': ' + e.message));
    await plain.close();
    expect(/^no-webgpu: (WebGPU is present but offers no adapter|This browser has no WebGPU)/.test(noAdapter),
           `without an adapter: ${noAdapter}`);
    return `3 corrupt files with the native messages; no WebGPU, no adapter`;
  },
};

let failed = 0;
for (const [name, test] of Object.entries(tests)) {
  if (args.only && !name.includes(args.only)) continue;
  const started = Date.now();
  try {
    const note = await test();
    console.log(`[  OK  ] ${name} (${((Date.now() - started) / 1000).toFixed(1)} s): ${note}`);
  } catch (e) {
    ++failed;
    console.log(`[FAILED] ${name} (${((Date.now() - started) / 1000).toFixed(1)} s): ${e.message}\n  seed: WGLLM_TEST_SEED=${seed}`);
  }
}
await browser.close();
await srv.close();
process.exit(failed ? 1 : 0);
