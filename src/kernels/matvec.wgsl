// Everything that reads a weight matrix W [ROWS x COLS] (GGUF's ne = [COLS, ROWS]) as repacked at load:
//   default:  y[Y_OFFSET + r] (+)= sum_c W[r, c] * x[c]      (GEMV; ACCUMULATE adds into y: the residual)
//   EMBED:    y[c] = W[token - Y_OFFSET, c] when this chunk holds row `token` (embedding row gather)
// Weight storage by WTYPE (one template, not one kernel per type):
//   WTYPE_F32  w: f32 bits
//   WTYPE_F16, WTYPE_BF16 (with HALVES)  w: two 16-bit floats per u32 (element i = half i%2 of word i/2)
//   QUANT: WTYPE_Q8_0, _Q4_0, _Q4_1, _Q5_0, _Q5_1, _Q2_K, _Q3_K, _Q4_K, _Q5_K, _Q6_K as quant/gpu_layout.hpp
//     repacks them: `w` holds the 32-element chunks' code bits, `scales` the blocks' other fields.
//   Decoding (chunk_codes, chunk_scales, weight_at) is weight_decode.wgsl's, shared with matmul.wgsl.
// GEMV: TPR threads share a row, RPW rows per workgroup; the lanes of a row take consecutive chunks, so a
// row's 32 lanes read 32 consecutive 16-byte code vectors (plus their smaller high-bit words) at once.
// Partial sums reduce through subgroups when the adapter has them (SUBGROUPS) and through workgroup memory
// otherwise.
// STAGE_X (quantized types): each workgroup first copies the input into workgroup memory, and with NORM
// RMS-normalises it on the way (x / rms(x) * norm_w, EPS inside the root): the RMSNorm that precedes a
// projection costs no dispatch of its own.
#if SUBGROUPS
enable subgroups;
#endif

#if QUANT
@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<vec4<u32>>;
#if EMBED
@group(0) @binding(2) var<storage, read> token: array<u32>;
#else
#if STAGE_X
@group(0) @binding(2) var<storage, read> x_in: array<vec4<f32>>;
var<workgroup> x: array<vec4<f32>, COLS / 4u>;
#if NORM
@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;
#endif
#else
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#endif
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
#else
@group(0) @binding(0) var<storage, read> w: array<u32>;
#if EMBED
@group(0) @binding(1) var<storage, read> token: array<u32>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
#endif

const WG = 256u;
const TPR = 32u;         // threads per row
const RPW = WG / TPR;    // rows per workgroup

#use weight_decode

#if QUANT
#if !EMBED
// Four codes (one per byte) as floats.
fn byte_values(v: u32) -> vec4<f32> {
  return vec4<f32>(unpack4xU8(v));
}

// Chunk g's share of a GEMV row, with the chunk's inputs x[xb .. xb + 8). Types with mins dequantize each
// weight first (a * code - m, rounded as the CPU reference rounds it) rather than subtract m * sum(x): when
// a * code and m nearly cancel, the split sums would lose digits the weights keep.
fn chunk_dot(g: u32, xb: u32) -> f32 {
  let c = chunk_codes(g);
  let s = chunk_scales(g);
  var q = vec2<f32>(0.0);
  if (MINS) {
    for (var j = 0u; j < 4u; j++) {
      q.x += dot(byte_values(c.lo[j]) * s.x - s.z, x[xb + j]);
      q.y += dot(byte_values(c.hi[j]) * s.y - s.w, x[xb + 4u + j]);
    }
    return q.x + q.y;
  }
  let off = f32(OFFSET);
  for (var j = 0u; j < 4u; j++) {
    q.x += dot(byte_values(c.lo[j]) - off, x[xb + j]);
    q.y += dot(byte_values(c.hi[j]) - off, x[xb + 4u + j]);
  }
  return dot(s.xy, q);
}
#endif
#endif


#if EMBED
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let t = token[0];
  if (c < COLS && t >= Y_OFFSET && t - Y_OFFSET < ROWS) {
    y[c] = weight_at(t - Y_OFFSET, c);
  }
}
#else
fn row_dot(r: u32, lane: u32) -> f32 {
  var acc = 0.0;
#if WTYPE_F32
  for (var c = lane; c < COLS; c += TPR) {
    acc += bitcast<f32>(w[r * COLS + c]) * x[c];
  }
#endif
#if HALVES
  if (COLS % 2u == 0u) {
    // A lane takes both halves of a word: a row's lanes read 128 contiguous bytes at once.
    let row = r * (COLS / 2u);
    for (var i = lane; i < COLS / 2u; i += TPR) {
      let pair = halves(w[row + i]);
      acc += pair.x * x[2u * i] + pair.y * x[2u * i + 1u];
    }
  } else {
    for (var c = lane; c < COLS; c += TPR) {
      acc += weight_at(r, c) * x[c];
    }
  }
#endif
#if QUANT
  for (var c = lane; c < CHUNKS; c += TPR) {
    acc += chunk_dot(r * CHUNKS + c, 8u * c);
  }
#endif
  return acc;
}

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>
#if SUBGROUPS
        , @builtin(subgroup_size) sg_size: u32
#endif
) {
  let lane = tid % TPR;
  let r = (wid.x + wid.y * nwg.x) * RPW + tid / TPR;
#if STAGE_X
#if NORM
  var ss = 0.0;
  for (var i = tid; i < COLS / 4u; i += WG) {
    let v = x_in[i];
    ss += dot(v, v);
  }
  partial[tid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      partial[tid] += partial[tid + s];
    }
    workgroupBarrier();
  }
  let inv_rms = inverseSqrt(partial[0] / f32(COLS) + EPS);
  workgroupBarrier();
  for (var i = tid; i < COLS / 4u; i += WG) {
    x[i] = x_in[i] * inv_rms * norm_w[i];
  }
#else
  for (var i = tid; i < COLS / 4u; i += WG) {
    x[i] = x_in[i];
  }
#endif
  workgroupBarrier();
#endif
  var acc = 0.0;
  if (r < ROWS) {
    acc = row_dot(r, lane);
  }
#if SUBGROUPS
  // Subgroups hold consecutive invocations; when one fits inside a row's TPR lanes, its sum is that
  // row's partial. A wider subgroup (64 on some GPUs) takes the workgroup-memory path below.
  if (sg_size <= TPR) {
    acc = subgroupAdd(acc);
    partial[tid] = acc;
    workgroupBarrier();
    if (lane == 0u && r < ROWS) {
      var total = 0.0;
      for (var i = 0u; i < TPR; i += sg_size) {
        total += partial[tid + i];
      }
#if ACCUMULATE
      y[Y_OFFSET + r] += total;
#else
      y[Y_OFFSET + r] = total;
#endif
    }
    return;
  }
#endif
  partial[tid] = acc;
  workgroupBarrier();
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      partial[tid] += partial[tid + s];
    }
    workgroupBarrier();
  }
  if (lane == 0u && r < ROWS) {
#if ACCUMULATE
    y[Y_OFFSET + r] += partial[tid];
#else
    y[Y_OFFSET + r] = partial[tid];
#endif
  }
}
#endif
