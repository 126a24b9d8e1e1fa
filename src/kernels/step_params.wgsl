// Per-pass metadata, written by the runtime before each pass (runtime/step_params.hpp mirrors it). A pass
// holds up to max_batch tokens, each of any slot (sequence) and position; the tokens whose logits are
// wanted are the pass's rows. Kernels pull these declarations in with `#use step_params` and bind the
// tokens (array<Token>) or the rows (array<Row>) they need.
struct Token {
  slot: u32,   // KV-cache slot
  pos: u32,    // position in the slot
  id: u32,     // token id, unless flags has FROM_SAMPLER
  flags: u32,
}
const FROM_SAMPLER = 1u;  // the id is the one the sampler last left for the slot

struct Row {
  token: u32,           // index of the token in the pass
  slot: u32,
  seed: u32,            // sampling RNG seed
  sample_index: u32,    // how many tokens this sequence has sampled: the RNG stream position
  temperature: f32,     // <= 0: greedy
  top_k: u32,           // 0: off
  top_p: f32,           // 1: off
  min_p: f32,           // 0: off
  repeat_penalty: f32,  // 1: off
  penalty_last_n: u32,
  presence_penalty: f32,
  frequency_penalty: f32,
}
