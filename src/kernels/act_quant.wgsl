// The int8 form of activations that the INT8 paths of matmul.wgsl and matvec.wgsl multiply (pulled in with
// `#use act_quant`): each 32-element chunk quantized like llama.cpp's q8_1 blocks, d = max|x| / 127,
// q = x * (1 / d) rounded to the nearest integer (ties to even; all 0 when d = 0), with the sums of q that
// weights with mins need. One function, so that a token's activations get the same codes whether
// quantize_act.wgsl (prefill) or a GEMV's staging (decode) quantizes them.
struct ActChunk {
  lo: vec4<u32>,  // q of elements 0..15, 4 int8 per word in element order
  hi: vec4<u32>,  // q of elements 16..31
  s: vec4<f32>,   // (d, d * sum q[0..16), d * sum q[16..32), d * sum q[0..32))
}

// The steps of a chunk's quantization, shared by quantize_chunk (one invocation per chunk) and kernels
// that split a chunk over invocations (silu_mul.wgsl's QUANT_OUT): the same operations, so the same codes.
// The reciprocal of a chunk's scale d = amax / 127 (0 when d is).
fn act_inverse_scale(d: f32) -> f32 {
  return select(0.0, 1.0 / d, d > 0.0);
}

// Four of a chunk's codes.
fn act_codes(v: vec4<f32>, id: f32) -> vec4<i32> {
  return clamp(vec4<i32>(round(v * id)), vec4<i32>(-127), vec4<i32>(127));
}

// A chunk's scales from d and the sums of its two halves' codes.
fn act_scales(d: f32, lo: i32, hi: i32) -> vec4<f32> {
  return vec4<f32>(d, d * f32(lo), d * f32(hi), d * f32(lo + hi));
}

fn quantize_chunk(v: array<vec4<f32>, 8>) -> ActChunk {
  var amax = 0.0;
  for (var j = 0u; j < 8u; j++) {
    let a = abs(v[j]);
    amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
  }
  let d = amax / 127.0;
  let id = act_inverse_scale(d);
  var words: array<u32, 8>;
  var sums = vec2<i32>(0);
  for (var j = 0u; j < 8u; j++) {
    let q = act_codes(v[j], id);
    words[j] = pack4xI8(q);
    sums[j / 4u] += q.x + q.y + q.z + q.w;
  }
  return ActChunk(vec4<u32>(words[0], words[1], words[2], words[3]),
                  vec4<u32>(words[4], words[5], words[6], words[7]), act_scales(d, sums.x, sums.y));
}

// A chunk split over ACT_PARTS = 8 / ACT_VECS consecutive invocations of a workgroup of ACT_WG (the
// includer's constants: ACT_VECS is 1, 2 or 4; invocation tid holds the chunk's vectors k * ACT_VECS ..
// (k + 1) * ACT_VECS, elements 4 of each, k = tid % ACT_PARTS, in v): this invocation's words of codes and
// the chunk's scales, both as quantize_chunk makes them (the maximum is exact in any order, the sums are
// integers). Every invocation of the workgroup calls it (it holds barriers); calls may follow each other
// in a loop.
const_assert ACT_VECS == 1u || ACT_VECS == 2u || ACT_VECS == 4u;
const ACT_PARTS = 8u / ACT_VECS;
var<workgroup> act_amax: array<f32, ACT_WG>;
var<workgroup> act_sum: array<i32, ACT_WG>;

struct ActPart {
  words: array<u32, ACT_VECS>,  // codes of the invocation's vectors, 4 per word
  s: vec4<f32>,                 // the chunk's scales
}

fn quantize_part(v: array<vec4<f32>, ACT_VECS>, tid: u32) -> ActPart {
  let first = tid - tid % ACT_PARTS;
  var m = 0.0;
  for (var j = 0u; j < ACT_VECS; j++) {
    let a = abs(v[j]);
    m = max(m, max(max(a.x, a.y), max(a.z, a.w)));
  }
  act_amax[tid] = m;
  workgroupBarrier();
  var amax = 0.0;
  for (var i = 0u; i < ACT_PARTS; i++) {
    amax = max(amax, act_amax[first + i]);
  }
  let d = amax / 127.0;
  let id = act_inverse_scale(d);
  var part: ActPart;
  var sum = 0;
  for (var j = 0u; j < ACT_VECS; j++) {
    let q = act_codes(v[j], id);
    part.words[j] = pack4xI8(q);
    sum += q.x + q.y + q.z + q.w;
  }
  act_sum[tid] = sum;
  workgroupBarrier();
  // Words 0..3 (the chunk's first half) are the first half of its invocations'.
  var lo = 0;
  var hi = 0;
  for (var i = 0u; i < ACT_PARTS / 2u; i++) {
    lo += act_sum[first + i];
    hi += act_sum[first + ACT_PARTS / 2u + i];
  }
  part.s = act_scales(d, lo, hi);
  return part;
}
