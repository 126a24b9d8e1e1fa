// Activations for matmul.wgsl's INT8 path and matvec.wgsl's PREQUANT: each token's row x_t [COLS]
// (with NORM, RMS-normalised first: x / rms(x) * norm_w, EPS inside the root, as matvec.wgsl's NORM) is
// cut into 32-element chunks, each quantized by 8 invocations (act_quant.wgsl's quantize_part:
// quantize_chunk's codes).
//   xq [tokens, COLS / 4]: 4 int8 q per word, in element order
//   xs [tokens, COLS / 32]: per chunk (d, d * sum q[0..16), d * sum q[16..32), d * sum q[0..32))
// Bindings: 0 x (f32 [tokens, X_STRIDE]), 1 xq, 2 xs, 3 batch (uniform), 4 norm_w (NORM).
// Defines: COLS (a multiple of 32), X_STRIDE (a multiple of 4), NORM, EPS.
// Dispatch: (1, max_tokens) workgroups, one per token; those past batch.tokens return at once.
#if SUBGROUPS
enable subgroups;
#endif
struct Batch {
  tokens: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> xq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> xs: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> batch: Batch;
#if NORM
@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;
#endif

#use act_quant
#use row_sum

// 256 invocations and the same sum-of-squares loop and reduction (row_sum.wgsl) as rms_norm.wgsl and
// matvec.wgsl's NORM: the normalised values, hence the codes, are the ones a one-token GEMV makes (batch
// invariance of PREQUANT).
const WG = 256u;
const ACT_WG = WG;
const ACT_VECS = 1u;
const CHUNKS = COLS / 32u;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>
#if SUBGROUPS
        , @builtin(subgroup_invocation_id) sg_lane: u32
#endif
) {
#if !SUBGROUPS
  let sg_lane = 0u;
#endif
  let t = wid.y;
  if (t >= batch.tokens) {
    return;
  }
  let row = t * (X_STRIDE / 4u);
#if NORM
  var ss = 0.0;
  for (var i = tid; i < COLS / 4u; i += WG) {
    let v = x[row + i];
    ss += dot(v, v);
  }
  let inv_rms = inverseSqrt(workgroup_sum(ss, tid, sg_lane) / f32(COLS) + EPS);
#endif
  // 32 chunks at a time, 8 invocations per chunk (act_quant.wgsl's quantize_part).
  let k = tid % 8u;
  for (var g0 = 0u; g0 < CHUNKS; g0 += WG / 8u) {
    let g = g0 + tid / 8u;
    var v = vec4<f32>(0.0);
    if (g < CHUNKS) {
#if NORM
      v = x[row + 8u * g + k] * inv_rms * norm_w[8u * g + k];
#else
      v = x[row + 8u * g + k];
#endif
    }
    let part = quantize_part(array<vec4<f32>, 1>(v), tid);
    if (g < CHUNKS) {
      let c = t * CHUNKS + g;
      xq[2u * c + k / 4u][k % 4u] = part.words[0];
      if (k == 0u) {
        xs[c] = part.s;
      }
    }
  }
}
