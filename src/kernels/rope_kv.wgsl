// RoPE in GGUF's llama convention (adjacent pairs (2j, 2j+1) of each head's first ROPE_DIM dims rotate by
// pos * inv_freq[j]; the converter already permuted Q/K for it), or with NEOX the pairs (j, j + ROPE_DIM/2)
// as Hugging Face rotates halves (the Qwen family, stored unpermuted), applied to q in place and to k on
// its way into the KV cache; v is copied into the cache unchanged. One row of qkv per token of the pass:
// qkv [tokens, q (N_HEADS*HEAD_DIM) | k (N_KV*HEAD_DIM) | v (N_KV*HEAD_DIM)]; token i (workgroup x) writes
// cache row slot * CTX + pos of caches [slots * CTX, N_KV*HEAD_DIM]. cos/sin come from a table computed in
// double at load: GPU sin/cos are only accurate near [-pi, pi], and angles reach thousands of radians.
// Workgroup (x, y) takes token x's head y (q heads, then k, then v heads), so that per-head work (a norm
// over the head) needs no second dispatch; or, with HEADS_PER_WG (only where no head is normalised:
// kernels/rope_kv.hpp), its heads y HEADS_PER_WG .. y HEADS_PER_WG + HEADS_PER_WG - 1, HEAD_DIM / 2
// invocations each. Passes of the GEMV path rotate in the q|k|v GEMV's epilogue instead where none of the
// options below is on (matvec.wgsl's ROPE_KV).
// BIAS: the projections' biases, `extra` [bq | bk | bv], are added to q, k and v on the way (q/k before
// the rotation).
// QK_NORM (qwen3): each q and k head is RMS-normalised over its HEAD_DIM elements (EPS inside the root)
// and scaled by the weights that follow the biases in `extra`, [q_norm | k_norm], before the rotation.
// L2_NORM (llama4's RoPE layers): each q and k head is RMS-normalised without weights (EPS inside the root)
// after the rotation. A rotation keeps a head's norm, so the sum of squares is taken of the head as it
// enters the rotation (the reduction QK_NORM has) and the rotated pairs are scaled by the result.
// NO_ROPE (llama4's NoPE layers): no rotation; binding 1 holds q's factor at each position instead of the
// cos/sin table, q_scale [CTX] (Llama 4's attention temperature, computed in double at load; 1 where the
// model has none), which multiplies q.
#use step_params
#use rope_rotate
@group(0) @binding(0) var<storage, read> tokens: array<Token>;
#if NO_ROPE
@group(0) @binding(1) var<storage, read> q_scale: array<f32>;  // [CTX]
#else
@group(0) @binding(1) var<storage, read> rope: array<vec2<f32>>;  // [CTX, ROPE_DIM / 2] (cos, sin)
#endif
@group(0) @binding(2) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<f32>;
#if BIAS
@group(0) @binding(5) var<storage, read> extra: array<f32>;
const NORM_AT = QKV;
#else
#if QK_NORM
@group(0) @binding(5) var<storage, read> extra: array<f32>;
const NORM_AT = 0u;
#endif
#endif
var<workgroup> partial: array<f32, WG>;

const HALF = HEAD_DIM / 2u;
#if HEADS_PER_WG
const WG = HEADS_PER_WG * HALF;
const LANES = HALF;  // invocations per head
#else
const WG = 64u;
const LANES = WG;
#endif
const KV_DIM = N_KV * HEAD_DIM;
const K_OFF = N_HEADS * HEAD_DIM;
const V_OFF = K_OFF + KV_DIM;
const QKV = V_OFF + KV_DIM;

// Element e of the token's row (starting at `base`) as the projection and its bias make it.
fn load(base: u32, e: u32) -> f32 {
#if BIAS
  return qkv[base + e] + extra[e];
#else
  return qkv[base + e];
#endif
}

// Element e of the q or k head starting at `at` as it enters the rotation: with QK_NORM, times the head's
// 1 / rms `inv_rms` and its weight.
fn entering(base: u32, at: u32, e: u32, inv_rms: f32) -> f32 {
#if QK_NORM
  return load(base, at + e) * inv_rms * extra[NORM_AT + select(HEAD_DIM, 0u, at < K_OFF) + e];
#else
  return load(base, at + e);
#endif
}

// 1 / sqrt(mean of squares + eps) of a head whose invocations hold the partial sums of squares `ss`.
fn inv_rms(tid: u32, ss: f32, eps: f32) -> f32 {
  workgroupBarrier();  // an earlier reduction's result has been read
  partial[tid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      partial[tid] += partial[tid + s];
    }
    workgroupBarrier();
  }
  return inverseSqrt(partial[0] / f32(HEAD_DIM) + eps);
}

// The two elements of a head that pair j turns (pairs past ROPE_DIM / 2 stay as they are).
fn pair(j: u32) -> vec2<u32> {
#if NEOX
  if (j < ROPE_DIM / 2u) {
    return vec2<u32>(j, j + ROPE_DIM / 2u);
  }
#endif
  return vec2<u32>(2u * j, 2u * j + 1u);
}

fn rotate(a: f32, b: f32, j: u32, pos: u32) -> vec2<f32> {
#if NO_ROPE
  return vec2<f32>(a, b);
#else
  if (2u * j >= ROPE_DIM) {
    return vec2<f32>(a, b);
  }
  return rope_rotate(vec2<f32>(a, b), rope[pos * (ROPE_DIM / 2u) + j]);
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let t = tokens[wid.x];
#if HEADS_PER_WG
  let head = wid.y * HEADS_PER_WG + tid / LANES;
  let lane = tid % LANES;
  if (head >= N_HEADS + 2u * N_KV) {
    return;  // past the last head
  }
#else
  let head = wid.y;
  let lane = tid;
#endif
  let base = wid.x * QKV;
  let at = head * HEAD_DIM;  // the head's first element in the row
  let row = (t.slot * CTX + t.pos) * KV_DIM;
  if (at >= V_OFF) {
    for (var e = lane; e < HEAD_DIM; e += LANES) {
      v_cache[row + at - V_OFF + e] = load(base, at + e);
    }
    return;
  }
  var norm = 1.0;
#if QK_NORM
  var ss = 0.0;
  for (var e = lane; e < HEAD_DIM; e += LANES) {
    let x = load(base, at + e);
    ss += x * x;
  }
  norm = inv_rms(tid, ss, EPS);
#endif
#if L2_NORM
  var ss2 = 0.0;
  for (var e = lane; e < HEAD_DIM; e += LANES) {
    let x = entering(base, at, e, norm);
    ss2 += x * x;
  }
  let l2 = inv_rms(tid, ss2, EPS);
#endif
  for (var j = lane; j < HALF; j += LANES) {
    let p = pair(j);
    var r = rotate(entering(base, at, p.x, norm), entering(base, at, p.y, norm), j, t.pos);
#if L2_NORM
    r *= l2;
#endif
    if (at < K_OFF) {
#if NO_ROPE
      r *= q_scale[t.pos];
#endif
      qkv[base + at + p.x] = r.x;
      qkv[base + at + p.y] = r.y;
    } else {
      k_cache[row + at + p.x - K_OFF] = r.x;
      k_cache[row + at + p.y - K_OFF] = r.y;
    }
  }
}
