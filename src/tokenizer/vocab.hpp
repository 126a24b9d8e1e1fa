// A tokenizer vocabulary as GGUF stores it (the tokenizer.ggml.* keys), its checks, and where it comes
// from: a GGUF file, or a Hugging Face tokenizer.json (hf_json.cpp).
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

enum class Model {
  Spm,  // tokenizer.ggml.model "llama": SentencePiece BPE over characters, scores rank the merges
  Bpe,  // tokenizer.ggml.model "gpt2": byte-level BPE, a merge list ranks the merges
};

// Byte-level BPE: merging tokens[left] and tokens[right] gives tokens[result].
struct Merge {
  int32_t left, right, result;
  bool operator==(const Merge&) const = default;
};

struct Vocab {
  Model model = Model::Spm;
  // [n_vocab] token texts. Spm: spaces written as U+2581 "▁". Bpe: normal tokens in GPT-2's byte-level
  // alphabet (each byte one character, e.g. ' ' as U+0120 "Ġ"), other tokens as plain text.
  std::vector<std::string> tokens;
  std::vector<float> scores;     // [n_vocab] Spm: merge priority, higher merges first
  std::vector<TokenType> types;  // [n_vocab]
  std::vector<Merge> merges;     // [n_merges] Bpe: in priority order, first merges first
  // Bpe: the pre-tokenizer's expressions (pre_tokenizer.hpp), and where they came from: the name in
  // tokenizer.ggml.pre, or "tokenizer.json".
  std::vector<std::string> pre_regexes;
  std::string pre;
  bool ignore_merges = false;  // Bpe: a piece that is a token as a whole becomes that token unmerged
  int32_t bos = -1, eos = -1, eot = -1, unk = -1, pad = -1;  // -1: none
  bool add_bos = true, add_eos = false, add_space_prefix = true;
  std::vector<int32_t> eog_ids;  // end-of-generation: eos, eot, and tokens like <|eot_id|>; ascending
};

// Reads the tokenizer.ggml.* keys. Throws Error(BadInput) naming the file and the key when one is missing,
// malformed or inconsistent (see check_vocab), or when tokenizer.ggml.model or tokenizer.ggml.pre is not
// supported (the message lists what is). Like llama.cpp it gives the "llama" model BOS 1, EOS 2 and UNK 0
// when their keys are absent (the "gpt2" model gets none), treats an id of -1 (0xFFFFFFFF) as "none",
// renames empty token texts to "[EMPTY_<id>]", uses the pre-tokenizer "default" when tokenizer.ggml.pre
// is absent, and makes end-of-turn tokens found by text (<|end|>, <|eot_id|>, <|im_end|>, ...) control
// tokens that end generation.
Vocab vocab_from_gguf(const gguf::GgufFile& file);

// Reads a Hugging Face tokenizer.json of a byte-level BPE model (Llama 3, Qwen 2/2.5/3, GPT-2, ...) and,
// when it exists, the tokenizer_config.json beside it; `path` is the tokenizer.json or its directory.
// model.vocab and model.merges give the tokens and merges; added_tokens the special tokens (control when
// "special", user-defined otherwise); the pre_tokenizer (Split, ByteLevel, Digits, Punctuation, Sequence)
// becomes pre_regexes. BOS and EOS come from tokenizer_config.json's bos_token and eos_token; add_bos and
// add_eos from its add_bos_token and add_eos_token, else from whether the post_processor's template puts
// that token first or last. End-of-turn tokens are found by text as for GGUF. The NFC normalizer (Qwen)
// is accepted but not applied, as llama.cpp does not apply it either. Throws Error(BadInput) naming the
// file and the JSON field for anything malformed or unsupported.
Vocab vocab_from_hf_json(const std::string& path);

// Throws Error(BadInput) naming the GGUF key that a Vocab field mirrors when: array lengths differ, the
// vocabulary is empty, a text is empty or repeated, a type is not 0..6, a byte token is not "<0xAB>",
// a special or end-of-generation id is out of range, eog_ids is unsorted, add_bos/add_eos is set
// without a BOS/EOS id, or a merge's ids are out of range or its result is not the concatenation.
void check_vocab(const Vocab& vocab);

// Makes the end-of-turn tokens that llama.cpp finds by text control tokens, sets eot to the first of
// them present when it is -1, and fills eog_ids with them, eos, eot and `eom` (-1: none). Both loaders
// end with it.
void find_end_of_generation(Vocab& vocab, int32_t eom);

// The byte that a byte token's text "<0xAB>" stands for (either case of hex digit); nullopt otherwise.
std::optional<uint8_t> byte_token_value(std::string_view text);

}  // namespace wgllm::tokenizer
