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

// A chunk split over 8 consecutive invocations of a workgroup of ACT_WG (the includer's constant; invocation
// tid holds elements 4k..4k+3 of its chunk, k = tid % 8, in v): this invocation's word of codes and the
// chunk's scales, both as quantize_chunk makes them (the maximum is exact in any order, the sums are
// integers). Every invocation of the workgroup calls it (it holds barriers); calls may follow each other
// in a loop.
var<workgroup> act_amax: array<f32, ACT_WG>;
var<workgroup> act_sum: array<i32, ACT_WG>;

struct ActPart {
  word: u32,     // codes of elements 4k..4k+3
  s: vec4<f32>,  // the chunk's scales
}

fn quantize_part(v: vec4<f32>, tid: u32) -> ActPart {
  let first = tid - tid % 8u;
  let a = abs(v);
  act_amax[tid] = max(max(a.x, a.y), max(a.z, a.w));
  workgroupBarrier();
  var amax = 0.0;
  for (var i = 0u; i < 8u; i++) {
    amax = max(amax, act_amax[first + i]);
  }
  let d = amax / 127.0;
  let q = act_codes(v, act_inverse_scale(d));
  act_sum[tid] = q.x + q.y + q.z + q.w;
  workgroupBarrier();
  let lo = act_sum[first] + act_sum[first + 1u] + act_sum[first + 2u] + act_sum[first + 3u];
  let hi = act_sum[first + 4u] + act_sum[first + 5u] + act_sum[first + 6u] + act_sum[first + 7u];
  return ActPart(pack4xI8(q), act_scales(d, lo, hi));
}
