// wgllm in the browser: the JS API over the engine compiled to WebAssembly (wgllm.js + wgllm.wasm beside
// this file). The same C++ and WGSL kernels as the native build run on the visitor's GPU through WebGPU.
// Types and documentation: index.d.ts; a walk-through: docs/web.md.
//
// JS drives everything that waits: the engine records GPU work and returns a read-back ticket, and this
// module awaits the ticket's promise before asking for its bytes (no ASYNCIFY, no blocking). Weights go
// from the file, the network or the Origin Private File System straight into GPU buffers, piece by piece
// as the engine lists them, and are repacked on the GPU; only the GGUF header passes through wasm memory.
import createWgllmModule from './wgllm.js';

export class WgllmError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'WgllmError';
    this.code = code;
  }
}

const MiB = 1 << 20;
const CACHE_DIR = 'wgllm-models';
// Limits the engine reads; the device gets the adapter's own values, not WebGPU's defaults.
const LIMITS = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
                'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY',
                'maxComputeWorkgroupSizeZ', 'maxComputeWorkgroupsPerDimension', 'maxStorageBuffersPerShaderStage',
                'maxBindGroups', 'maxBindingsPerBindGroup', 'maxUniformBufferBindingSize'];
const FEATURES = ['subgroups', 'shader-f16', 'timestamp-query'];
const DEVICE_LOCAL = 1;  // GPUHeapProperty

// The adapter's memory in bytes where the browser tells it, else 0 (unknown). Only Chromium does, with its
// WebGPU developer features on (adapter.info.memoryHeaps); like the native build, the largest
// device-local heap counts.
function adapterMemory(info) {
  const heaps = (info && info.memoryHeaps) || [];
  const local = heaps.filter((h) => h.properties & DEVICE_LOCAL);
  return Math.max(0, ...(local.length ? local : heaps).map((h) => Number(h.size)));
}

// Bytes as the engine's messages write them (runtime/memory_plan.cpp).
function bytesText(n) {
  const gib = n >= 2 ** 30;
  return `${(n / (gib ? 2 ** 30 : MiB)).toFixed(gib ? 2 : 1)} ${gib ? 'GiB' : 'MiB'} (${n} bytes)`;
}

async function requestAdapter() {
  const gpu = globalThis.navigator && navigator.gpu;
  if (!gpu)
    throw new WgllmError('no-webgpu', 'This browser has no WebGPU (navigator.gpu is missing). wgllm needs a ' +
                         'browser with WebGPU enabled, e.g. a current Chrome or Edge, served over https or localhost.');
  const adapter = await gpu.requestAdapter({powerPreference: 'high-performance'});
  if (!adapter)
    throw new WgllmError('no-webgpu', 'WebGPU is present but offers no adapter (no usable GPU, or it is ' +
                         'blocklisted for this browser).');
  return adapter;
}

export async function createEngine(options = {}) {
  const adapter = await requestAdapter();  // fails early, before any download, when there is no WebGPU
  return new Engine(adapter, options);
}

// Where a model's bytes come from: read(offset, size) in increasing offsets (pieces of the file in order),
// head(n) for the first n bytes while the header is parsed.
class BlobReader {
  constructor(blob, name) {
    this.blob = blob;
    this.name = name;
    this.size = blob.size;
    this.window = null;  // {offset, bytes}: read ahead, so that small pieces do not each read the file
  }
  async head(n) {
    return new Uint8Array(await this.blob.slice(0, n).arrayBuffer());
  }
  async read(offset, size) {
    const w = this.window;
    if (!w || offset < w.offset || offset + size > w.offset + w.bytes.length) {
      const end = Math.min(this.size, offset + Math.max(size, 16 * MiB));
      this.window = {offset, bytes: new Uint8Array(await this.blob.slice(offset, end).arrayBuffer())};
    }
    return this.window.bytes.subarray(offset - this.window.offset, offset - this.window.offset + size);
  }
}

