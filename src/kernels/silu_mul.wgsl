// SwiGLU, in place: gu = [gate (N) | up (N)]; gate[i] = silu(gate[i]) * up[i].
@group(0) @binding(0) var<storage, read_write> gu: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < N) {
    let g = gu[i];
    gu[i] = g / (1.0 + exp(-g)) * gu[N + i];
  }
}
