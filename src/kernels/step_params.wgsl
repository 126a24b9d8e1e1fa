// Per-step parameters, one uniform buffer written once per step (runtime/step_params.hpp mirrors it).
// Kernels pull this in with `#use step_params`.
struct Step {
  pos: u32,             // position of the token being processed
  n_ctx: u32,           // KV cache capacity
  seed: u32,            // sampling RNG seed
  sample_index: u32,    // how many tokens this sequence has sampled: the RNG stream position
  temperature: f32,     // <= 0: greedy
  top_k: u32,           // 0: off
  top_p: f32,           // 1: off
  min_p: f32,           // 0: off
  repeat_penalty: f32,  // 1: off
  penalty_last_n: u32,
  pad0: u32,
  pad1: u32,
}
