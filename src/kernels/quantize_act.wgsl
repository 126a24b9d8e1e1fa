// Activations for matmul.wgsl's INT8 path: each token's row x_t [COLS] (with NORM, RMS-normalised first:
// x / rms(x) * norm_w, EPS inside the root, as matvec.wgsl's NORM) is cut into 32-element chunks, and each
// chunk quantized like llama.cpp's q8_1 blocks: d = max|x| / 127, q = x * (1 / d) rounded to the nearest
// integer (ties to even; all 0 when d = 0), with the sums of q that weights with mins need.
//   xq [tokens, COLS / 4]: 4 int8 q per word, in element order
//   xs [tokens, COLS / 32]: per chunk (d, d * sum q[0..16), d * sum q[16..32), d * sum q[0..32))
// Bindings: 0 x (f32 [tokens, X_STRIDE]), 1 xq, 2 xs, 3 batch (uniform), 4 norm_w (NORM).
// Defines: COLS (a multiple of 32), X_STRIDE (a multiple of 4), NORM, EPS.
// Dispatch: (1, max_tokens) workgroups, one per token; those past batch.tokens return at once.
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

const WG = 128u;
const CHUNKS = COLS / 32u;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
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
  partial[tid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      partial[tid] += partial[tid + s];
    }
    workgroupBarrier();
  }
  let inv_rms = inverseSqrt(partial[0] / f32(COLS) + EPS);
#endif
  for (var g = tid; g < CHUNKS; g += WG) {
    var v: array<vec4<f32>, 8>;  // the chunk's 32 values
    var amax = 0.0;
    for (var j = 0u; j < 8u; j++) {
#if NORM
      v[j] = x[row + 8u * g + j] * inv_rms * norm_w[8u * g + j];
#else
      v[j] = x[row + 8u * g + j];
#endif
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
    let c = t * CHUNKS + g;
    xq[2u * c] = vec4<u32>(words[0], words[1], words[2], words[3]);
    xq[2u * c + 1u] = vec4<u32>(words[4], words[5], words[6], words[7]);
    xs[c] = vec4<f32>(d, d * f32(sums.x), d * f32(sums.y), d * f32(sums.x + sums.y));
  }
}
