// Causal attention of one new query over the cached positions 0..pos, one workgroup per query head.
// GQA: query head h reads kv head h / (N_HEADS / N_KV). q [N_HEADS*HEAD_DIM]; caches [ctx, N_KV*HEAD_DIM];
// scores [N_HEADS, CTX] scratch; out [N_HEADS*HEAD_DIM].
#use step_params
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG = 256u;
const KV_DIM = N_KV * HEAD_DIM;
const GROUP = N_HEADS / N_KV;
var<workgroup> red: array<f32, WG>;

fn reduce_max(tid: u32, v: f32) -> f32 {
  red[tid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      red[tid] = max(red[tid], red[tid + s]);
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn reduce_sum(tid: u32, v: f32) -> f32 {
  red[tid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      red[tid] += red[tid + s];
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let h = wid.x;
  let kv = (h / GROUP) * HEAD_DIM;
  let qh = h * HEAD_DIM;
  let n = step.pos + 1u;
  let srow = h * CTX;
  var m = -3.0e38;
  for (var t = tid; t < n; t += WG) {
    var s = 0.0;
    for (var d = 0u; d < HEAD_DIM; d++) {
      s += q[qh + d] * k_cache[t * KV_DIM + kv + d];
    }
    s *= SCALE;
    scores[srow + t] = s;
    m = max(m, s);
  }
  m = reduce_max(tid, m);
  var sum = 0.0;
  for (var t = tid; t < n; t += WG) {
    let e = exp(scores[srow + t] - m);
    scores[srow + t] = e;
    sum += e;
  }
  sum = reduce_sum(tid, sum);
  storageBarrier();
  for (var d = tid; d < HEAD_DIM; d += WG) {
    var acc = 0.0;
    for (var t = 0u; t < n; t++) {
      acc += scores[srow + t] * v_cache[t * KV_DIM + kv + d];
    }
    out[qh + d] = acc / sum;
  }
}
