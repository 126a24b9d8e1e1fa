// SwiGLU, in place, one row per token of the pass (workgroup x): gu [tokens, gate (N) | up (N)];
// gate[i] = silu(gate[i]) * up[i].
// SLOTS (mixture of experts): a token has SLOTS such rows, one per chosen expert (gu [tokens, SLOTS, 2N]).
// ROUTE_SCALE (llama4, whose routing weight w scales an expert's input): gate and up are first multiplied
// by the row's w from route [tokens, SLOTS]; the projections are linear, so W (w h) = w (W h).
#if ROUTE_SCALE
#use route
@group(0) @binding(1) var<storage, read> route: array<Route>;
#endif
@group(0) @binding(0) var<storage, read_write> gu: array<f32>;

#if SLOTS
const ROWS = SLOTS;
#else
const ROWS = 1u;
#endif

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let i = wid.y * 256u + tid;
  if (i < ROWS * N) {
    let r = wid.x * ROWS + i / N;
    let at = r * 2u * N + i % N;
    var g = gu[at];
    var u = gu[at + N];
#if ROUTE_SCALE
    let w = route[r].weight;
    g *= w;
    u *= w;
#endif
    gu[at] = g / (1.0 + exp(-g)) * u;
  }
}
