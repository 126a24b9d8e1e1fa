// Everything that reads a weight matrix W [ROWS x COLS] (GGUF's ne = [COLS, ROWS]) as repacked at load:
//   default:  y[Y_OFFSET + r] (+)= sum_c W[r, c] * x[c]      (GEMV; ACCUMULATE adds into y: the residual)
//   EMBED:    y[c] = W[token - Y_OFFSET, c] when this chunk holds row `token` (embedding row gather)
// Weight storage by WTYPE (one template, not one kernel per type):
//   WTYPE_F32  w: f32 bits                WTYPE_F16  w: two f16 per u32 (element i = half i%2 of word i/2)
//   WTYPE_Q8_0 w: 4 int8 per u32, 8 words per 32-element block; scales: two f16 per u32, one per block
//   WTYPE_Q4_0 w: 4 words per block; byte j of the block holds element j (low nibble) and j+16 (high
//              nibble), value = (q - 8) * scale — GGUF's own nibble order, only realigned to 4 bytes.
// GEMV: TPR threads share a row, RPW rows per workgroup; partial sums reduce through subgroups when the
// adapter has them (SUBGROUPS) and through workgroup memory otherwise.
// STAGE_X (quantized types): each workgroup first copies the input into workgroup memory, and with NORM
// RMS-normalises it on the way (x / rms(x) * norm_w, EPS inside the root): the RMSNorm that precedes a
// projection costs no dispatch of its own.
#if SUBGROUPS
enable subgroups;
#endif

#if QUANT
// Quantized weights are read 16 bytes at a time: a Q4_0 block is one vec4, a Q8_0 block two.
@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
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
const BLOCKS = COLS / 32u;

#if QUANT
fn block_scale(b: u32) -> f32 {
  let pair = unpack2x16float(scales[b / 2u]);
  return select(pair.x, pair.y, (b & 1u) == 1u);
}

// Word i of the quant array.
fn word(i: u32) -> u32 {
  return w[i / 4u][i % 4u];
}

// Byte k (0..3) of word v as a signed 8-bit integer.
fn i8_at(v: u32, k: u32) -> f32 {
  return f32(bitcast<i32>(v << (24u - 8u * k)) >> 24u);
}
#endif

// Element (r, c) of W, dequantized exactly as the CPU reference does.
fn weight_at(r: u32, c: u32) -> f32 {
#if WTYPE_F32
  return bitcast<f32>(w[r * COLS + c]);
#endif
#if WTYPE_F16
  let i = r * COLS + c;
  let pair = unpack2x16float(w[i / 2u]);
  return select(pair.x, pair.y, (i & 1u) == 1u);
#endif
#if WTYPE_Q8_0
  let b = r * BLOCKS + c / 32u;
  let e = c % 32u;
  return i8_at(word(b * 8u + e / 4u), e % 4u) * block_scale(b);
#endif
#if WTYPE_Q4_0
  let b = r * BLOCKS + c / 32u;
  let e = c % 32u;
  let byte_index = e % 16u;
  let v = (word(b * 4u + byte_index / 4u) >> (8u * (byte_index % 4u) + 4u * (e / 16u))) & 0xFu;
  return (f32(v) - 8.0) * block_scale(b);
#endif
}

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
#if WTYPE_F16
  for (var c = lane; c < COLS; c += TPR) {
    acc += weight_at(r, c) * x[c];
  }
#endif
#if WTYPE_Q8_0
  for (var b = lane; b < BLOCKS; b += TPR) {
    let blk = r * BLOCKS + b;
    let lo = w[2u * blk];
    let hi = w[2u * blk + 1u];
    let xb = b * 8u;  // the block's 32 inputs are 8 vec4s
    var s = dot(vec4<f32>(unpack4xI8(lo.x)), x[xb]) + dot(vec4<f32>(unpack4xI8(lo.y)), x[xb + 1u]);
    s += dot(vec4<f32>(unpack4xI8(lo.z)), x[xb + 2u]) + dot(vec4<f32>(unpack4xI8(lo.w)), x[xb + 3u]);
    s += dot(vec4<f32>(unpack4xI8(hi.x)), x[xb + 4u]) + dot(vec4<f32>(unpack4xI8(hi.y)), x[xb + 5u]);
    s += dot(vec4<f32>(unpack4xI8(hi.z)), x[xb + 6u]) + dot(vec4<f32>(unpack4xI8(hi.w)), x[xb + 7u]);
    acc += s * block_scale(blk);
  }
#endif
#if WTYPE_Q4_0
  let eight = vec4<f32>(8.0);
  for (var b = lane; b < BLOCKS; b += TPR) {
    let blk = r * BLOCKS + b;
    let q = w[blk];
    let xb = b * 8u;
    // Word j holds bytes 4j..4j+3: low nibbles are elements 4j.., high nibbles elements 16+4j..
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
      let v = q[j];
      s += dot(vec4<f32>(unpack4xU8(v & 0x0F0F0F0Fu)) - eight, x[xb + j]);
      s += dot(vec4<f32>(unpack4xU8((v >> 4u) & 0x0F0F0F0Fu)) - eight, x[xb + 4u + j]);
    }
    acc += s * block_scale(blk);
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
