// Batched product for prefill: for the first `batch.tokens` tokens t and every row r of W [ROWS x COLS]
//   y[t * Y_STRIDE + Y_OFFSET + r] (+)= sum_c W[r, c] * x_t[c]      (ACCUMULATE adds: the residual)
// i.e. Y[M, N] (+)= X[M, K] W[N, K]^T with M = batch.tokens, N = ROWS, K = COLS. W is a matrix (or a row
// chunk of one) exactly as matvec.wgsl reads it (same weight defines, same leading bindings), decoded by
// weight_decode.wgsl. The token count comes from a uniform, so one pipeline serves every batch size.
//
// Two paths:
//   default (every weight type): f32 arithmetic. x: f32 [tokens, X_STRIDE]. W is dequantized into
//     workgroup memory as f32 tiles.
//   INT8 (QUANT types only): int8 x int8 dot products (dot4I8Packed) on activations quantized by
//     quantize_act.wgsl: xq [tokens, COLS / 4] words (4 int8 each), xs [tokens, COLS / 32] per 32-element
//     chunk (d, d * sum of its first 16 q, d * sum of its last 16 q, d * sum of all 32 q), x = d * q.
//     W's codes are kept as int8 (code - OFFSET) in workgroup memory and each chunk's dot product is
//     scaled as a * d (per 16-element half where the type's halves differ, minus m * d * sum q for types
//     with mins).
//
// Bindings (group 0), matvec's order:
//   QUANT:        0 w, 1 scales, 2 x (INT8: xq), 3 y, 4 batch (uniform), 5 xs (INT8 only)
//   F32/F16/BF16: 0 w, 1 x, 2 y, 3 batch (uniform)
// Defines: the weight type's (weight_decode.wgsl), ROWS, COLS, Y_STRIDE, Y_OFFSET, X_STRIDE (default path),
// ACCUMULATE, INT8, and the tiling: BM tokens x BN rows per workgroup, TM x TN outputs per invocation
// (multiples of 4 on the default path), KC 32-element chunks of K per step (BK = 32 KC); the workgroup is
// (BN / TN) x (BM / TM) invocations. kernels/matmul.hpp chooses them.
// The workgroup is two-dimensional so that an invocation's tile row and column are local_invocation_id's
// y and x, not tid / and % (BN / TN): Tint proves the workgroup-memory indices built from them in bounds
// and leaves out the clamps that robust access puts on every other runtime index. In the INT8 chunk loop
// those clamps cost 7 % of the GEMM's time on the H100 (docs/perf.md, session 16).
// Dispatch: (ceil(ROWS / BN), ceil(max_tokens / BM)) workgroups; those past batch.tokens return at once.
#use weight_decode

struct Batch {
  tokens: u32,
}

#if QUANT
@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<vec4<u32>>;
#if INT8
@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> xs: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> batch: Batch;
#else
@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> batch: Batch;
#endif

const WG = (BM / TM) * (BN / TN);
const BK = 32u * KC;

fn store(m: u32, n: u32, v: f32) {
  if (m < batch.tokens && n < ROWS) {
    let i = m * Y_STRIDE + Y_OFFSET + n;
#if ACCUMULATE
    y[i] += v;
#else
    y[i] = v;
#endif
  }
}

#if INT8
// Tiles of int8 codes: per token (row of W), KC chunks of 2 vec4 (elements 0-15, 16-31), the row padded to
// an odd number of vec4 so that 8 consecutive rows read at once fall in distinct banks.
const SV = 2u * KC + 1u;
var<workgroup> xt: array<vec4<u32>, BM * SV>;
var<workgroup> wt: array<vec4<u32>, BN * SV>;
var<workgroup> xst: array<vec4<f32>, BM * KC>;  // xs of each (token, chunk)
var<workgroup> wst: array<vec4<f32>, BN * KC>;  // chunk_scales of each (row, chunk)

// Chunk loads per invocation and tile.
const LX = (BM * KC + WG - 1u) / WG;
const LW = (BN * KC + WG - 1u) / WG;

