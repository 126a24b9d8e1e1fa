#include "tokenizer/vocab.hpp"

#include <algorithm>
#include <array>
#include <climits>
#include <unordered_map>

#include "core/error.hpp"
#include "core/utf8.hpp"
#include "tokenizer/pre_tokenizer.hpp"

namespace wgllm::tokenizer {

namespace {

const std::string kTokensKey = "tokenizer.ggml.tokens";
const std::string kScoresKey = "tokenizer.ggml.scores";
const std::string kTypesKey = "tokenizer.ggml.token_type";
const std::string kMergesKey = "tokenizer.ggml.merges";
const std::string kPreKey = "tokenizer.ggml.pre";

// End-of-turn tokens found by text, as llama.cpp finds them for files whose metadata doesn't name them.
// The first one present becomes EOT. All of kEogNames end generation.
constexpr std::array<std::string_view, 7> kEotNames = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
    "<\xEF\xBD\x9C"
    "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",  // DeepSeek's <｜end▁of▁sentence｜>
};
constexpr std::array<std::string_view, 8> kEogNames = {
    "<|eot_id|>",    "<|im_end|>", "<|end|>",         "<end_of_turn>",
    "<|endoftext|>", "<|eom_id|>", "<|end_of_text|>", "<EOT>",
};

// Token texts are arbitrary bytes; keep error messages printable.
std::string quoted(std::string_view s) {
  return "'" + utf8::sanitize(s) + "'";
}

std::string count_mismatch(const std::string& key, size_t count, size_t n_tokens) {
  return key + " has " + std::to_string(count) + " entries but " + kTokensKey + " has " +
         std::to_string(n_tokens);
}

std::string bad_type(size_t index, int64_t type) {
  return kTypesKey + "[" + std::to_string(index) + "] = " + std::to_string(type) +
         " is not a token type (0..6)";
}

std::string out_of_range(const std::string& what, int64_t id, size_t n_tokens) {
  return what + " = " + std::to_string(id) + " is out of range (the vocabulary has " +
         std::to_string(n_tokens) + " tokens)";
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::optional<uint8_t> byte_token_value(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return std::nullopt;
  const int hi = hex_digit(text[3]), lo = hex_digit(text[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi << 4 | lo);
}

void check_vocab(const Vocab& v) {
  const size_t n = v.tokens.size();
  if (n == 0) fail_input(kTokensKey + " is empty");
  if (n > static_cast<size_t>(INT32_MAX)) fail_input(kTokensKey + " has more than 2^31-1 entries");
  if (v.scores.size() != n) fail_input(count_mismatch(kScoresKey, v.scores.size(), n));
  if (v.types.size() != n) fail_input(count_mismatch(kTypesKey, v.types.size(), n));

  std::unordered_map<std::string_view, size_t> seen;
  seen.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = v.tokens[i];
    const auto at = [&] { return kTokensKey + "[" + std::to_string(i) + "]"; };
    if (t.empty()) fail_input(at() + " is empty");
    if (auto [it, fresh] = seen.emplace(t, i); !fresh) {
      fail_input(at() + " = " + quoted(t) + " repeats " + kTokensKey + "[" + std::to_string(it->second) +
                 "]");
    }
    const auto type = static_cast<int32_t>(v.types[i]);
    if (type < 0 || type > static_cast<int32_t>(TokenType::Byte)) fail_input(bad_type(i, type));
    if (v.types[i] == TokenType::Byte && !byte_token_value(t)) {
      fail_input(at() + " = " + quoted(t) + " has token type 6 (byte) but is not of the form <0xAB>");
    }
  }

  const auto check_id = [&](int32_t id, const std::string& what) {
    if (id < -1 || id >= static_cast<int64_t>(n)) fail_input(out_of_range(what, id, n));
  };
  check_id(v.bos, "tokenizer.ggml.bos_token_id");
  check_id(v.eos, "tokenizer.ggml.eos_token_id");
  check_id(v.eot, "tokenizer.ggml.eot_token_id");
  check_id(v.unk, "tokenizer.ggml.unknown_token_id");
  check_id(v.pad, "tokenizer.ggml.padding_token_id");
  for (int32_t id : v.eog_ids) {
    if (id < 0 || id >= static_cast<int64_t>(n)) fail_input(out_of_range("end-of-generation id", id, n));
  }
  if (!std::is_sorted(v.eog_ids.begin(), v.eog_ids.end()))
    fail_input("end-of-generation ids are not ascending");
  if (v.add_bos && v.bos < 0) fail_input("tokenizer.ggml.add_bos_token is true but there is no BOS token id");
  if (v.add_eos && v.eos < 0) fail_input("tokenizer.ggml.add_eos_token is true but there is no EOS token id");

  for (size_t i = 0; i < v.merges.size(); ++i) {
    const Merge& m = v.merges[i];
    const auto at = [&] { return kMergesKey + "[" + std::to_string(i) + "]"; };
    for (int32_t id : {m.left, m.right, m.result}) {
      if (id < 0 || id >= static_cast<int64_t>(n)) fail_input(out_of_range(at() + " token id", id, n));
    }
    const std::string_view result = v.tokens[m.result], left = v.tokens[m.left], right = v.tokens[m.right];
    if (result.size() != left.size() + right.size() || !result.starts_with(left) ||
        !result.ends_with(right)) {
      fail_input(at() + ": " + quoted(v.tokens[m.left]) + " + " + quoted(v.tokens[m.right]) + " is not " +
                 quoted(v.tokens[m.result]));
    }
  }
}

void find_end_of_generation(Vocab& v, int32_t eom) {
  std::unordered_map<std::string_view, int32_t> named;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const std::string_view t = v.tokens[i];
    if (std::find(kEotNames.begin(), kEotNames.end(), t) != kEotNames.end() ||
        std::find(kEogNames.begin(), kEogNames.end(), t) != kEogNames.end()) {
      named.emplace(t, static_cast<int32_t>(i));
    }
  }
  // A token that ends a turn must never come out of plain text, whatever type the converter gave it.
  if (v.eot < 0) {
    for (std::string_view name : kEotNames) {
      if (auto it = named.find(name); it != named.end()) {
        v.eot = it->second;
        v.types[v.eot] = TokenType::Control;
        break;
      }
    }
  }
  v.eog_ids.clear();
  for (std::string_view name : kEogNames) {
    if (auto it = named.find(name); it != named.end()) {
      v.eog_ids.push_back(it->second);
      v.types[it->second] = TokenType::Control;
    }
  }
  for (int32_t id : {v.eos, v.eot, eom}) {
    if (id >= 0) v.eog_ids.push_back(id);
  }
  std::sort(v.eog_ids.begin(), v.eog_ids.end());
  v.eog_ids.erase(std::unique(v.eog_ids.begin(), v.eog_ids.end()), v.eog_ids.end());
}

Vocab vocab_from_gguf(const gguf::GgufFile& file) {
  const auto bad = [&](const std::string& message) { fail_input(file.path() + ": " + message); };

  const std::string& model = file.require_string("tokenizer.ggml.model");
  Vocab v;
  if (model == "llama") {
    v.model = Model::Spm;
  } else if (model == "gpt2") {
    v.model = Model::Bpe;
  } else {
    bad("tokenizer.ggml.model = " + quoted(model) +
        " is not supported (supported: \"llama\", SentencePiece BPE; \"gpt2\", byte-level BPE)");
  }
  const bool spm = v.model == Model::Spm;

  v.tokens = file.require_array(kTokensKey, gguf::ValueType::STRING).strings;
  const size_t n = v.tokens.size();
  for (size_t i = 0; i < n; ++i) {
    if (v.tokens[i].empty()) v.tokens[i] = "[EMPTY_" + std::to_string(i) + "]";
  }

  if (file.find(kScoresKey)) {
    const auto& scores = file.require_array(kScoresKey, gguf::ValueType::F32).floats;
    if (scores.size() != n) bad(count_mismatch(kScoresKey, scores.size(), n));
    v.scores.assign(scores.begin(), scores.end());
  } else {
    v.scores.assign(n, 0.0f);
  }

  if (file.find(kTypesKey)) {
    const auto& types = file.require_array(kTypesKey, gguf::ValueType::I32).ints;
    if (types.size() != n) bad(count_mismatch(kTypesKey, types.size(), n));
    v.types.resize(n);
    for (size_t i = 0; i < n; ++i) {
      if (types[i] < 0 || types[i] > static_cast<int64_t>(TokenType::Byte)) bad(bad_type(i, types[i]));
      v.types[i] = static_cast<TokenType>(types[i]);
    }
  } else {
    v.types.assign(n, TokenType::Normal);
  }

  if (!spm) {
    const std::string pre = file.get_string(kPreKey, "default");
    const std::optional<PreTokenizerConfig> config = pre_tokenizer_config(pre);
    if (!config) {
      bad(kPreKey + " = " + quoted(pre) +
          " is not a supported pre-tokenizer (supported: " + supported_pre_tokenizers() + ")");
    }
    v.pre = pre;
    v.pre_regexes = config->regexes;
    v.ignore_merges = config->ignore_merges;
    v.add_bos = config->add_bos;

    std::unordered_map<std::string_view, int32_t> ids;
    ids.reserve(n);
    for (size_t i = 0; i < n; ++i) ids.emplace(v.tokens[i], static_cast<int32_t>(i));
    const auto& merges = file.require_array(kMergesKey, gguf::ValueType::STRING).strings;
    v.merges.reserve(merges.size());
    std::string joined;
    for (size_t i = 0; i < merges.size(); ++i) {
      // "left right"; like llama.cpp, the separating space is the first one after the first byte.
      const std::string& m = merges[i];
      const auto at = [&] { return kMergesKey + "[" + std::to_string(i) + "] = " + quoted(m); };
      const size_t space = m.find(' ', 1);
      if (space == std::string::npos) bad(at() + " is not two tokens separated by a space");
      const std::string_view left = std::string_view(m).substr(0, space),
                             right = std::string_view(m).substr(space + 1);
      const auto id = [&](std::string_view text) {
        auto it = ids.find(text);
        if (it == ids.end()) bad(at() + ": " + quoted(text) + " is not a token");
        return it->second;
      };
      joined.assign(left).append(right);
      v.merges.push_back({id(left), id(right), id(joined)});
    }
  }

  const auto read_id = [&](const std::string& key, int64_t def) -> int32_t {
    if (!file.find(key)) return def < static_cast<int64_t>(n) ? static_cast<int32_t>(def) : -1;
    const int64_t id = file.get_int(key, -1);
    if (id == -1 || id == 0xFFFFFFFF) return -1;
    if (id < 0 || id >= static_cast<int64_t>(n)) bad(out_of_range(key, id, n));
    return static_cast<int32_t>(id);
  };
  v.bos = read_id("tokenizer.ggml.bos_token_id", spm ? 1 : -1);
  v.eos = read_id("tokenizer.ggml.eos_token_id", spm ? 2 : -1);
  v.unk = read_id("tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
  v.pad = read_id("tokenizer.ggml.padding_token_id", -1);
  v.eot = read_id("tokenizer.ggml.eot_token_id", -1);
  const int32_t eom = read_id("tokenizer.ggml.eom_token_id", -1);
  v.add_bos = file.get_bool("tokenizer.ggml.add_bos_token", spm || v.add_bos);
  v.add_eos = file.get_bool("tokenizer.ggml.add_eos_token", false);
  v.add_space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix", spm);

  find_end_of_generation(v, eom);

  try {
    check_vocab(v);
  } catch (const Error& e) {
    bad(e.what());
  }
  return v;
}

}  // namespace wgllm::tokenizer
