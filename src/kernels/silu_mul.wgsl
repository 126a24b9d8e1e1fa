// SwiGLU, in place, one row per token of the pass (workgroup x): gu [tokens, gate (N) | up (N)];
// gate[i] = silu(gate[i]) * up[i].
// SLOTS (mixture of experts): a token has SLOTS such rows, one per chosen expert (gu [tokens, SLOTS, 2N]).
// ROUTE_SCALE (llama4, whose routing weight w scales an expert's input): gate and up are first multiplied
// by the row's w from route [tokens, SLOTS]; the projections are linear, so W (w h) = w (W h).
// QUANT_OUT (the int8 path's down projection): the results are not written back but quantized per
// 32-element chunk by act_quant.wgsl's steps into xq, xs as quantize_act.wgsl lays them out ([tokens,
// N / 32] chunks), 8 invocations per chunk, 32 chunks per workgroup (y), for matvec.wgsl's PREQUANT: the
// down GEMV's input costs no quantize dispatch of its own, and every pass width runs this same code
// (batch invariance).
#use silu
#if ROUTE_SCALE
#use route
@group(0) @binding(1) var<storage, read> route: array<Route>;
#endif
#if QUANT_OUT
#use act_quant
@group(0) @binding(0) var<storage, read_write> gu: array<vec4<f32>>;  // read only: vectors of 4 elements
@group(0) @binding(1) var<storage, read_write> xq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> xs: array<vec4<f32>>;
#else
@group(0) @binding(0) var<storage, read_write> gu: array<f32>;
#endif

#if SLOTS
const ROWS = SLOTS;
#else
const ROWS = 1u;
#endif

#if QUANT_OUT
const CHUNKS = N / 32u;
const PER_WG = 32u;  // chunks per workgroup: 8 invocations each, one vector of 4 elements apiece
const ACT_WG = 256u;
const ACT_VECS = 1u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let c = wid.y * PER_WG + tid / 8u;
  let k = tid % 8u;  // the chunk's elements 4k..4k+3
  var h = vec4<f32>(0.0);
  if (c < CHUNKS) {
    let at = (wid.x * 2u * N + 32u * c + 4u * k) / 4u;
    let g = gu[at];
    let u = gu[at + N / 4u];
    for (var e = 0u; e < 4u; e++) {
      h[e] = silu_times(g[e], u[e]);
    }
  }
  let part = quantize_part(array<vec4<f32>, 1>(h), tid);
  if (c < CHUNKS) {
    let o = wid.x * CHUNKS + c;
    xq[2u * o + k / 4u][k % 4u] = part.words[0];
    if (k == 0u) {
      xs[o] = part.s;
    }
  }
}
#else
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
    gu[at] = silu_times(g, u);
  }
}
#endif
