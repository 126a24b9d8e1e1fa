// How a weight matrix W [ROWS x COLS] repacked by quant/gpu_layout.hpp is decoded on the GPU: the one
// definition shared by every kernel that reads weights (matvec.wgsl, matmul.wgsl; pulled in with
// `#use weight_decode`, specialised by the same defines). The including kernel declares the bindings
//   WTYPE_F32, HALVES (WTYPE_F16, WTYPE_BF16):  w: array<u32>
//   QUANT (WTYPE_Q8_0, _Q4_0, _Q4_1, _Q5_0, _Q5_1, _Q2_K, _Q3_K, _Q4_K, _Q5_K, _Q6_K):
//                                              w: array<vec4<u32>> (code planes), scales: array<vec4<u32>>
// and the constants ROWS and COLS of the matrix (or row chunk) bound.
// Quantized rows are cut into 32-element chunks (a legacy block, or an eighth of a K-quant super-block).
// Every type has the form  x = a * (code - OFFSET) - m  with (a, m) per 16-element half of a chunk, and
// defines chunk_codes(g) (its 32 codes, four per word: Codes) and chunk_scales(g) ((a, m) of both halves,
// each computed in the CPU reference's order, so that weight_at reproduces its dequantization bit for bit).
// MINS: whether m can be non-zero; SPLIT: whether the halves' (a, m) can differ (scales per 16 elements).
// OFFSET <= 128 and codes < 2 * OFFSET (or < 64 when OFFSET is 0), so code - OFFSET fits in an int8.

#if WTYPE_F16
fn halves(v: u32) -> vec2<f32> {
  return unpack2x16float(v);
}
#endif
#if WTYPE_BF16
// A bf16 is the top half of an f32.
fn halves(v: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xFFFF0000u));
}
#endif

#if QUANT
const CHUNKS = COLS / 32u;  // per row
const NC = ROWS * CHUNKS;   // in this buffer: the length of each code plane
const NSB = NC / 8u;        // K-quant super-blocks in this buffer: the length of each scale plane

// Word i of the code planes; word, byte and f16 number i of the scale planes.
fn word(i: u32) -> u32 {
  return w[i / 4u][i % 4u];
}
fn scale_word(i: u32) -> u32 {
  return scales[i / 4u][i % 4u];
}
fn scale_byte(i: u32) -> u32 {
  return (scale_word(i / 4u) >> (8u * (i % 4u))) & 0xFFu;
}
fn scale_half(i: u32) -> f32 {
  let pair = unpack2x16float(scale_word(i / 2u));
  return select(pair.x, pair.y, (i & 1u) == 1u);
}

// A chunk's 32 unsigned codes, one per byte: lo[j] holds elements 4j..4j+3, hi[j] elements 16+4j..16+4j+3.
struct Codes {
  lo: vec4<u32>,
  hi: vec4<u32>,
}

const J = vec4<u32>(0u, 1u, 2u, 3u);

// The code planes, each turned into byte-wide codes by a shift and a mask per vector.
fn nibbles(q: vec4<u32>) -> Codes {
  let m = vec4<u32>(0x0F0F0F0Fu);
  return Codes(q & m, (q >> vec4<u32>(4u)) & m);
}
// Chunk g's two pair words; the pair plane starts at vec4 number `plane`.
fn pairs(g: u32, plane: u32) -> Codes {
  let v = w[plane + g / 2u];
  let p = select(v.xy, v.zw, (g & 1u) == 1u);
  let m = vec4<u32>(0x03030303u);
  return Codes((vec4<u32>(p.x) >> (2u * J)) & m, (vec4<u32>(p.y) >> (2u * J)) & m);
}
// Chunk g's bit word; the bit plane starts at word `plane`.
fn bits(g: u32, plane: u32) -> Codes {
  let h = vec4<u32>(word(plane + g));
  let m = vec4<u32>(0x01010101u);
  return Codes((h >> J) & m, (h >> (J + 4u)) & m);
}
// `high` placed above the `shift` bits of `low`.
fn join(low: Codes, high: Codes, shift: u32) -> Codes {
  let s = vec4<u32>(shift);
  return Codes(low.lo | (high.lo << s), low.hi | (high.hi << s));
}

