// RoPE in GGUF's llama convention (adjacent pairs (2j, 2j+1) of each head's first ROPE_DIM dims rotate by
// pos * inv_freq[j]; the converter already permuted Q/K for it), or with NEOX the pairs (j, j + ROPE_DIM/2)
// as Hugging Face rotates halves (the Qwen family, stored unpermuted), applied to q in place and to k on
// its way into the KV cache; v is copied into the cache unchanged. One row of qkv per token of the pass:
// qkv [tokens, q (N_HEADS*HEAD_DIM) | k (N_KV*HEAD_DIM) | v (N_KV*HEAD_DIM)]; token i (workgroup x) writes
// cache row slot * CTX + pos of caches [slots * CTX, N_KV*HEAD_DIM]. cos/sin come from a table computed in
// double at load: GPU sin/cos are only accurate near [-pi, pi], and angles reach thousands of radians.
// One workgroup per (token, head) of the row's q, then k, then v heads (workgroup y), so that per-head
// work (a norm over the head) needs no second dispatch.
// BIAS: the projections' biases, `extra` [bq | bk | bv], are added to q, k and v on the way (q/k before
// the rotation).
// QK_NORM (qwen3): each q and k head is RMS-normalised over its HEAD_DIM elements (EPS inside the root)
// and scaled by the weights that follow the biases in `extra`, [q_norm | k_norm], before the rotation.
#use step_params
@group(0) @binding(0) var<storage, read> tokens: array<Token>;
@group(0) @binding(1) var<storage, read> rope: array<vec2<f32>>;  // [CTX, ROPE_DIM / 2] (cos, sin)
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
#if QK_NORM
var<workgroup> partial: array<f32, WG>;
#endif

const WG = 64u;
const HALF = HEAD_DIM / 2u;
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
  if (2u * j >= ROPE_DIM) {
    return vec2<f32>(a, b);
  }
  let cs = rope[pos * (ROPE_DIM / 2u) + j];
  return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let t = tokens[wid.x];
  let head = wid.y;
  let base = wid.x * QKV;
  let at = head * HEAD_DIM;  // the head's first element in the row
  let row = (t.slot * CTX + t.pos) * KV_DIM;
  if (at >= V_OFF) {
    for (var e = tid; e < HEAD_DIM; e += WG) {
      v_cache[row + at - V_OFF + e] = load(base, at + e);
    }
    return;
  }
#if QK_NORM
  // The rotation turns x[e] * scale * w[e - at]: the head's RMS norm, then its weights.
  var ss = 0.0;
  for (var e = tid; e < HEAD_DIM; e += WG) {
    let x = load(base, at + e);
    ss += x * x;
  }
  partial[tid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      partial[tid] += partial[tid + s];
    }
    workgroupBarrier();
  }
  let scale = inverseSqrt(partial[0] / f32(HEAD_DIM) + EPS);
  let w = NORM_AT + select(HEAD_DIM, 0u, at < K_OFF);
#endif
  for (var j = tid; j < HALF; j += WG) {
    let p = pair(j);
    let e = at + p;
#if QK_NORM
    let r = rotate(load(base, e.x) * scale * extra[w + p.x], load(base, e.y) * scale * extra[w + p.y], j,
                   t.pos);
#else
    let r = rotate(load(base, e.x), load(base, e.y), j, t.pos);
#endif
    if (at < K_OFF) {
      qkv[base + e.x] = r.x;
      qkv[base + e.y] = r.y;
    } else {
      k_cache[row + e.x - K_OFF] = r.x;
      k_cache[row + e.y - K_OFF] = r.y;
    }
  }
}
