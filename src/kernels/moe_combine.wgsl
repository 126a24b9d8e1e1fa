// A mixture-of-experts layer's output added to the residual stream, one workgroup per token of the pass
// (workgroup x) and 256 elements (y): x [tokens, DIM] += the sum over the token's K chosen experts, in
// rank order, of their outputs y [tokens, K, DIM], each times its routing weight with WEIGHTED (qwen3moe;
// llama4 scaled the experts' inputs instead). The order is fixed per token: batch invariant.
#use route
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
#if WEIGHTED
@group(0) @binding(2) var<storage, read> route: array<Route>;
#endif

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let i = wid.y * 256u + tid;
  if (i >= DIM) {
    return;
  }
  var sum = 0.0;
  for (var s = 0u; s < K; s++) {
    let v = y[(wid.x * K + s) * DIM + i];
#if WEIGHTED
    sum = fma(route[wid.x * K + s].weight, v, sum);
#else
    sum += v;
#endif
  }
  x[wid.x * DIM + i] += sum;
}