// Scales shared by several types, as vec4(a_lo, a_hi, m_lo, m_hi) (the header's form).
// Legacy symmetric (Q8_0, Q4_0, Q5_0): x = (q - OFFSET) * d, f16 d per chunk.
fn symmetric_scales(g: u32) -> vec4<f32> {
  let d = scale_half(g);
  return vec4<f32>(d, d, 0.0, 0.0);
}
// Legacy affine (Q4_1, Q5_1): x = q * d + m, (d, m) f16 per chunk.
fn affine_scales(g: u32) -> vec4<f32> {
  let dm = unpack2x16float(scale_word(g));
  return vec4<f32>(dm.x, dm.x, -dm.y, -dm.y);
}
// Q4_K, Q5_K: x = (d * sc) * q - dmin * m for chunk (= sub-block) j of a super-block, whose 6-bit sc and m
// are ggml's get_scale_min_k4 of the 12 packed bytes in scales .yzw (.x holds d, dmin).
fn k4_scales(g: u32) -> vec4<f32> {
  let s = scales[g / 8u];
  let j = g % 8u;
  let k = 8u * (j % 4u);
  let b0 = (s.y >> k) & 0xFFu;  // byte j % 4
  let b4 = (s.z >> k) & 0xFFu;  // byte j % 4 + 4
  let b8 = (s.w >> k) & 0xFFu;  // byte j % 4 + 8
  let upper = j >= 4u;
  let sc = select(b0 & 63u, (b8 & 0xFu) | ((b0 >> 6u) << 4u), upper);
  let m = select(b4 & 63u, (b8 >> 4u) | ((b4 >> 6u) << 4u), upper);
  let dd = unpack2x16float(s.x);
  let a = dd.x * f32(sc);
  let dm = dd.y * f32(m);
  return vec4<f32>(a, a, dm, dm);
}