// A network response read once, front to back: the header is kept until dropHead(), the rest is passed on.
class StreamReader {
  constructor(response, name, size) {
    this.reader = response.body.getReader();
    this.name = name;
    this.size = size;
    this.chunks = [];    // unread data
    this.offset = 0;     // file offset of chunks[0]
    this.keptHead = [];  // the first bytes, while the header is parsed
    this.headBytes = 0;
    this.keep = true;
  }
  async pull() {
    const {done, value} = await this.reader.read();
    if (done) throw new WgllmError('network', `${this.name}: the download ended early`);
    if (this.keep) {
      this.keptHead.push(value);
      this.headBytes += value.length;
    }
    this.chunks.push(value);
  }
  async head(n) {
    while (this.headBytes < n) await this.pull();
    return concat(this.keptHead, n);
  }
  dropHead() {
    this.keep = false;
    this.keptHead = [];
  }
  // A load that stops early ends the download.
  cancel() {
    this.reader.cancel().catch(() => {});
  }
  async read(offset, size) {
    while (this.offset < offset) {  // the gap before this piece (padding, or bytes no piece reads)
      if (!this.chunks.length) await this.pull();
      const skip = Math.min(this.chunks[0].length, offset - this.offset);
      this.take(skip);
    }
    if (!this.chunks.length) await this.pull();
    if (this.chunks[0].length >= size) return this.take(size);
    const out = new Uint8Array(size);
    for (let at = 0; at < size;) {
      if (!this.chunks.length) await this.pull();
      const part = this.take(Math.min(this.chunks[0].length, size - at));
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
  // The next n bytes of the first chunk.
  take(n) {
    const c = this.chunks[0];
    if (n === c.length) this.chunks.shift();
    else this.chunks[0] = c.subarray(n);
    this.offset += n;
    return c.subarray(0, n);
  }
}

function concat(chunks, n) {
  if (chunks.length === 1 && chunks[0].length >= n) return chunks[0].subarray(0, n);
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    if (at >= n) break;
    const take = c.subarray(0, Math.min(c.length, n - at));
    out.set(take, at);
    at += take.length;
  }
  return out;
}

// The Origin Private File System's model folder, or null where the browser has none.
async function cacheDir() {
  try {
    const root = await navigator.storage.getDirectory();
    return await root.getDirectoryHandle(CACHE_DIR, {create: true});
  } catch {
    return null;
  }
}

function cacheKey(url) {
  return encodeURIComponent(new URL(url, globalThis.location && location.href).href);
}

function baseName(url) {
  const path = new URL(url, globalThis.location && location.href).pathname;
  return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1)) || 'model.gguf';
}

// Downloads `url` into the cache folder (as NAME.part, renamed when complete) and returns the file.
// `stopped()` is checked between chunks.
async function download(dir, url, key, signal, stopped, progress) {
  const response = await fetchOk(url, signal);
  const total = Number(response.headers.get('content-length')) || 0;
  const part = await dir.getFileHandle(key + '.part', {create: true});
  const out = await part.createWritable();
  let loaded = 0;
  try {
    const reader = response.body.getReader();
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      if (stopped()) throw new WgllmError('aborted', 'the load was aborted');
      await out.write(value);
      loaded += value.length;
      progress({phase: 'download', loaded, total});
    }
    await out.close();
  } catch (e) {
    await out.abort().catch(() => {});
    await dir.removeEntry(key + '.part').catch(() => {});
    if (stopped()) throw new WgllmError('aborted', 'the load was aborted');
    throw e instanceof WgllmError ? e : new WgllmError('network', `${url}: ${e.message}`);
  }
  await part.move(key);
  return (await dir.getFileHandle(key)).getFile();
}

async function fetchOk(url, signal) {
  let response;
  try {
    response = await fetch(url, {signal});
  } catch (e) {
    if (signal && signal.aborted) throw new WgllmError('aborted', 'the load was aborted');
    throw new WgllmError('network', `${url}: ${e.message}`);
  }
  if (!response.ok) throw new WgllmError('network', `${url}: HTTP ${response.status} ${response.statusText}`);
  return response;
}

