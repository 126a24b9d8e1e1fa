// A tokenizer vocabulary as GGUF stores it (the tokenizer.ggml.* keys), and its checks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_file.hpp"

namespace wgllm::tokenizer {

// GGUF tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

struct Vocab {
  std::vector<std::string> tokens;  // [n_vocab] token texts, spaces written as U+2581 "▁"
  std::vector<float> scores;        // [n_vocab] merge priority: higher merges first
  std::vector<TokenType> types;     // [n_vocab]
  int32_t bos = -1, eos = -1, eot = -1, unk = -1, pad = -1;  // -1: none
  bool add_bos = true, add_eos = false, add_space_prefix = true;
  std::vector<int32_t> eog_ids;  // end-of-generation: eos, eot, and tokens like <|eot_id|>; ascending
};

// Reads the tokenizer.ggml.* keys. Throws Error(BadInput) naming the file and the key when one is missing,
// malformed or inconsistent (see check_vocab), or when tokenizer.ggml.model is not a supported model.
// Like llama.cpp it gives the "llama" model BOS 1, EOS 2 and UNK 0 when their keys are absent, treats an
// id of -1 (0xFFFFFFFF) as "none", renames empty token texts to "[EMPTY_<id>]", and makes end-of-turn
// tokens found by text (<|end|>, <|eot_id|>, <|im_end|>, ...) control tokens that end generation.
Vocab vocab_from_gguf(const gguf::GgufFile& file);

// Throws Error(BadInput) naming the GGUF key that a Vocab field mirrors when: array lengths differ, the
// vocabulary is empty, a text is empty or repeated, a type is not 0..6, a byte token is not "<0xAB>",
// a special or end-of-generation id is out of range, eog_ids is unsorted, or add_bos/add_eos is set
// without a BOS/EOS id.
void check_vocab(const Vocab& vocab);

// The byte that a byte token's text "<0xAB>" stands for (either case of hex digit); nullopt otherwise.
std::optional<uint8_t> byte_token_value(std::string_view text);

}  // namespace wgllm::tokenizer
