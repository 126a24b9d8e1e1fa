// Text <-> token ids for the two vocabulary models of GGUF files (vocab.hpp):
//  - SentencePiece BPE (tokenizer.ggml.model = "llama"), matching llama.cpp's llm_tokenizer_spm: the text
//    is split into UTF-8 characters, spaces become U+2581 "▁", and adjacent symbols are merged
//    highest-score first (ties: leftmost) while the merged text is a vocabulary entry; what is left
//    unmatched falls back to byte tokens <0xXX>.
//  - byte-level BPE (tokenizer.ggml.model = "gpt2", or a Hugging Face tokenizer.json), matching Hugging
//    Face tokenizers and llama.cpp's llm_tokenizer_bpe: the pre-tokenizer cuts the text into pieces
//    (pre_tokenizer.hpp); each piece starts as one symbol per byte (its byte-level character, see
//    byte_level.hpp) and adjacent symbols are merged by the merge list, earliest merge first (ties:
//    leftmost). With ignore_merges a piece that is a token as a whole is taken as it is. A byte that no
//    token spells becomes the unknown token, or without one is left out (as Hugging Face and llama.cpp do).
// Both first cut out special tokens (control, user-defined) as llama.cpp's tokenizer_st_partition does.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "tokenizer/pre_tokenizer.hpp"
#include "tokenizer/vocab.hpp"

namespace wgllm::tokenizer {

class Tokenizer {
 public:
  // Throws Error(BadInput) when the vocabulary is inconsistent (check_vocab) or a pre-tokenizer
  // expression is not accepted.
  explicit Tokenizer(Vocab vocab);
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::GgufFile& file) {
    return std::make_unique<Tokenizer>(vocab_from_gguf(file));
  }
  // A Hugging Face tokenizer.json (or the directory holding it), see vocab_from_hf_json.
  static std::unique_ptr<Tokenizer> from_hf_json(const std::string& path) {
    return std::make_unique<Tokenizer>(vocab_from_hf_json(path));
  }
  // from_hf_json for a path ending in ".json" or naming a directory, from_gguf otherwise: what
  // `wgllm tokenize -m MODEL.gguf|tokenizer.json` takes.
  static std::unique_ptr<Tokenizer> from_file(const std::string& path);

  // add_bos: add the tokens the vocabulary asks for (BOS if add_bos, EOS if add_eos), as llama.cpp's
  // add_special does. User-defined token texts in `text` always become their token; control token texts
  // (e.g. "<s>", "<|eot_id|>") only with parse_special, so user text cannot inject control tokens by
  // default. SentencePiece: as in llama.cpp, "▁" is put before every text fragment that starts the text
  // or follows a special token, when the vocabulary's add_space_prefix says so. Any bytes are accepted.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const;

  // A byte range [begin, end) of a text.
  struct Range {
    size_t begin = 0, end = 0;
  };
  // encode() for a prompt assembled from a chat template's text and what users wrote (conversation.hpp):
  // control tokens are recognised as with parse_special, except where their text overlaps one of the
  // `plain` ranges (sorted, disjoint), so that no text a user wrote becomes a control token. `continues`:
  // the text continues one already encoded, so SentencePiece puts no "▁" before its start. Adds no BOS/EOS.
  std::vector<int32_t> encode_prompt(std::string_view text, std::span<const Range> plain,
                                     bool continues) const;

  // The bytes of one token: SentencePiece "▁" -> ' ', byte tokens <0xAB> -> that byte, byte-level BPE
  // texts -> the bytes they spell, user-defined tokens verbatim, control and unknown tokens -> "" unless
  // `special` (then their text), unused tokens -> "". Throws Error(BadInput) for an id outside the
  // vocabulary.
  std::string piece(int32_t id, bool special = false) const;

  // The concatenated pieces. With add_space_prefix, the space that encode() put in front of the text is
  // removed: one leading ' ' of the first non-empty piece, as SentencePiece decodes, so that
  // decode(encode(text, add_bos)) == text with or without BOS. (llama.cpp's llama_detokenize keeps it
  // when a BOS comes first.) Byte-level BPE decodes exactly, without Hugging Face's optional
  // clean_up_tokenization_spaces. The bytes may be invalid UTF-8; StreamDecoder is for display.
  std::string decode(std::span<const int32_t> ids, bool special = false) const;

  const Vocab& vocab() const { return vocab_; }
  int32_t n_vocab() const { return static_cast<int32_t>(vocab_.tokens.size()); }
  bool is_eog(int32_t id) const;

 private:
  struct Fragment {
    std::string_view text;  // raw text, when token < 0
    int32_t token = -1;
  };
  std::vector<Fragment> split_special(std::string_view text, bool parse_special,
                                      std::span<const Range> plain = {}) const;
  void encode_fragments(std::string_view text, bool parse_special, std::span<const Range> plain,
                        bool after_special, std::vector<int32_t>& out) const;
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view piece, std::vector<int32_t>& out) const;
  void encode_byte(uint8_t byte, std::vector<int32_t>& out) const;
  int32_t find(std::string_view text) const;

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  Vocab vocab_;
  // Texts that merging and user text may produce, mapped to their token. SentencePiece: every token but
  // control, unknown and byte tokens, which only come from their ids (SentencePiece's rule). Byte-level
  // BPE: the bytes that each normal token spells.
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> text_to_id_;
  // Per byte: SentencePiece's byte fallback (<0xXX>, else a token whose text is that single byte);
  // byte-level BPE's starting symbol (the token spelling that byte). -1 where there is none.
  int32_t byte_to_id_[256];
  // Control, unknown and user-defined tokens, longest text first (llama.cpp's special-token cache).
  std::vector<int32_t> special_by_length_;

  // Byte-level BPE only.
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  // The merges by pair of tokens: an open-addressing hash table, the hot lookup of BPE (std::unordered_map
  // took a quarter of the encoding time).
  class MergeTable {
   public:
    struct Entry {
      uint64_t key = kEmpty;  // left << 32 | right
      int32_t rank = 0;       // index in vocab_.merges: lower merges first
      int32_t result = 0;     // the merged token
    };
    explicit MergeTable(std::span<const Merge> merges = {});
    const Entry* find(int32_t left, int32_t right) const;

   private:
    static constexpr uint64_t kEmpty = ~uint64_t{0};  // no pair of token ids (< 2^31) has this key
    static uint64_t key(int32_t left, int32_t right) {
      return uint64_t(uint32_t(left)) << 32 | uint32_t(right);
    }
    size_t slot(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> shift_); }
    std::vector<Entry> slots_;  // [power of two >= 2 * n_merges]
    int shift_ = 63;
  };
  MergeTable merges_;
  std::vector<std::string> bpe_bytes_;  // [n_vocab] what each normal token spells
};

// Turns generated ids into text that is safe to print piece by piece: bytes of a multi-byte character
// (split over byte tokens or byte-level BPE tokens) are held back until the character is complete, and
// ill-formed bytes become U+FFFD exactly as utf8::sanitize would replace them in the whole text. Control
// tokens print nothing. With strip_leading_space, on a vocabulary with add_space_prefix (SentencePiece),
// the leading space of the first non-empty piece is removed (llama.cpp and llama2.c strip it for the first
// token after BOS when no text came before); byte-level BPE never adds that space, so nothing is removed
// there. The concatenated output equals utf8::sanitize(tokenizer.decode(ids)) when strip_leading_space is
// true or the vocabulary has no add_space_prefix.
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