// The models in the Origin Private File System cache: [{url, name, size}].
export async function cachedModels() {
  const dir = await cacheDir();
  if (!dir) return [];
  const out = [];
  for await (const [key, handle] of dir.entries()) {
    if (handle.kind !== 'file' || key.endsWith('.part')) continue;
    const url = decodeURIComponent(key);
    out.push({url, name: baseName(url), size: (await handle.getFile()).size});
  }
  return out;
}

export async function removeCachedModel(url) {
  const dir = await cacheDir();
  if (dir) await dir.removeEntry(cacheKey(url)).catch(() => {});
}

function samplingOf(o) {
  const seed = o.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
  return [o.temperature ?? 0.8, o.topK ?? 40, o.topP ?? 0.95, o.minP ?? 0.05, o.repeatPenalty ?? 1.0,
          o.repeatLastN ?? 64, seed >>> 0];
}

export class Engine {
  #adapter;
  #options;
  #module = null;
  #device = null;
  #model = null;
  #busy = false;
  #stop = false;
  #stats = null;
  #memory = 0;  // the adapter's memory in bytes, 0 = unknown

  constructor(adapter, options = {}) {
    this.#adapter = adapter;
    this.#options = options;
  }

  // The model loaded (ModelInfo), or null.
  get model() {
    return this.#model;
  }
  // The adapter the model runs on: vendor, architecture, limits and features, once a model is loaded.
  get adapter() {
    if (!this.#module) return null;
    const a = JSON.parse(this.#module.UTF8ToString(this.#module._wgllm_adapter()));
    a.memoryBytes = this.#memory || null;
    return a;
  }
  // Figures of the last generation: {promptTokens, tokens, promptSeconds, seconds, tokensPerSecond}.
  get stats() {
    return this.#stats;
  }
  // The engine's wasm memory in bytes (it only grows): the header, vocabulary and bookkeeping, not weights.
  get wasmMemoryBytes() {
    return this.#module ? this.#module.HEAPU8.length : 0;
  }

  async load(source, options = {}) {
    this.#claim();
    const started = performance.now();
    const progress = options.onProgress || (() => {});
    this.#stop = false;
    let reader = null;
    try {
      await this.#release();
      reader = await this.#open(source, options, progress);
      const info = await this.#upload(reader, options, progress);
      info.cached = reader.cached;
      info.loadSeconds = (performance.now() - started) / 1000;
      this.#model = info;
      return info;
    } catch (e) {
      await this.#release();
      if (reader && reader.cancel) reader.cancel();
      if (reader && reader.cachedUrl && e.code === 'bad-file') await removeCachedModel(reader.cachedUrl);
      throw e;
    } finally {
      this.#busy = false;
    }
  }

  async unload() {
    this.#claim();
    try {
      await this.#release();
    } finally {
      this.#busy = false;
    }
  }

  // Stops a generation after the token in flight, or a load before its next piece.
  abort() {
    this.#stop = true;
  }

  tokenize(text, {addBos = false, special = false} = {}) {
    const m = this.#loaded();
    const n = this.#call(() => withString(m, text, (p) => m._wgllm_tokenize(p, addBos ? 1 : 0, special ? 1 : 0)));
    return Array.from(m.HEAP32.subarray(m._wgllm_ids() >> 2, (m._wgllm_ids() >> 2) + n));
  }

  // The prompt text and ids the model's chat template makes of `messages` ([{role, content}]).
  applyChatTemplate(messages, {addGenerationPrompt = true} = {}) {
    const m = this.#loaded();
    const json = JSON.stringify(messages.map((x) => ({role: String(x.role), content: String(x.content)})));
    const n = this.#call(() => withString(m, json, (p) => m._wgllm_chat(p, addGenerationPrompt ? 1 : 0)));
    const ids = Array.from(m.HEAP32.subarray(m._wgllm_ids() >> 2, (m._wgllm_ids() >> 2) + n));
    return {text: m.UTF8ToString(m._wgllm_text_out()), ids};
  }

  // Streams {id, text} per generated token. `input`: a prompt (BOS added as the vocabulary says) or token ids.
  async *generate(input, options = {}) {
    const ids = typeof input === 'string' ? this.tokenize(input, {addBos: true}) : Array.from(input);
    yield* this.#run(ids, typeof input === 'string' && input === '', options);
  }

  // Streams the assistant's reply to `messages` ([{role, content}]) through the model's chat template.
  async *chat(messages, options = {}) {
    yield* this.#run(this.applyChatTemplate(messages).ids, true, options);
  }

  // generate() to the end: {text, ids, stats}; options.onToken(text, id) sees each piece as it comes.
  async complete(input, options = {}) {
    return this.#collect(this.generate(input, options), options);
  }
  async chatComplete(messages, options = {}) {
    return this.#collect(this.chat(messages, options), options);
  }

  // Every position's logits for `ids` (one Float32Array of the vocabulary's size each), no sampling.
  async logits(ids) {
    const m = this.#loaded();
    this.#claim();
    try {
      const out = [];
      for (let i = 0; i < ids.length; ++i) {
        const t = this.#call(() => m._wgllm_evaluate(ids[i], i === 0 ? 1 : 0));
        await m.wgTicket(t);
        const n = this.#call(() => m._wgllm_logits(t));
        out.push(m.HEAPF32.slice(m._wgllm_floats() >> 2, (m._wgllm_floats() >> 2) + n));
      }
      return out;
    } finally {
      this.#busy = false;
    }
  }

  async #collect(stream, options) {
    let text = '';
    const ids = [];
    for await (const t of stream) {
      text += t.text;
      if (t.id >= 0) ids.push(t.id);
      if (options.onToken) options.onToken(t.text, t.id);
    }
    return {text, ids, stats: this.#stats};
  }

  async *#run(ids, stripLeadingSpace, o) {
    const m = this.#loaded();
    if (!ids.length) throw new WgllmError('bad-input', 'the prompt has no tokens');
    this.#claim();
    this.#stop = false;
    const signal = o.signal;
    const maxTokens = o.maxTokens ?? Infinity;
    const start = performance.now();
    let firstAt = start;
    let n = 0;
    try {
      const p = m._malloc(ids.length * 4);
      m.HEAP32.set(ids, p >> 2);
      let t;
      try {
        t = this.#call(() => m._wgllm_begin(p, ids.length, ...samplingOf(o), stripLeadingSpace ? 1 : 0));
      } finally {
        m._free(p);
      }
      while (n < maxTokens) {
        await m.wgTicket(t);
        const id = this.#call(() => m._wgllm_token(t));
        if (n === 0) firstAt = performance.now();
        if (m._wgllm_is_eog(id)) break;
        ++n;
        const text = m.UTF8ToString(m._wgllm_piece_text(id, 0));
        this.#stats = stats(ids.length, n, start, firstAt);
        yield {id, text};
        if (this.#stop || (signal && signal.aborted) || n >= maxTokens) break;
        t = this.#call(() => m._wgllm_step());
        if (t === -2) break;  // the context is full
      }
      const tail = m.UTF8ToString(m._wgllm_piece_text(-1, 1));
      if (tail) yield {id: -1, text: tail};
      this.#stats = stats(ids.length, n, start, firstAt);
    } finally {
      this.#busy = false;
    }
  }

  #claim() {
    if (this.#busy) throw new WgllmError('busy', 'the engine is busy with another load or generation');
    this.#busy = true;
  }

  #loaded() {
    if (!this.#model) throw new WgllmError('no-model', 'no model is loaded');
    return this.#module;
  }

  // Runs an engine call; -1 becomes a WgllmError with the engine's message, of code `otherwise` unless the
  // message says the GPU failed or the model does not fit.
  #call(f, otherwise = 'bad-input') {
    const r = f();
    if (r === -1) throw this.#error(otherwise);
    return r;
  }

  #error(otherwise) {
    const m = this.#module;
    const message = m.UTF8ToString(m._wgllm_error());
    const code = /maxBufferSize|GPU memory|maxStorageBufferBindingSize|more than this GPU binds/.test(message) ? 'too-large'
        : /^GPU device lost|WebGPU error|read-back/.test(message) ? 'gpu' : otherwise;
    return new WgllmError(code, message);
  }

