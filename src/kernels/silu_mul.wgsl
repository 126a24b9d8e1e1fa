// SwiGLU, in place, one row per token of the pass (workgroup x): gu [tokens, gate (N) | up (N)];
// gate[i] = silu(gate[i]) * up[i].
@group(0) @binding(0) var<storage, read_write> gu: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let i = wid.y * 256u + tid;
  if (i < N) {
    let row = wid.x * 2u * N;
    let g = gu[row + i];
    gu[row + i] = g / (1.0 + exp(-g)) * gu[row + N + i];
  }
}
