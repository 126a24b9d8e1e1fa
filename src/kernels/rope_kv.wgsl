// RoPE in GGUF's llama convention (adjacent pairs (2j, 2j+1) of each head's first ROPE_DIM dims rotate by
// pos * inv_freq[j]; the converter already permuted Q/K for it), applied to q in place and to k on its way
// into the KV cache; v is copied into the cache unchanged. One row of qkv per token of the pass:
// qkv [tokens, q (N_HEADS*HEAD_DIM) | k (N_KV*HEAD_DIM) | v (N_KV*HEAD_DIM)]; token i (workgroup x) writes
// cache row slot * CTX + pos of caches [slots * CTX, N_KV*HEAD_DIM]. cos/sin come from a table computed in
// double at load: GPU sin/cos are only accurate near [-pi, pi], and angles reach thousands of radians.
#use step_params
@group(0) @binding(0) var<storage, read> tokens: array<Token>;
@group(0) @binding(1) var<storage, read> rope: array<vec2<f32>>;  // [CTX, ROPE_DIM / 2] (cos, sin)
@group(0) @binding(2) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<f32>;

const HALF = HEAD_DIM / 2u;
const Q_PAIRS = N_HEADS * HALF;
const K_PAIRS = N_KV * HALF;
const KV_DIM = N_KV * HEAD_DIM;
const K_OFF = N_HEADS * HEAD_DIM;
const V_OFF = K_OFF + KV_DIM;
const QKV = V_OFF + KV_DIM;

fn rotate(a: f32, b: f32, j: u32, pos: u32) -> vec2<f32> {
  if (2u * j >= ROPE_DIM) {
    return vec2<f32>(a, b);
  }
  let cs = rope[pos * (ROPE_DIM / 2u) + j];
  return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let t = tokens[wid.x];
  let i = wid.y * 64u + tid;
  let base = wid.x * QKV;
  let row = (t.slot * CTX + t.pos) * KV_DIM;
  if (i < Q_PAIRS) {
    let e = base + 2u * i;
    let r = rotate(qkv[e], qkv[e + 1u], i % HALF, t.pos);
    qkv[e] = r.x;
    qkv[e + 1u] = r.y;
  } else if (i < Q_PAIRS + K_PAIRS) {
    let p = i - Q_PAIRS;
    let e = 2u * p;
    let r = rotate(qkv[base + K_OFF + e], qkv[base + K_OFF + e + 1u], p % HALF, t.pos);
    k_cache[row + e] = r.x;
    k_cache[row + e + 1u] = r.y;
  } else if (i < Q_PAIRS + K_PAIRS + KV_DIM / 2u) {
    let e = 2u * (i - Q_PAIRS - K_PAIRS);
    v_cache[row + e] = qkv[base + V_OFF + e];
    v_cache[row + e + 1u] = qkv[base + V_OFF + e + 1u];
  }
}