@compute @workgroup_size(BN / TN, BM / TM)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>) {
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  if (m0 >= batch.tokens) {
    return;
  }
  let tm = lid.y;
  let tn = lid.x;
  var acc: array<f32, TM * TN>;

  // Staged global loads of one K step: invocation tid takes chunks tid + l WG, (token or row, chunk) =
  // (i / KC, i % KC).
  var xa: array<vec4<u32>, LX>;
  var xb: array<vec4<u32>, LX>;
  var xsr: array<vec4<f32>, LX>;
  var wa: array<vec4<u32>, LW>;
  var wb: array<vec4<u32>, LW>;
  var wsr: array<vec4<f32>, LW>;

  const STEPS = COLS / BK;
  const CHUNKS_X = COLS / 32u;
  for (var kt = 0u; kt <= STEPS; kt++) {
    // Load step kt into registers while the tile of step kt - 1 is being used.
    if (kt < STEPS) {
      for (var l = 0u; l < LX; l++) {
        let i = tid + l * WG;
        let m = m0 + i / KC;
        let g = m * CHUNKS_X + kt * KC + i % KC;
        if (i < BM * KC && m < batch.tokens) {
          xa[l] = xq[2u * g];
          xb[l] = xq[2u * g + 1u];
          xsr[l] = xs[g];
        } else {
          xa[l] = vec4<u32>(0u);
          xb[l] = vec4<u32>(0u);
          xsr[l] = vec4<f32>(0.0);
        }
      }
      for (var l = 0u; l < LW; l++) {
        let i = tid + l * WG;
        let n = n0 + i / KC;
        if (i < BN * KC && n < ROWS) {
          let g = n * CHUNKS + kt * KC + i % KC;
          let c = chunk_codes(g);
          wa[l] = signed_codes(c.lo);
          wb[l] = signed_codes(c.hi);
          wsr[l] = chunk_scales(g);
        } else {
          wa[l] = vec4<u32>(0u);
          wb[l] = vec4<u32>(0u);
          wsr[l] = vec4<f32>(0.0);
        }
      }
    }
    if (kt > 0u) {
      for (var c = 0u; c < KC; c++) {
        var wlo: array<vec4<u32>, TN>;
        var whi: array<vec4<u32>, TN>;
        var wsc: array<vec4<f32>, TN>;
        for (var j = 0u; j < TN; j++) {
          let n = tn + j * (BN / TN);
          wlo[j] = wt[n * SV + 2u * c];
          whi[j] = wt[n * SV + 2u * c + 1u];
          wsc[j] = wst[n * KC + c];
        }
        for (var i = 0u; i < TM; i++) {
          let m = tm + i * (BM / TM);
          let xlo = xt[m * SV + 2u * c];
          let xhi = xt[m * SV + 2u * c + 1u];
          let d = xst[m * KC + c];
          // The TN rows' integer sums word by word: TN independent IDP4A chains side by side (+2 % on the
          // H100 over one row's chain after another). int8_chunk_dot's operations, the same bits.
          var lo: array<i32, TN>;
          var hi: array<i32, TN>;
          for (var j = 0u; j < TN; j++) {
            lo[j] = SUM_BIAS;
            hi[j] = SUM_BIAS;
          }
          for (var k = 0u; k < 4u; k++) {
            for (var j = 0u; j < TN; j++) {
              lo[j] = lo[j] + dot4I8Packed(xlo[k], wlo[j][k]);
            }
          }
          for (var k = 0u; k < 4u; k++) {
            for (var j = 0u; j < TN; j++) {
              if (SPLIT) {
                hi[j] = hi[j] + dot4I8Packed(xhi[k], whi[j][k]);
              } else {
                lo[j] = lo[j] + dot4I8Packed(xhi[k], whi[j][k]);
              }
            }
          }
          for (var j = 0u; j < TN; j++) {
            acc[i * TN + j] = int8_chunk_finish(acc[i * TN + j], lo[j], hi[j], d, wsc[j]);
          }
        }
      }
    }
    if (kt < STEPS) {
      workgroupBarrier();
      for (var l = 0u; l < LX; l++) {
        let i = tid + l * WG;
        if (i < BM * KC) {
          let at = (i / KC) * SV + 2u * (i % KC);
          xt[at] = xa[l];
          xt[at + 1u] = xb[l];
          xst[i] = xsr[l];
        }
      }
      for (var l = 0u; l < LW; l++) {
        let i = tid + l * WG;
        if (i < BN * KC) {
          let at = (i / KC) * SV + 2u * (i % KC);
          wt[at] = wa[l];
          wt[at + 1u] = wb[l];
          wst[i] = wsr[l];
        }
      }
      workgroupBarrier();
    }
  }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      store(m0 + tm + i * (BM / TM), n0 + tn + j * (BN / TN), acc[i * TN + j]);
    }
  }
}
#else
// f32 tiles, K-major ([k][token], [k][row]) so that an invocation reads its 4 consecutive tokens (rows)
// as one vec4.
var<workgroup> xt: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> wt: array<vec4<f32>, BK * BN / 4u>;

