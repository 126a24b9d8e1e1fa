// Random-weight llama models of published shapes, generated without a download so that anyone can
// benchmark (`wgllm bench --synthetic llama-3-8b:q4_0`) and, written out with --write-gguf, run another
// engine on the very same weights, or serve them (`wgllm serve`, `run`, `chat`: they carry a small tokenizer
// and a chat template). Weights are random but non-zero with realistic magnitudes (std ~0.02): quantized
// types get random quants and scales directly, so generating an 8B model costs seconds, not a quantization.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf_writer.hpp"

namespace wgllm::model {

struct SyntheticShape {
  std::string name;
  uint32_t dim, n_layers, n_heads, n_kv_heads, ffn_dim, n_vocab;
  bool tied_output;
  float rope_freq_base;
};

// Known shapes: llama-3.2-1b, llama-3.2-3b, llama-3-8b, llama-2-7b, tiny (CI smoke test).
const std::vector<SyntheticShape>& synthetic_shapes();
// "SHAPE:TYPE" -> the shape and weight type; Error(BadInput) listing what is known otherwise.
std::pair<SyntheticShape, gguf::TensorType> parse_synthetic(const std::string& spec);

// The whole model as a GGUF writer, with add_synthetic_tokenizer's vocabulary. The LM head's rows of its
// control tokens (with a tied head, also their embeddings) are zero, so their logits (0) stay below the
// largest of the random others: greedy generation never ends early at an end-of-generation token, and a
// served request runs to max_tokens as a benchmark wants.
gguf::GgufWriter synthetic_model(const SyntheticShape& shape, gguf::TensorType type, uint64_t seed);

// A byte-level BPE vocabulary of n_vocab tokens (at least kSyntheticVocabUsed) and the ChatML template:
// tokenizer.ggml.model "gpt2" with pre-tokenizer "llama-bpe" (Llama 3's); tokens 0..255 are the bytes
// 0..255 spelled in GPT-2's byte-level alphabet, with no merges, so every byte of a text is one token and
// any text round-trips; then the control tokens <|begin_of_text|> (BOS, added), <|end_of_text|> (EOS),
// <|im_start|> and <|im_end|> (end of turn); the rest are unused tokens "[PAD<id>]", which decode to nothing.
void add_synthetic_tokenizer(gguf::GgufWriter& w, uint32_t n_vocab);
constexpr uint32_t kSyntheticVocabUsed = 260;  // the bytes and the four control tokens

}  // namespace wgllm::model
