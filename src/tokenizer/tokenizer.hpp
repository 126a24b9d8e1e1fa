// SentencePiece-BPE tokenizer (GGUF tokenizer.ggml.model = "llama"), matching llama.cpp's
// llm_tokenizer_spm: the text is split into UTF-8 characters, spaces become U+2581 "▁", and adjacent
// symbols are merged highest-score first (ties: leftmost) while the merged text is a vocabulary entry;
// what is left unmatched falls back to byte tokens <0xXX>.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "tokenizer/vocab.hpp"

namespace wgllm::tokenizer {

class Tokenizer {
 public:
  // Throws Error(BadInput) when the vocabulary is inconsistent (check_vocab).
  explicit Tokenizer(Vocab vocab);
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::GgufFile& file) {
    return std::make_unique<Tokenizer>(vocab_from_gguf(file));
  }

  // add_bos: add the tokens the vocabulary asks for (BOS if add_bos, EOS if add_eos), as llama.cpp's
  // add_special does. User-defined token texts in `text` always become their token; control token texts
  // (e.g. "<s>") only with parse_special, so user text cannot inject control tokens by default. As in
  // llama.cpp, "▁" is put before every text fragment that starts the text or follows a special token,
  // when the vocabulary's add_space_prefix says so. Any bytes are accepted.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const;

  // The bytes of one token: "▁" -> ' ', byte tokens <0xAB> -> that byte, user-defined tokens verbatim,
  // control and unknown tokens -> "" unless `special` (then their text), unused tokens -> "".
  // Throws Error(BadInput) for an id outside the vocabulary.
  std::string piece(int32_t id, bool special = false) const;

  // The concatenated pieces. With add_space_prefix, the space that encode() put in front of the text is
  // removed: one leading ' ' of the first non-empty piece, as SentencePiece decodes, so that
  // decode(encode(text, add_bos)) == text with or without BOS. (llama.cpp's llama_detokenize keeps it
  // when a BOS comes first.) The bytes may be invalid UTF-8; StreamDecoder is for display.
  std::string decode(std::span<const int32_t> ids, bool special = false) const;

  const Vocab& vocab() const { return vocab_; }
  int32_t n_vocab() const { return static_cast<int32_t>(vocab_.tokens.size()); }
  bool is_eog(int32_t id) const;

 private:
  struct Fragment {
    std::string_view text;  // raw text, when token < 0
    int32_t token = -1;
  };
  std::vector<Fragment> split_special(std::string_view text, bool parse_special) const;
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void encode_byte(uint8_t byte, std::vector<int32_t>& out) const;
  int32_t find(std::string_view text) const;

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  Vocab vocab_;
  // Texts that the merge and user text may produce: every token but control, unknown and byte tokens,
  // which only come from their ids (SentencePiece's rule).
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> text_to_id_;
  // Byte fallback for each byte: <0xXX>, else a token whose text is that single byte, else -1.
  int32_t byte_to_id_[256];
  // Control, unknown and user-defined tokens, longest text first (llama.cpp's special-token cache).
  std::vector<int32_t> special_by_length_;
};

// Turns generated ids into text that is safe to print piece by piece: bytes of a multi-byte character
// (e.g. from byte tokens) are held back until the character is complete, and ill-formed bytes become
// U+FFFD exactly as utf8::sanitize would replace them in the whole text. Control tokens print nothing.
// With strip_leading_space, the leading space of the first non-empty piece is removed (SentencePiece's
// add_space_prefix; llama.cpp and llama2.c strip it for the first token after BOS when no text came
// before), so the concatenated output equals utf8::sanitize(tokenizer.decode(ids)) when
// strip_leading_space == vocab().add_space_prefix.
class StreamDecoder {
 public:
  StreamDecoder(const Tokenizer& tokenizer, bool strip_leading_space);
  std::string push(int32_t id);
  // The held-back bytes of an unfinished character, as U+FFFD; call at the end of the text.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool strip_pending_;
  std::string held_;  // a valid but incomplete UTF-8 sequence, at most 3 bytes
};

}  // namespace wgllm::tokenizer