fn tile_x(m: u32, k: u32) -> f32 {
  if (m < batch.tokens && k < COLS) {
    return x[m * X_STRIDE + k];
  }
  return 0.0;
}

// Fills wt with rows n0 .. n0 + BN, elements k0 .. k0 + BK of W (zero past its end).
fn load_w(tid: u32, n0: u32, k0: u32) {
#if QUANT
  // One 16-element half chunk per invocation and pass, decoded as weight_decode's chunk_value does.
  for (var i = tid; i < BN * KC * 2u; i += WG) {
    let n = i % BN;
    let h = (i / BN) % 2u;
    let c = i / (2u * BN);
    var v = vec4<u32>(0u);
    var s = vec4<f32>(0.0);
    if (n0 + n < ROWS && k0 / 32u + c < CHUNKS) {
      let g = (n0 + n) * CHUNKS + k0 / 32u + c;
      let codes = chunk_codes(g);
      v = select(codes.lo, codes.hi, h == 1u);
      s = chunk_scales(g);
    }
    let a = s[h];
    let m = s[2u + h];
    for (var e = 0u; e < 16u; e++) {
      let code = (v[e / 4u] >> (8u * (e % 4u))) & 0xFFu;
      let k = 32u * c + 16u * h + e;
      wt[k * (BN / 4u) + n / 4u][n % 4u] = a * f32(i32(code) - OFFSET) - m;
    }
  }
#else
  for (var i = tid; i < BN * BK; i += WG) {
    let n = i % BN;
    let k = i / BN;
    var v = 0.0;
    if (n0 + n < ROWS && k0 + k < COLS) {
      v = weight_at(n0 + n, k0 + k);
    }
    wt[k * (BN / 4u) + n / 4u][n % 4u] = v;
  }
#endif
}

@compute @workgroup_size(BN / TN, BM / TM)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>) {
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  if (m0 >= batch.tokens) {
    return;
  }
  let tm = lid.y;
  let tn = lid.x;
  var acc: array<f32, TM * TN>;
  for (var k0 = 0u; k0 < COLS; k0 += BK) {
    for (var i = tid; i < BM * BK; i += WG) {
      let m = i % BM;
      let k = i / BM;
      xt[k * (BM / 4u) + m / 4u][m % 4u] = tile_x(m0 + m, k0 + k);
    }
    load_w(tid, n0, k0);
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      var xv: array<vec4<f32>, TM / 4u>;
      var wv: array<vec4<f32>, TN / 4u>;
      for (var q = 0u; q < TM / 4u; q++) {
        xv[q] = xt[k * (BM / 4u) + q * (BM / TM) + tm];
      }
      for (var q = 0u; q < TN / 4u; q++) {
        wv[q] = wt[k * (BN / 4u) + q * (BN / TN) + tn];
      }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
          acc[i * TN + j] = fma(xv[i / 4u][i % 4u], wv[j / 4u][j % 4u], acc[i * TN + j]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      let m = 4u * ((i / 4u) * (BM / TM) + tm) + i % 4u;
      let n = 4u * ((j / 4u) * (BN / TN) + tn) + j % 4u;
      store(m0 + m, n0 + n, acc[i * TN + j]);
    }
  }
}
#endif
