// y[i * STRIDE + e] += bias[e] for e < N, row i per token of the pass (workgroup x): the bias of a
// projection that accumulated into y (the attention output's, bo, into the residual stream). Its own
// dispatch keeps the GEMV and GEMM kernels free of a bias variant; a token's arithmetic is the same in any
// pass.
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let e = wid.y * 256u + tid;
  if (e < N) {
    y[wid.x * STRIDE + e] += bias[e];
  }
}
