// Hugging Face tokenizer.json (+ tokenizer_config.json) -> Vocab, for byte-level BPE models.
#include <climits>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "core/error.hpp"
#include "core/mapped_file.hpp"
#include "core/utf8.hpp"
#include "tokenizer/chat_template.hpp"
#include "tokenizer/pre_tokenizer.hpp"
#include "tokenizer/vocab.hpp"

namespace wgllm::tokenizer {

namespace {

using nlohmann::json;

// One JSON file being read: every problem names the file and the field's path in it.
class JsonFile {
 public:
  explicit JsonFile(std::string path) : path_(std::move(path)) {
    const MappedFile file(path_);
    const auto bytes = file.bytes();
    try {
      root_ = json::parse(bytes.begin(), bytes.end());
    } catch (const json::exception& e) {
      fail_input(path_ + ": not valid JSON: " + e.what());
    }
    if (!root_.is_object()) fail_input(path_ + ": the top level is not a JSON object");
  }
  const json& root() const { return root_; }

  [[noreturn]] void fail(const std::string& where, const std::string& problem) const {
    fail_input(path_ + ": " + where + " " + problem);
  }
  // obj[key], or nullptr when it is absent or null.
  const json* find(const json& obj, const char* key) const {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  const json& require(const json& obj, const char* key, const std::string& where) const {
    const json* v = find(obj, key);
    if (!v) fail(where.empty() ? key : where + "." + key, "is missing");
    return *v;
  }
  const std::string& string(const json& v, const std::string& where) const {
    if (!v.is_string()) fail(where, "is not a string");
    return v.get_ref<const std::string&>();
  }
  bool boolean(const json& obj, const char* key, const std::string& where, bool def) const {
    const json* v = find(obj, key);
    if (!v) return def;
    if (!v->is_boolean()) fail(where + "." + key, "is not true or false");
    return v->get<bool>();
  }
  int32_t id(const json& v, const std::string& where) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= INT32_MAX) {
      fail(where, "= " + v.dump() + " is not a token id (an integer from 0 to 2^31-2)");
    }
    return static_cast<int32_t>(v.get<int64_t>());
  }

