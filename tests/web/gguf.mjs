// A small GGUF v3 writer for the browser tests' random-weight llama models (F32 norms, Q8_0 and Q4_0
// matrices, no vocabulary): models of any size without a download, laid out as the GGUF spec says.
import fs from 'node:fs';

const TYPE = {f32: 0, q4_0: 2, q8_0: 8};
const VALUE = {u32: 4, f32: 6, string: 8};

// A seeded PRNG (mulberry32): uniform in [0, 1).
export function random(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6D2B79F5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// IEEE binary16 bits of x, rounded to nearest even (normal range and subnormals).
function f16(x) {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  let mant = u & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - exp;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (m & 1))) m++;
    return sign | m;
  }
  let h = sign | (exp << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return h;
}

// Random blocks of a type for `n` elements with weights of standard deviation about `std`.
function tensorBytes(type, n, rand, std) {
  if (type === 'f32') {
    const v = new Float32Array(n);
    for (let i = 0; i < n; ++i) v[i] = 1 + std * (2 * rand() - 1);
    return new Uint8Array(v.buffer);
  }
  const q8 = type === 'q8_0';
  const blockBytes = q8 ? 34 : 18;
  const out = new Uint8Array((n / 32) * blockBytes);
  const view = new DataView(out.buffer);
  for (let b = 0; b < n / 32; ++b) {
    const at = b * blockBytes;
    // Uniform codes: std 73 (q8_0) or 4.6 (q4_0); scales vary by up to 2x between blocks.
    const d = (std / (q8 ? 73 : 4.6)) * (0.7 + 0.6 * rand());
    view.setUint16(at, f16(d), true);
    for (let i = 0; i < (q8 ? 32 : 16); ++i) out[at + 2 + i] = Math.floor(rand() * 256);
  }
  return out;
}

// Writes a llama model: shape {dim, layers, heads, kvHeads, ffn, vocab, context (default 2048)}, types
// {name suffix -> type} (others '*', default q8_0), e.g. {attn_q: 'q4_0'}. Returns the tensors' bytes.
export function writeLlama(path, shape, types, seed) {
  const rand = random(seed);
  const headDim = shape.dim / shape.heads;
  const kv = [
    ['general.architecture', 'string', 'llama'],
    ['general.name', 'string', 'browser test model'],
    ['llama.context_length', 'u32', shape.context || 2048],
    ['llama.embedding_length', 'u32', shape.dim],
    ['llama.block_count', 'u32', shape.layers],
    ['llama.feed_forward_length', 'u32', shape.ffn],
    ['llama.attention.head_count', 'u32', shape.heads],
    ['llama.attention.head_count_kv', 'u32', shape.kvHeads],
    ['llama.rope.dimension_count', 'u32', headDim],
    ['llama.attention.layer_norm_rms_epsilon', 'f32', 1e-5],
    ['llama.vocab_size', 'u32', shape.vocab],
    ['tokenizer.ggml.model', 'string', 'none'],
  ];
  const tensors = [];
  const matrix = (name, cols, rows) => {
    const type = types[name.replace(/^blk\.\d+\./, '').replace(/\.weight$/, '')] || types['*'] || 'q8_0';
    tensors.push({name, type, dims: [cols, rows], bytes: tensorBytes(type, cols * rows, rand, 0.3)});
  };
  const norm = (name, n) => tensors.push({name, type: 'f32', dims: [n], bytes: tensorBytes('f32', n, rand, 0.1)});
  const q = shape.heads * headDim, k = shape.kvHeads * headDim;
  matrix('token_embd.weight', shape.dim, shape.vocab);
  for (let l = 0; l < shape.layers; ++l) {
    const p = `blk.${l}.`;
    norm(p + 'attn_norm.weight', shape.dim);
    matrix(p + 'attn_q.weight', shape.dim, q);
    matrix(p + 'attn_k.weight', shape.dim, k);
    matrix(p + 'attn_v.weight', shape.dim, k);
    matrix(p + 'attn_output.weight', q, shape.dim);
    norm(p + 'ffn_norm.weight', shape.dim);
    matrix(p + 'ffn_gate.weight', shape.dim, shape.ffn);
    matrix(p + 'ffn_up.weight', shape.dim, shape.ffn);
    matrix(p + 'ffn_down.weight', shape.ffn, shape.dim);
  }
  norm('output_norm.weight', shape.dim);
  matrix('output.weight', shape.dim, shape.vocab);
  writeGguf(path, kv, tensors);
  return tensors.reduce((s, t) => s + t.bytes.length, 0);
}

export function writeGguf(path, kv, tensors, alignment = 32) {
  const parts = [];
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s) => { const b = Buffer.from(s, 'utf8'); u64(b.length); parts.push(b); };
  u32(0x46554747);
  u32(3);
  u64(tensors.length);
  u64(kv.length);
  for (const [key, type, value] of kv) {
    str(key);
    u32(VALUE[type]);
    if (type === 'string') str(value);
    else if (type === 'u32') u32(value);
    else { const b = Buffer.alloc(4); b.writeFloatLE(value); parts.push(b); }
  }
  let offset = 0;
  const offsets = [];
  for (const t of tensors) {
    offsets.push(offset);
    offset = Math.ceil((offset + t.bytes.length) / alignment) * alignment;
  }
  tensors.forEach((t, i) => {
    str(t.name);
    u32(t.dims.length);
    for (const d of t.dims) u64(d);
    u32(TYPE[t.type]);
    u64(offsets[i]);
  });
  let size = parts.reduce((s, b) => s + b.length, 0);
  parts.push(Buffer.alloc(Math.ceil(size / alignment) * alignment - size));
  tensors.forEach((t, i) => {
    parts.push(Buffer.from(t.bytes.buffer, t.bytes.byteOffset, t.bytes.length));
    const end = offsets[i] + t.bytes.length;
    if (i + 1 < tensors.length) parts.push(Buffer.alloc(offsets[i + 1] - end));
  });
  fs.writeFileSync(path, Buffer.concat(parts));
}