#if WTYPE_Q8_0
const OFFSET = 128;  // bytes: int8 q stored as q + 128
const MINS = false;
const SPLIT = false;
fn chunk_codes(g: u32) -> Codes {
  return Codes(w[2u * g], w[2u * g + 1u]);
}
fn chunk_scales(g: u32) -> vec4<f32> {
  return symmetric_scales(g);
}
#endif
#if WTYPE_Q4_0
const OFFSET = 8;
const MINS = false;
const SPLIT = false;
fn chunk_codes(g: u32) -> Codes {
  return nibbles(w[g]);
}
fn chunk_scales(g: u32) -> vec4<f32> {
  return symmetric_scales(g);
}
#endif
#if WTYPE_Q5_0
const OFFSET = 16;
const MINS = false;
const SPLIT = false;
fn chunk_codes(g: u32) -> Codes {
  return join(nibbles(w[g]), bits(g, 4u * NC), 4u);
}
fn chunk_scales(g: u32) -> vec4<f32> {
  return symmetric_scales(g);
}
#endif
#if WTYPE_Q4_1
const OFFSET = 0;
const MINS = true;
const SPLIT = false;
fn chunk_codes(g: u32) -> Codes {
  return nibbles(w[g]);
}
fn chunk_scales(g: u32) -> vec4<f32> {
  return affine_scales(g);
}
#endif
#if WTYPE_Q5_1
const OFFSET = 0;
const MINS = true;
const SPLIT = false;
fn chunk_codes(g: u32) -> Codes {
  return join(nibbles(w[g]), bits(g, 4u * NC), 4u);
}
fn chunk_scales(g: u32) -> vec4<f32> {
  return affine_scales(g);
}
#endif
#if WTYPE_Q2_K
// scales: 16 bytes per super-block (per 16 elements: scale in the low nibble, min in the high one), then
// (d, dmin) per super-block. x = (d * (sc & 15)) * q - dmin * (sc >> 4).
const OFFSET = 0;
const MINS = true;
const SPLIT = true;
fn chunk_codes(g: u32) -> Codes {
  return pairs(g, 0u);
}
fn chunk_scales(g: u32) -> vec4<f32> {
  let first = 16u * (g / 8u) + 2u * (g % 8u);
  let lo = scale_byte(first);
  let hi = scale_byte(first + 1u);
  let dm = unpack2x16float(scale_word(4u * NSB + g / 8u));
  return vec4<f32>(dm.x * f32(lo & 15u), dm.x * f32(hi & 15u), dm.y * f32(lo >> 4u), dm.y * f32(hi >> 4u));
}
#endif
#if WTYPE_Q3_K
// scales: 12 bytes of packed 6-bit scales per super-block, then f16 d per super-block.
// x = (d * (sc - 32)) * (code - 4), where sc of 16-element sub-block j has its low 4 bits in nibble j / 8 of
// byte j % 8 and its top 2 bits at bit 2 (j / 4) of byte 8 + j % 4.
const OFFSET = 4;
const MINS = false;
const SPLIT = true;
fn q3_scale(base: u32, j: u32) -> i32 {
  let low = (scale_byte(base + j % 8u) >> (4u * (j / 8u))) & 0xFu;
  let high = (scale_byte(base + 8u + j % 4u) >> (2u * (j / 4u))) & 3u;
  return i32(low | (high << 4u)) - 32;
}
fn chunk_codes(g: u32) -> Codes {
  return join(pairs(g, 0u), bits(g, 2u * NC), 2u);
}
fn chunk_scales(g: u32) -> vec4<f32> {
  let base = 12u * (g / 8u);
  let d = scale_half(6u * NSB + g / 8u);
  return vec4<f32>(d * f32(q3_scale(base, 2u * (g % 8u))), d * f32(q3_scale(base, 2u * (g % 8u) + 1u)), 0.0, 0.0);
}
#endif
#if WTYPE_Q4_K
const OFFSET = 0;
const MINS = true;
const SPLIT = false;
fn chunk_codes(g: u32) -> Codes {
  return nibbles(w[g]);
}
fn chunk_scales(g: u32) -> vec4<f32> {
  return k4_scales(g);
}
#endif
#if WTYPE_Q5_K
const OFFSET = 0;
const MINS = true;
const SPLIT = false;
fn chunk_codes(g: u32) -> Codes {
  return join(nibbles(w[g]), bits(g, 4u * NC), 4u);
}
fn chunk_scales(g: u32) -> vec4<f32> {
  return k4_scales(g);
}
#endif
#if WTYPE_Q6_K
// scales: 16 int8 scales per super-block (one per 16 elements), then f16 d per super-block.
// x = (d * sc) * (code - 32).
const OFFSET = 32;
const MINS = false;
const SPLIT = true;
fn chunk_codes(g: u32) -> Codes {
  return join(nibbles(w[g]), pairs(g, NC), 4u);
}
fn chunk_scales(g: u32) -> vec4<f32> {
  let first = 16u * (g / 8u) + 2u * (g % 8u);
  let lo = bitcast<i32>(scale_byte(first) << 24u) >> 24u;
  let hi = bitcast<i32>(scale_byte(first + 1u) << 24u) >> 24u;
  let d = scale_half(8u * NSB + g / 8u);
  return vec4<f32>(d * f32(lo), d * f32(hi), 0.0, 0.0);
}
#endif

// Element e of chunk g.
fn chunk_value(g: u32, e: u32) -> f32 {
  let c = chunk_codes(g);
  let i = e % 16u;
  let v = select(c.lo[i / 4u], c.hi[i / 4u], e >= 16u);
  let code = (v >> (8u * (i % 4u))) & 0xFFu;
  let s = chunk_scales(g);
  let h = e / 16u;
  return s[h] * f32(i32(code) - OFFSET) - s[2u + h];
}