 private:
  std::string path_;
  json root_;
};

// A literal string as a regular expression that matches exactly it.
std::string escape_regex(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (std::string_view("\\^$.|?*+()[]{}-").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

// Appends the expressions of a pre_tokenizer; sets byte_level when a ByteLevel step is among them.
void read_pre_tokenizer(const JsonFile& f, const json& p, const std::string& where,
                        std::vector<std::string>& regexes, bool& byte_level) {
  if (!p.is_object()) f.fail(where, "is not an object");
  const std::string& type = f.string(f.require(p, "type", where), where + ".type");
  if (type == "Sequence") {
    const json& steps = f.require(p, "pretokenizers", where);
    if (!steps.is_array()) f.fail(where + ".pretokenizers", "is not an array");
    for (size_t i = 0; i < steps.size(); ++i) {
      read_pre_tokenizer(f, steps[i], where + ".pretokenizers[" + std::to_string(i) + "]", regexes,
                         byte_level);
    }
  } else if (type == "Split") {
    const json& pattern = f.require(p, "pattern", where);
    if (const json* regex = f.find(pattern, "Regex")) {
      regexes.push_back(f.string(*regex, where + ".pattern.Regex"));
    } else if (const json* literal = f.find(pattern, "String")) {
      regexes.push_back(escape_regex(f.string(*literal, where + ".pattern.String")));
    } else {
      f.fail(where + ".pattern", "has neither Regex nor String");
    }
    const std::string& behavior = f.string(f.require(p, "behavior", where), where + ".behavior");
    if (behavior != "Isolated")
      f.fail(where + ".behavior", "= \"" + behavior + "\" is not supported (supported: Isolated)");
    if (f.boolean(p, "invert", where, false)) f.fail(where + ".invert", "= true is not supported");
  } else if (type == "ByteLevel") {
    if (f.boolean(p, "add_prefix_space", where, true))
      f.fail(where + ".add_prefix_space", "= true is not supported");
    if (f.boolean(p, "use_regex", where, true)) regexes.emplace_back(kGpt2Regex);
    byte_level = true;
  } else if (type == "Digits") {
    regexes.emplace_back(f.boolean(p, "individual_digits", where, false) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "Punctuation") {
    // Hugging Face's is_punc: ASCII punctuation or a Unicode P* character.
    constexpr std::string_view kPunctuation = R"([\p{P}!-/:-@\[-`{-~])";
    const json* behavior = f.find(p, "behavior");
    const std::string b = behavior ? f.string(*behavior, where + ".behavior") : "Isolated";
    if (b == "Isolated") {
      regexes.emplace_back(kPunctuation);
    } else if (b == "Contiguous") {
      regexes.push_back(std::string(kPunctuation) + "+");
    } else {
      f.fail(where + ".behavior", "= \"" + b + "\" is not supported (supported: Isolated, Contiguous)");
    }
  } else {
    f.fail(where + ".type", "= \"" + type +
                                "\" is not a supported pre-tokenizer (supported: Sequence, Split, ByteLevel, "
                                "Digits, Punctuation)");
  }
}

// The special tokens that the post_processor's TemplateProcessing puts before and after a single text.
struct Template {
  std::string first, last;  // "" for none
};
Template read_template(const JsonFile& f, const json* p, const std::string& where) {
  Template t;
  if (!p || !p->is_object()) return t;
  const json* type = f.find(*p, "type");
  if (!type || !type->is_string()) return t;
  if (*type == "Sequence") {
    const json* steps = f.find(*p, "processors");
    if (!steps || !steps->is_array()) return t;
    for (size_t i = 0; i < steps->size(); ++i) {
      const Template inner = read_template(f, &(*steps)[i], where + ".processors[" + std::to_string(i) + "]");
      if (!inner.first.empty()) t.first = inner.first;
      if (!inner.last.empty()) t.last = inner.last;
    }
    return t;
  }
  if (*type != "TemplateProcessing") return t;
  const json& single = f.require(*p, "single", where);
  if (!single.is_array()) f.fail(where + ".single", "is not an array");
  bool seen_text = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string at = where + ".single[" + std::to_string(i) + "]";
    if (f.find(single[i], "Sequence")) {
      seen_text = true;
    } else if (const json* special = f.find(single[i], "SpecialToken")) {
      (seen_text ? t.last : t.first) =
          f.string(f.require(*special, "id", at + ".SpecialToken"), at + ".SpecialToken.id");
    }
  }
  return t;
}

// tokenizer_config.json's bos_token / eos_token: a string, an AddedToken object, or null.
std::optional<std::string> config_token(const JsonFile& f, const char* key) {
  const json* v = f.find(f.root(), key);
  if (!v) return std::nullopt;
  if (v->is_object()) return f.string(f.require(*v, "content", key), std::string(key) + ".content");
  return f.string(*v, key);
}

}  // namespace

Vocab vocab_from_hf_json(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path json_path = fs::is_directory(path) ? fs::path(path) / "tokenizer.json" : fs::path(path);
  const JsonFile f(json_path.string());
  const json& root = f.root();

  const json& model = f.require(root, "model", "");
  const std::string& model_type = f.string(f.require(model, "type", "model"), "model.type");
  if (model_type != "BPE") {
    f.fail("model.type", "= \"" + model_type + "\" is not supported (supported: BPE, byte-level)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const json* v = f.find(model, key); v && !f.string(*v, std::string("model.") + key).empty()) {
      f.fail(std::string("model.") + key, "is not supported");
    }
  }
  if (f.boolean(model, "byte_fallback", "model", false)) {
    f.fail("model.byte_fallback", "= true is not supported (only byte-level BPE is)");
  }
  if (const json* dropout = f.find(model, "dropout"); dropout && !(dropout->is_number() && *dropout == 0)) {
    f.fail("model.dropout", "is not supported");
  }

  const json& vocab = f.require(model, "vocab", "model");
  if (!vocab.is_object()) f.fail("model.vocab", "is not an object");
  const json* added = f.find(root, "added_tokens");
  if (added && !added->is_array()) f.fail("added_tokens", "is not an array");
  // Token ids may leave holes between the model's vocabulary and the added tokens, but not so many that
  // a wild id could make us allocate gigabytes.
  const size_t max_id = 2 * (vocab.size() + (added ? added->size() : 0)) + 1024;
  std::vector<std::optional<std::string>> texts;  // [n_vocab]
  std::vector<TokenType> types;                   // [n_vocab]
  const auto place = [&](int32_t id, const std::string& text, TokenType type, const std::string& where) {
    if (static_cast<size_t>(id) > max_id) {
      f.fail(where, "gives '" + utf8::sanitize(text) + "' the id " + std::to_string(id) +
                        ", far beyond the " + std::to_string(vocab.size() + (added ? added->size() : 0)) +
                        " tokens the file defines");
    }
    if (static_cast<size_t>(id) >= texts.size()) {
      texts.resize(static_cast<size_t>(id) + 1);
      types.resize(static_cast<size_t>(id) + 1, TokenType::Unused);
    }
    if (texts[id] && *texts[id] != text) {
      f.fail(where, "gives id " + std::to_string(id) + " to '" + utf8::sanitize(text) +
                        "', which is already '" + utf8::sanitize(*texts[id]) + "'");
    }
    texts[id] = text;
    types[id] = type;
  };
  for (const auto& [text, id] : vocab.items()) {
    place(f.id(id, "model.vocab[\"" + utf8::sanitize(text) + "\"]"), text, TokenType::Normal, "model.vocab");
  }
  if (added) {
    for (size_t i = 0; i < added->size(); ++i) {
      const std::string at = "added_tokens[" + std::to_string(i) + "]";
      const json& t = (*added)[i];
      const std::string& content = f.string(f.require(t, "content", at), at + ".content");
      const bool special = f.boolean(t, "special", at, false);
      place(f.id(f.require(t, "id", at), at + ".id"), content,
            special ? TokenType::Control : TokenType::UserDefined, at);
    }
  }
  if (texts.empty()) f.fail("model.vocab", "is empty");

  Vocab v;
  v.model = Model::Bpe;
  v.add_space_prefix = false;
  v.add_bos = false;
  v.tokens.resize(texts.size());
  for (size_t i = 0; i < texts.size(); ++i)
    v.tokens[i] = texts[i] ? *texts[i] : "[PAD" + std::to_string(i) + "]";
  v.types = std::move(types);
  v.scores.assign(v.tokens.size(), 0.0f);

  std::unordered_map<std::string_view, int32_t> ids;
  ids.reserve(v.tokens.size());
  for (size_t i = 0; i < v.tokens.size(); ++i) ids.emplace(v.tokens[i], static_cast<int32_t>(i));
  const auto find_id = [&](const std::string& text) {
    auto it = ids.find(text);
    return it == ids.end() ? -1 : it->second;
  };
  const auto token_id = [&](const JsonFile& file, const std::string& text, const std::string& where) {
    const int32_t id = find_id(text);
    if (id < 0) file.fail(where, "= '" + utf8::sanitize(text) + "' is not a token");
    return id;
  };

  const json& merges = f.require(model, "merges", "model");
  if (!merges.is_array()) f.fail("model.merges", "is not an array");
  v.merges.reserve(merges.size());
  std::string joined;
  for (size_t i = 0; i < merges.size(); ++i) {
    // Error messages only are worth a string of their own: there are a few hundred thousand merges.
    const auto at = [&] { return "model.merges[" + std::to_string(i) + "]"; };
    const json& m = merges[i];
    std::string_view left, right;
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["left", "right"]
      left = m[0].get_ref<const std::string&>();
      right = m[1].get_ref<const std::string&>();
    } else if (m.is_string()) {  // "left right"
      const std::string_view text = m.get_ref<const std::string&>();
      const size_t space = text.find(' ', 1);
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        f.fail(at(), "= '" + utf8::sanitize(text) + "' is not two tokens separated by a space");
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else {
      f.fail(at(), "is neither \"left right\" nor [\"left\", \"right\"]");
    }
    joined.assign(left).append(right);
    const auto merge_id = [&](std::string_view text, const char* what) {
      const auto it = ids.find(text);
      if (it == ids.end()) f.fail(at() + what, "= '" + utf8::sanitize(text) + "' is not a token");
      return it->second;
    };
    v.merges.push_back({merge_id(left, ""), merge_id(right, ""), merge_id(joined, " merged")});
  }
  v.ignore_merges = f.boolean(model, "ignore_merges", "model", false);
  if (const json* unk = f.find(model, "unk_token"))
    v.unk = token_id(f, f.string(*unk, "model.unk_token"), "model.unk_token");

  if (const json* normalizer = f.find(root, "normalizer")) {
    const json* type = f.find(*normalizer, "type");
    if (!type || *type != "NFC")
      f.fail("normalizer", "= " + normalizer->dump() + " is not supported (supported: null, NFC)");
  }
  bool byte_level = false;
  if (const json* pre = f.find(root, "pre_tokenizer"))
    read_pre_tokenizer(f, *pre, "pre_tokenizer", v.pre_regexes, byte_level);
  const json* decoder = f.find(root, "decoder");
  const json* decoder_type = decoder ? f.find(*decoder, "type") : nullptr;
  if (!byte_level || !decoder_type || *decoder_type != "ByteLevel") {
    f.fail("pre_tokenizer", "and decoder are not byte-level: only byte-level BPE tokenizers are supported");
  }
  v.pre = "tokenizer.json";

  // BOS/EOS: tokenizer_config.json when present, else what the post-processor's template adds.
  const Template tmpl = read_template(f, f.find(root, "post_processor"), "post_processor");
  std::optional<std::string> bos, eos;
  std::optional<bool> add_bos, add_eos;
  const fs::path config_path = json_path.parent_path() / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    const JsonFile config(config_path.string());
    bos = config_token(config, "bos_token");
    eos = config_token(config, "eos_token");
    for (auto [key, flag] : {std::pair{"add_bos_token", &add_bos}, std::pair{"add_eos_token", &add_eos}}) {
      if (const json* value = config.find(config.root(), key)) {
        if (!value->is_boolean()) config.fail(key, "is not true or false");
        *flag = value->get<bool>();
      }
    }
    if (bos) v.bos = token_id(config, *bos, "bos_token");
    if (eos) v.eos = token_id(config, *eos, "eos_token");
  }
  if (!tmpl.first.empty() && v.bos < 0)
    v.bos = token_id(f, tmpl.first, "post_processor template's first token");
  if (!tmpl.last.empty() && v.eos < 0) v.eos = token_id(f, tmpl.last, "post_processor template's last token");
  v.add_bos = add_bos.value_or(!tmpl.first.empty() && find_id(tmpl.first) == v.bos);
  v.add_eos = add_eos.value_or(!tmpl.last.empty() && find_id(tmpl.last) == v.eos);

  find_end_of_generation(v, -1);
  try {
    check_vocab(v);
  } catch (const Error& e) {
    fail_input(json_path.string() + ": " + e.what());
  }
  return v;
}

std::optional<std::string> chat_template_from_hf_json(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
  const fs::path config_path = dir / "tokenizer_config.json";
  if (!fs::exists(config_path)) return std::nullopt;
  const JsonFile config(config_path.string());
  const json* t = config.find(config.root(), "chat_template");
  if (!t) return std::nullopt;
  if (!t->is_array()) return config.string(*t, "chat_template");
  // Several named templates (e.g. "default" and "tool_use"): transformers takes "default" unless told.
  for (size_t i = 0; i < t->size(); ++i) {
    const std::string at = "chat_template[" + std::to_string(i) + "]";
    if (!(*t)[i].is_object()) config.fail(at, "is not an object with name and template");
    if (config.string(config.require((*t)[i], "name", at), at + ".name") == "default")
      return config.string(config.require((*t)[i], "template", at), at + ".template");
  }
  return std::nullopt;
}

}  // namespace wgllm::tokenizer