  async #release() {
    this.#model = null;
    if (this.#module) this.#module._wgllm_unload();
    if (this.#device) this.#device.destroy();
    this.#module = null;
    this.#device = null;
  }

  // A fresh device (an adapter gives one device) and engine instance for each model.
  async #start() {
    const adapter = this.#adapter || await requestAdapter();
    this.#adapter = null;
    const requiredFeatures = FEATURES.filter((f) => adapter.features.has(f));
    const requiredLimits = {};
    for (const k of LIMITS) if (adapter.limits[k] !== undefined) requiredLimits[k] = adapter.limits[k];
    const device = await adapter.requestDevice({requiredFeatures, requiredLimits});
    const i = adapter.info || {};
    const info = {vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description,
                  subgroupMinSize: i.subgroupMinSize, subgroupMaxSize: i.subgroupMaxSize};
    this.#memory = adapterMemory(i);
    const moduleOptions = {gpu: {adapter, device, info}};
    if (this.#options.wasmUrl) moduleOptions.locateFile = () => String(this.#options.wasmUrl);
    const m = await createWgllmModule(moduleOptions);
    this.#device = device;
    this.#module = m;
    if (m._wgllm_init() < 0) throw this.#error('gpu');
  }

  async #open(source, o, progress) {
    if (source instanceof Blob) {
      const r = new BlobReader(source, o.name || source.name || 'model.gguf');
      r.cached = false;
      return r;
    }
    if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
      const bytes = source instanceof ArrayBuffer ? new Uint8Array(source)
          : new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
      const r = new BlobReader(new Blob([bytes]), o.name || 'model.gguf');
      r.cached = false;
      return r;
    }
    const url = String(source);
    const name = o.name || baseName(url);
    const dir = o.cache === false ? null : await cacheDir();
    if (dir) {
      const key = cacheKey(url);
      let file = null;
      let cached = true;
      try {
        file = await (await dir.getFileHandle(key)).getFile();
      } catch {
        cached = false;
        file = await download(dir, url, key, o.signal, () => this.#stop || (o.signal && o.signal.aborted), progress);
      }
      const r = new BlobReader(file, name);
      r.cached = cached;
      r.cachedUrl = url;  // a file that does not load is dropped from the cache
      return r;
    }
    const response = await fetchOk(url, o.signal);
    const size = Number(response.headers.get('content-length'));
    if (!size) throw new WgllmError('network', `${url}: the server did not send the file's size (Content-Length)`);
    const r = new StreamReader(response, name, size);
    r.cached = false;
    return r;
  }