// The INT8 paths (matmul.wgsl, matvec.wgsl): a chunk's codes as int8 (code - OFFSET) times activations
// quantized by act_quant.wgsl. code + 128 - OFFSET stays below 256, so no carry crosses a byte, and
// flipping the top bit subtracts 128: four codes at once.
fn signed_codes(v: vec4<u32>) -> vec4<u32> {
  return (v + vec4<u32>(u32(128 - OFFSET) * 0x01010101u)) ^ vec4<u32>(0x80808080u);
}

// acc + the dot product of 16 int8 pairs, as one chain in which every dot4I8Packed adds to the running sum:
// the form of IDP4A's accumulate operand. (Summing the four products first, then adding, needs separate
// integer adds where the compiler does not reassociate; they would compete with the IDP4As.)
fn dot16(acc: i32, a: vec4<u32>, b: vec4<u32>) -> i32 {
  var s = acc + dot4I8Packed(a.x, b.x);
  s = s + dot4I8Packed(a.y, b.y);
  s = s + dot4I8Packed(a.z, b.z);
  return s + dot4I8Packed(a.w, b.w);
}

// Integer dot products start from SUM_BIAS, the bits of the float 1.5 * 2^23, so that the float a sum ends
// on is 1.5 * 2^23 + (the integer sum) exactly: 2^23..2^24 holds every integer, and a chunk's sum stays
// within +-32 * 128 * 128 = 2^19. Subtracting 1.5 * 2^23 then gives f32(sum) exactly, the same bits, with
// a full-rate float add instead of an int-to-float conversion (a quarter-rate instruction on NVIDIA GPUs;
// the prefill GEMM gained ~1 % on the H100, docs/perf.md).
const SUM_BIAS = 0x4B400000;

fn biased_sum_value(s: i32) -> f32 {
  return bitcast<f32>(s) - 12582912.0;
}

// acc + one chunk's dot product from its integer sums, biased (SUM_BIAS): with SPLIT the halves' (lo:
// elements 0-15, hi: 16-31), else the whole chunk's in lo (hi unused). The weights' scales ws
// (chunk_scales), the activations' xs (act_quant's (d, d sum q_lo, d sum q_hi, d sum q)). The integer
// sums are exact; every float step is an explicit fma or a single rounding, so that no compiler can fuse
// them differently in two kernels or two widths of one (batch invariance).
fn int8_chunk_finish(acc: f32, lo: i32, hi: i32, xs: vec4<f32>, ws: vec4<f32>) -> f32 {
  var r: f32;
  if (SPLIT) {
    let halves = fma(biased_sum_value(lo), ws.x, biased_sum_value(hi) * ws.y);
    r = fma(xs.x, halves, acc);
    if (MINS) {
      r = fma(-ws.w, xs.z, fma(-ws.z, xs.y, r));
    }
  } else {
    r = fma(biased_sum_value(lo), xs.x * ws.x, acc);
    if (MINS) {
      r = fma(-ws.z, xs.w, r);
    }
  }
  return r;
}

// acc + one chunk's dot product: weight codes (wlo, whi: signed_codes) against activation codes (xlo,
// xhi), scaled as int8_chunk_finish says.
fn int8_chunk_dot(acc: f32, xlo: vec4<u32>, xhi: vec4<u32>, xs: vec4<f32>, wlo: vec4<u32>, whi: vec4<u32>,
                  ws: vec4<f32>) -> f32 {
  let lo = dot16(SUM_BIAS, xlo, wlo);
  if (SPLIT) {
    return int8_chunk_finish(acc, lo, dot16(SUM_BIAS, xhi, whi), xs, ws);
  }
  return int8_chunk_finish(acc, dot16(lo, xhi, whi), 0, xs, ws);
}
#endif

// Element (r, c) of W, dequantized exactly as the CPU reference does.
fn weight_at(r: u32, c: u32) -> f32 {
#if WTYPE_F32
  return bitcast<f32>(w[r * COLS + c]);
#endif
#if HALVES
  let i = r * COLS + c;
  let pair = halves(w[i / 2u]);
  return select(pair.x, pair.y, (i & 1u) == 1u);
#endif
#if QUANT
  return chunk_value(r * CHUNKS + c / 32u, c % 32u);
#endif
}
