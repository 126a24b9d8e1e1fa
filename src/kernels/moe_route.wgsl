// The router's choice for each token of a pass (one workgroup per token, workgroup x): from its logits
// [tokens, N_EXPERT], the K experts with the largest logits, ties to the lower index (as the CPU
// reference's stable sort), into route [tokens, K] in order of rank, each with its weight:
//   SOFTMAX (qwen3moe): its probability under the softmax over all N_EXPERT logits, divided by the K
//     chosen probabilities' sum with RENORM. A larger logit is a larger probability, so the logits choose.
//   otherwise (llama4): the sigmoid of its logit.
// Each round takes every invocation's best expert not chosen yet, then reduces those pairwise in a fixed
// tree: a token's route depends on its logits only.
#use route
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> route: array<Route>;

const WG = 64u;
const NONE = 0xFFFFFFFFu;

var<workgroup> red_v: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> red_sum: array<f32, WG>;
var<workgroup> chosen: array<u32, K>;

// Whether expert e was chosen in rounds 0..n-1.
fn taken(e: u32, n: u32) -> bool {
  for (var s = 0u; s < n; s++) {
    if (chosen[s] == e) {
      return true;
    }
  }
  return false;
}

// Whether (v, i) ranks before (w, j): a larger value, or an equal one at a lower index; nothing ranks
// after NONE.
fn before(v: f32, i: u32, w: f32, j: u32) -> bool {
  return i != NONE && (j == NONE || v > w || (v == w && i < j));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let base = wid.x * N_EXPERT;
  for (var slot = 0u; slot < K; slot++) {
    var bv = 0.0;
    var bi = NONE;
    for (var e = tid; e < N_EXPERT; e += WG) {
      let v = logits[base + e];
      if (!taken(e, slot) && before(v, e, bv, bi)) {
        bv = v;
        bi = e;
      }
    }
    red_v[tid] = bv;
    red_i[tid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (tid < s && before(red_v[tid + s], red_i[tid + s], red_v[tid], red_i[tid])) {
        red_v[tid] = red_v[tid + s];
        red_i[tid] = red_i[tid + s];
      }
      workgroupBarrier();
    }
    if (tid == 0u) {
      chosen[slot] = red_i[0];
    }
    workgroupBarrier();
  }
#if SOFTMAX
  // The first chosen logit is the largest: exp(l - top) never overflows.
  let top = logits[base + chosen[0]];
  var sum = 0.0;
  for (var e = tid; e < N_EXPERT; e += WG) {
    sum += exp(logits[base + e] - top);
  }
  red_sum[tid] = sum;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      red_sum[tid] += red_sum[tid + s];
    }
    workgroupBarrier();
  }
#endif
  if (tid != 0u) {
    return;
  }
  var w: array<f32, K>;
  var total = 0.0;
  for (var s = 0u; s < K; s++) {
    let l = logits[base + chosen[s]];
#if SOFTMAX
    w[s] = exp(l - top) / red_sum[0];
#else
    w[s] = 1.0 / (1.0 + exp(-l));
#endif
    total += w[s];
  }
  for (var s = 0u; s < K; s++) {
#if RENORM
    w[s] /= total;
#endif
    route[wid.x * K + s] = Route(chosen[s], w[s]);
  }
}