  async #upload(reader, o, progress) {
    await this.#start();
    const m = this.#module;
    const device = this.#device;
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    let want = Math.min(reader.size, 4 * MiB);
    for (;;) {
      const head = await reader.head(want);
      const p = m._malloc(head.length);
      m.HEAPU8.set(head, p);
      const needed = withString(m, reader.name, (name) => m._wgllm_open(name, p, head.length, reader.size,
                                                                        o.contextSize ?? 2048, this.#memory));
      m._free(p);
      if (needed === 0) break;
      if (needed < 0) throw this.#error('bad-file');
      want = Math.min(reader.size, Math.max(needed, 2 * want));
    }
    if (reader.dropHead) reader.dropHead();
    const planPtr = m._wgllm_plan();
    if (!planPtr) throw this.#error('bad-file');
    const plan = JSON.parse(m.UTF8ToString(planPtr));
    // The plan fit the adapter's limits (and its memory, where the browser tells it), but a GPU can still
    // refuse the buffers: find out before the weights stream in, not after.
    const refused = await device.popErrorScope();
    if (refused) throw this.#tooLarge(reader.name, plan, refused);
    device.pushErrorScope('out-of-memory');
    const count = this.#call(() => m._wgllm_piece_count(), 'bad-file');
    const out = m._malloc(32);
    const pieces = [];
    for (let i = 0; i < count; ++i) {
      this.#call(() => m._wgllm_piece(i, out), 'bad-file');
      const f = m.HEAPF64.subarray(out >> 3, (out >> 3) + 4);
      pieces.push({offset: f[0], size: f[1], dst: f[2], dstOffset: f[3]});
    }
    m._free(out);
    const total = pieces.reduce((s, x) => s + x.size, 0);
    let loaded = 0;
    let synced = 0;
    for (let i = 0; i < count; ++i) {
      if (this.#stop || (o.signal && o.signal.aborted)) throw new WgllmError('aborted', 'the load was aborted');
      const piece = pieces[i];
      let bytes = await reader.read(piece.offset, piece.size);
      if (bytes.length % 4) {  // WebGPU writes whole words; the layout's padding is zero
        const padded = new Uint8Array(bytes.length + 4 - bytes.length % 4);
        padded.set(bytes);
        bytes = padded;
      }
      device.queue.writeBuffer(m.wgBuffer(piece.dst), piece.dstOffset, bytes);
      this.#call(() => m._wgllm_piece_done(i), 'gpu');
      loaded += piece.size;
      progress({phase: 'load', loaded, total});
      if (loaded - synced > 64 * MiB) {  // bounds the data queued in the browser's GPU process
        synced = loaded;
        await device.queue.onSubmittedWorkDone();
      }
    }
    const infoPtr = m._wgllm_ready();
    if (!infoPtr) throw this.#error('bad-file');
    const info = JSON.parse(m.UTF8ToString(infoPtr));
    info.memoryPlan = plan;
    await device.queue.onSubmittedWorkDone();
    const oom = await device.popErrorScope();
    const invalid = await device.popErrorScope();
    if (oom) throw this.#tooLarge(reader.name, plan, oom);
    if (invalid) throw new WgllmError('gpu', `WebGPU error while loading ${reader.name}: ${invalid.message}`);
    return info;
  }

  // The model's memory plan against what the adapter offers, for a GPU that refused an allocation.
  #tooLarge(name, plan, error) {
    const a = this.adapter;
    return new WgllmError('too-large', `${name}: the model needs ${bytesText(plan.total)} of GPU memory ` +
        `(weights ${bytesText(plan.weights)}, KV cache ${bytesText(plan.kvCache)} for a context of ` +
        `${plan.context} tokens, activations ${bytesText(plan.activations)}; its largest buffer ` +
        `${bytesText(plan.largestBuffer)}) but the adapter could not allocate it; it offers buffers of up to ` +
        `${bytesText(a.maxBufferSize)} (maxBufferSize), bindings of up to ` +
        `${bytesText(a.maxStorageBufferBindingSize)} (maxStorageBufferBindingSize) and ` +
        (a.memoryBytes ? `${bytesText(a.memoryBytes)} of memory` : 'does not tell its memory') +
        `: use a smaller model (or a smaller quantization) or a shorter context. WebGPU: ${gpuMessage(error)}`);
  }
}

function stats(promptTokens, tokens, start, firstAt) {
  const now = performance.now();
  const seconds = (now - firstAt) / 1000;
  return {promptTokens, tokens, promptSeconds: (firstAt - start) / 1000, seconds,
          tokensPerSecond: tokens > 1 && seconds > 0 ? (tokens - 1) / seconds : 0};
}

// A WebGPU error's message without the implementation's source locations.
function gpuMessage(error) {
  return error.message.split('\n').filter((line) => !/^\s*at /.test(line)).map((line) => line.trim()).join(' ');
}

function withString(m, s, f) {
  const n = m.lengthBytesUTF8(s) + 1;
  const p = m._malloc(n);
  m.stringToUTF8(s, p, n);
  try {
    return f(p);
  } finally {
    m._free(p);
  }
}
