#include "tokenizer/pre_tokenizer.hpp"

#include <array>

#include "core/utf8.hpp"

namespace wgllm::tokenizer {

// The expressions below are the published definitions: the "Split" patterns of each model's
// tokenizer.json, as llama.cpp's llm_tokenizer_bpe lists them per pre-type. Where llama.cpp rewrote a
// pattern for std::regex (no (?i), no \p{Lu}), the original is used: this matcher has both.
const std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

// Llama 3 (tiktoken cl100k); Qwen 2 is the same with single digits.
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Llama 4 (tiktoken o200k, llama.cpp's GPT4O pre-type): words split before capitals, contractions kept
// on the word. llama.cpp itself runs an approximation of it, since std::regex lacks \p{Lu}.
constexpr std::string_view kLlama4Regex =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// DeepSeek's Chinese ranges: CJK ideographs, U+0800..U+4E00, Hangul.
constexpr std::string_view kDeepSeekCjkRegex = "[一-龥ࠀ-一가-퟿]+";

struct NamedConfig {
  std::vector<std::string_view> names;  // what tokenizer.ggml.pre may hold
  std::vector<std::string_view> regexes;
  bool ignore_merges = false;
  bool add_bos = false;
};

const std::vector<NamedConfig>& configs() {
  static const std::vector<NamedConfig> table = {
      // llama.cpp's fallback for files without tokenizer.ggml.pre.
      {{"default"}, {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Regex, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
      {{"llama-bpe", "llama3", "llama-v3"}, {kLlama3Regex}, true, true},
      {{"dbrx", "smaug-bpe"}, {kLlama3Regex}},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2"}, {kQwen2Regex}},
      {{"llama4", "gpt-4o"}, {kLlama4Regex}},
      {{"gpt-2", "mpt", "olmo", "phi-2"}, {kGpt2Regex}},
      {{"starcoder", "refact", "command-r", "smollm", "codeshell"}, {R"(\p{N})", kGpt2Regex}},
      {{"falcon"}, {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2Regex, "[0-9][0-9][0-9]"}},
      // DeepSeek LLM's letter class is written out as in its tokenizer.json, but for six code points that
      // Unicode normalization would replace (singleton decompositions, e.g. U+2126 OHM SIGN -> U+03A9): they
      // are escaped, so that no editor or tool can change them unseen.
      {{"deepseek-llm"},
       {"[\r\n]",
        R"(\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\x{1F7D}ᾀ-ᾴᾶ-ᾼ\x{1FBE}ῂ-ῄῆ-ῌῐ-\x{1FD3}ῖ-\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\x{2126}ℨ\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+)",
        R"(\s?[!-/:-~！-／：-～‘-‟　-。]+)", R"(\s+$)", kDeepSeekCjkRegex, R"(\p{N}+)"}},
      {{"deepseek-coder"}, {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kDeepSeekCjkRegex, R"(\p{N})"}},
  };
  return table;
}

}  // namespace

std::optional<PreTokenizerConfig> pre_tokenizer_config(std::string_view name) {
  for (const NamedConfig& c : configs()) {
    for (std::string_view n : c.names) {
      if (n != name) continue;
      return PreTokenizerConfig{{c.regexes.begin(), c.regexes.end()}, c.ignore_merges, c.add_bos};
    }
  }
  return std::nullopt;
}

std::string supported_pre_tokenizers() {
  std::string out;
  for (const NamedConfig& c : configs()) {
    for (std::string_view n : c.names) {
      if (!out.empty()) out += ", ";
      out += n;
    }
  }
  return out;
}

PreTokenizer::PreTokenizer(std::span<const std::string> regexes) {
  stages_.reserve(regexes.size());
  for (const std::string& r : regexes) stages_.emplace_back(r);
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  if (text.empty()) return;
  std::vector<PackedChar> chars;  // [n] the text's code points
  std::vector<size_t> offsets;    // [n + 1] byte offset of each, then text.size()
  chars.reserve(text.size());
  offsets.reserve(text.size() + 1);
  for (size_t pos = 0; pos < text.size();) {
    const utf8::Decoded d = utf8::decode(text.substr(pos));
    chars.push_back(pack_char(d.status == utf8::Status::Valid ? d.cp : utf8::kReplacement));
    offsets.push_back(pos);
    pos += d.length;
  }
  offsets.push_back(text.size());

  using Range = std::array<size_t, 2>;  // [begin, end) in chars
  std::vector<Range> current = {{0, chars.size()}}, next;
  for (const Regex& stage : stages_) {
    next.clear();
    for (const auto [begin, end] : current) {
      const std::span<const PackedChar> piece(chars.data() + begin, end - begin);
      Regex::Search search(stage, piece);
      size_t unmatched = 0;  // start of the text since the last match
      for (size_t pos = 0; pos < piece.size();) {
        const ptrdiff_t match_end = search.match_at(pos);
        if (match_end <= static_cast<ptrdiff_t>(pos)) {  // none, or empty (which splits nothing)
          ++pos;
          continue;
        }
        if (unmatched < pos) next.push_back({begin + unmatched, begin + pos});
        next.push_back({begin + pos, begin + static_cast<size_t>(match_end)});
        pos = unmatched = static_cast<size_t>(match_end);
      }
      if (unmatched < piece.size()) next.push_back({begin + unmatched, end});
    }
    current.swap(next);
  }
  for (const auto [begin, end] : current)
    pieces.push_back(text.substr(offsets[begin], offsets[end] - offsets[begin]));
}

}  // namespace wgllm::tokenizer
