// Byte-level BPE pre-tokenization: before merging, the text between special tokens is cut into pieces by
// a list of regular expressions applied in turn, as Hugging Face's Sequence of Split pre-tokenizers
// (behavior "Isolated") and llama.cpp's unicode_regex_split do: each expression cuts every piece the
// previous ones left into its matches and the text between them. BPE then merges within pieces only.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.hpp"

namespace wgllm::tokenizer {

class PreTokenizer {
 public:
  // Throws Error(BadInput) when an expression is not accepted (regex.hpp).
  explicit PreTokenizer(std::span<const std::string> regexes);

  // Appends the pieces of `text`: non-empty, in order, together exactly `text`. Any bytes are accepted:
  // the expressions see each ill-formed UTF-8 sequence (utf8::decode's maximal subparts) as one U+FFFD,
  // but the piece keeps the original bytes, so no input is lost.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  std::vector<Regex> stages_;
};

// The pre-tokenizer that a GGUF file's tokenizer.ggml.pre names, with the settings llama.cpp's
// llama_vocab::load ties to that name.
struct PreTokenizerConfig {
  std::vector<std::string> regexes;
  bool ignore_merges = false;  // a piece that is a token as a whole is that token (Llama 3)
  bool add_bos = false;        // the default of tokenizer.ggml.add_bos_token
};

// nullopt when the name is not one of supported_pre_tokenizers().
std::optional<PreTokenizerConfig> pre_tokenizer_config(std::string_view name);
std::string supported_pre_tokenizers();  // "default, llama-bpe, ..." for error messages

// The expression of GPT-2's byte-level pre-tokenizer (Hugging Face ByteLevel with use_regex).
extern const std::string_view kGpt2Regex;

}  // namespace wgllm::tokenizer
