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

fn quantize_chunk(v: array<vec4<f32>, 8>) -> ActChunk {
  var amax = 0.0;
  for (var j = 0u; j < 8u; j++) {
    let a = abs(v[j]);
    amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
  }
  let d = amax / 127.0;
  let id = select(0.0, 1.0 / d, d > 0.0);
  var words: array<u32, 8>;
  var sums = vec2<i32>(0);
  for (var j = 0u; j < 8u; j++) {
    let q = clamp(vec4<i32>(round(v[j] * id)), vec4<i32>(-127), vec4<i32>(127));
    words[j] = pack4xI8(q);
    sums[j / 4u] += q.x + q.y + q.z + q.w;
  }
  return ActChunk(vec4<u32>(words[0], words[1], words[2], words[3]),
                  vec4<u32>(words[4], words[5], words[6], words[7]),
                  vec4<f32>(d, d * f32(sums.x), d * f32(sums.y), d * f32(sums.x + sums.y)));
}
