// `make test-long`: a GGUF file larger than wasm32's 4 GiB address space loads in the browser. The native
// wgllm writes a synthetic model (bench --synthetic SHAPE:TYPE --write-gguf) into a temporary folder;
// headless Chromium (SwiftShader's WebGPU, as tests/web/run.mjs) loads it as a File picked in the page, the
// weights streaming from the file into GPU buffers; the first position's logits must equal the native
// build's on the same file (relative error 1e-3, as run.mjs), which reads the file through its own 64-bit
// offsets: all of them, and on their own the logits whose LM-head rows lie past 4 GiB (the LM head is the
// file's last tensor). The wasm memory, which only grows, must stay far below the file. Skips (exit 0,
// saying why) where the disk or the memory is too small.
//
//   node tests/web/large_file.mjs --web BUILD-WEB-DIR --wgllm NATIVE-WGLLM [--shape llama-3-8b:q4_0]
//        [--tmp DIR] [--json FILE]
import {spawnSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

import {chromium} from '../node/node_modules/playwright-core/index.mjs';
import {serve} from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((a, x, i, all) => (x.startsWith('--') ? [...a, [x.slice(2), all[i + 1]]] : a), []));
const webDir = path.resolve(args.web || path.join(here, '../../build-web'));
const wgllm = args.wgllm && path.resolve(args.wgllm);
const shape = args.shape || 'llama-3-8b:q4_0';
const CHROMIUM = '/usr/lib/chromium/chromium';
const FLAGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
               '--no-first-run', '--enable-unsafe-webgpu'];
const GiB = 2 ** 30;
// What the default shape writes: 8.03e9 weights at 4.5 bits, 4.21 GiB; other shapes are checked after writing.
const EXPECTED_BYTES = 4.25 * GiB;
const ID = 1000;  // the token whose logits are compared (an ordinary token of the synthetic vocabulary)
const BLOCK = {q4_0: [32, 18], q8_0: [32, 34], f16: [1, 2], f32: [1, 4]};  // elements, bytes

if (!fs.existsSync(path.join(webDir, 'pkg', 'wgllm.wasm'))) {
  console.error(`no browser build in ${webDir}: run \`make web\` first`);
  process.exit(1);
}
if (!wgllm || !fs.existsSync(wgllm)) {
  console.error('--wgllm: the native wgllm binary is needed to write the model and for the reference logits');
  process.exit(1);
}

function skip(why) {
  console.log(`[SKIPPED] largeFile: ${why}`);
  process.exit(0);
}

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

function relativeError(a, b) {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; ++i) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

// One after the other: the native writer holding the model while it writes, the native build's copy of the
// weights (its adapter is a CPU here) beside the file's pages, Chromium's GPU process holding them again
// (9.1 GB of RSS at most for the default shape, most of it file pages the kernel can give back).
const parent = path.resolve(args.tmp || os.tmpdir());
const disk = fs.statfsSync(parent);
const diskFree = disk.bavail * disk.bsize;
if (diskFree < EXPECTED_BYTES + 2 * GiB)
  skip(`${(diskFree / GiB).toFixed(1)} GiB free in ${parent}, the ${shape} file needs ${(EXPECTED_BYTES / GiB + 2).toFixed(1)} ` +
       'GiB (give another folder with --tmp)');
const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
const available = Number(/MemAvailable:\s+(\d+) kB/.exec(meminfo)[1]) * 1024;
if (available < 2 * EXPECTED_BYTES + GiB)
  skip(`${(available / GiB).toFixed(1)} GiB of memory available, the ${shape} model needs ` +
       `${(2 * EXPECTED_BYTES / GiB + 1).toFixed(1)} GiB (its weights and the file's pages, natively and in the browser)`);

const tmp = fs.mkdtempSync(path.join(parent, 'wgllm-large-'));
const cleanup = () => fs.rmSync(tmp, {recursive: true, force: true});
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

const file = path.join(tmp, 'large.gguf');
let started = Date.now();
const write = spawnSync(wgllm, ['bench', '--synthetic', shape, '--write-gguf', file, '-p', '0', '-n', '0', '-r', '1'],
                        {encoding: 'utf8'});
expect(write.status === 0, `wgllm bench --write-gguf failed: ${write.stderr}`);
const fileBytes = fs.statSync(file).size;
const writeSeconds = (Date.now() - started) / 1000;
console.log(`wrote ${shape}: ${fileBytes} bytes (${(fileBytes / GiB).toFixed(2)} GiB) in ${writeSeconds.toFixed(0)} s`);
expect(fileBytes > 4 * GiB, `${shape} gives ${fileBytes} bytes, not more than 4 GiB: choose a larger shape`);

