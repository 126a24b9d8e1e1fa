// SwiGLU, in place: gate[i] = silu(gate[i]) * up[i] over N elements.
@group(0) @binding(0) var<storage, read_write> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < N) {
    let g = gate[i];
    gate[i] = g / (1.0 + exp(-g)) * up[i];
  }
}