// The LM head's rows whose bytes lie past 4 GiB: it is the last tensor, ending where the file ends.
const tensors = spawnSync(wgllm, ['info', '--all-tensors', file], {encoding: 'utf8'}).stdout.trim().split('\n');
const head = /^\s*output\.weight\s+(\w+)\s+\[(\d+) x (\d+)\]/.exec(tensors[tensors.length - 1]);
expect(head && BLOCK[head[1]], `the file's last tensor is not an LM head of a known type: ${tensors[tensors.length - 1]}`);
const rowBytes = (Number(head[2]) / BLOCK[head[1]][0]) * BLOCK[head[1]][1];
const pastRows = Math.floor((fileBytes - 4 * GiB) / rowBytes);
expect(pastRows > 0 && pastRows < Number(head[3]), `${pastRows} rows of the LM head past 4 GiB`);

started = Date.now();
const out = path.join(tmp, 'native.f32');
const native = spawnSync(wgllm, ['logits', '-m', file, '--ids', String(ID), '-o', out], {encoding: 'utf8'});
expect(native.status === 0, `wgllm logits failed: ${native.stderr}`);
const reference = new Float32Array(fs.readFileSync(out).buffer.slice(0));
expect(reference.some((x) => x !== reference[0]), 'the native logits are all equal: nothing to compare');
const nativeSeconds = (Date.now() - started) / 1000;
console.log(`native logits in ${nativeSeconds.toFixed(0)} s`);

const srv = await serve({'/pkg/': path.join(webDir, 'pkg'), '/test/': path.join(here, 'pages')});
const browser = await chromium.launch({executablePath: CHROMIUM, headless: true, args: FLAGS});
let result;
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.log('  [page error]', e.message));
  page.on('console', (m) => console.log('  [page]', m.text()));
  await page.goto(srv.url + '/test/harness.html');
  await page.waitForFunction(() => window.harnessReady);
  // The page's file picker gives the File (Playwright hands Chromium the path; nothing is copied).
  await page.evaluate(() => {
    const input = document.createElement('input');
    input.type = 'file';
    input.id = 'file';
    document.body.append(input);
  });
  await page.setInputFiles('#file', file);
  result = await page.evaluate(async (id) => {
    const e = await wgllm.createEngine();
    const t0 = performance.now();
    let reported = 0;
    const info = await e.load(document.getElementById('file').files[0], {
      contextSize: 64,
      onProgress: ({loaded, total}) => {
        if (loaded - reported >= 512 * 2 ** 20 || loaded === total) {
          reported = loaded;
          console.log(`loaded ${(loaded / 2 ** 30).toFixed(2)} of ${(total / 2 ** 30).toFixed(2)} GiB ` +
                      `after ${((performance.now() - t0) / 1000).toFixed(0)} s`);
        }
      },
    });
    const afterLoad = e.wasmMemoryBytes;
    const t1 = performance.now();
    const [row] = await e.logits([id]);
    return {info, afterLoad, memory: e.wasmMemoryBytes, logitsSeconds: (performance.now() - t1) / 1000,
            logits: Array.from(row)};
  }, ID);
} finally {
  await browser.close();
  await srv.close();
}

const error = relativeError(result.logits, reference);
const vocab = reference.length;
const pastError = relativeError(result.logits.slice(vocab - pastRows), reference.subarray(vocab - pastRows));
expect(result.info.fileBytes === fileBytes, `the page saw ${result.info.fileBytes} bytes of ${fileBytes}`);
expect(result.logits.length === reference.length, `${result.logits.length} logits, the native build ${reference.length}`);
expect(error <= 1e-3, `the first logits differ from the native build's: relative error ${error}`);
expect(pastError <= 1e-3, `the logits of the ${pastRows} LM-head rows past 4 GiB differ: relative error ${pastError}`);
expect(result.memory * 8 < fileBytes, `wasm memory ${result.memory} bytes is not far below the file's ${fileBytes}`);
const summary = {
  shape, fileBytes, writeSeconds, nativeSeconds, loadSeconds: result.info.loadSeconds,
  logitsSeconds: result.logitsSeconds, wasmBytesAfterLoad: result.afterLoad, wasmBytesPeak: result.memory,
  gpuBytes: result.info.gpuBytes, relativeError: error, rowsPast4GiB: pastRows, relativeErrorPast4GiB: pastError,
};
if (args.json) fs.writeFileSync(args.json, JSON.stringify(summary, null, 2) + '\n');
console.log(`[  OK  ] largeFile: ${shape}, ${(fileBytes / GiB).toFixed(2)} GiB from a File: loaded in ` +
            `${result.info.loadSeconds.toFixed(0)} s, first logits in ${result.logitsSeconds.toFixed(0)} s ` +
            `(relative error ${error.toExponential(2)} against the native build, ${pastError.toExponential(2)} over the ` +
            `${pastRows} rows past 4 GiB), wasm memory ` +
            `${(result.memory / 2 ** 20).toFixed(1)} MiB at most`);
