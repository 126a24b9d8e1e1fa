// `wgllm tokenize` (CONTRACTS.md) and its inverse `wgllm detokenize`: a model's vocabulary (GGUF, or a
// Hugging Face tokenizer.json) without loading any weights, for checking against other tokenizers.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "core/utf8.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::cli {

namespace {

struct TokenizeFlags {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  bool json = false;
  bool special = false;
  bool bos = false;
};

struct DetokenizeFlags {
  std::string model;
  std::string ids;
  std::string ids_file;
  bool special = false;
  CLI::Option* ids_option = nullptr;
};

std::unique_ptr<tokenizer::Tokenizer> load(const std::string& model) {
  return tokenizer::Tokenizer::from_file(model.empty() ? default_model_path() : model);
}

// A piece on one line: its bytes as they are where they are printable UTF-8, escaped otherwise.
std::string escaped(const std::string& piece) {
  std::string out;
  for (size_t i = 0; i < piece.size();) {
    const unsigned char c = static_cast<unsigned char>(piece[i]);
    if (c == '\n' || c == '\r' || c == '\t' || c == '\\') {
      out += c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : "\\\\";
      ++i;
      continue;
    }
    const utf8::Decoded d = utf8::decode(std::string_view(piece).substr(i));
    if (c >= 0x20 && c != 0x7F && d.status == utf8::Status::Valid) {
      out.append(piece, i, d.length);
      i += d.length;
      continue;
    }
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02X", c);
    out += buf;
    ++i;
  }
  return out;
}

int tokenize(const TokenizeFlags& f) {
  const auto tok = load(f.model);
  const std::string text = f.prompt_file.empty() ? f.prompt : read_text_file(f.prompt_file);
  const std::vector<int32_t> ids = tok->encode(text, f.bos, f.special);
  if (f.json) {
    std::printf("%s\n", nlohmann::json(ids).dump().c_str());
    return 0;
  }
  for (int32_t id : ids) std::printf("%d %s\n", id, escaped(tok->piece(id, /*special=*/true)).c_str());
  return 0;
}

// Token ids as a JSON array or as integers separated by commas and/or white space.
std::vector<int32_t> parse_ids(const std::string& text, const std::string& source) {
  std::vector<int32_t> ids;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      fail_input(source + ": not a valid JSON array of token ids: " + e.what());
    }
    for (size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_number_integer() || j[i].get<int64_t>() < 0 || j[i].get<int64_t>() > INT32_MAX)
        fail_input(source + ": element " + std::to_string(i) + " = " + j[i].dump() + " is not a token id");
      ids.push_back(static_cast<int32_t>(j[i].get<int64_t>()));
    }
    return ids;
  }
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = text.find_first_not_of(" \t\r\n,", pos);
    if (start == std::string::npos) break;
    size_t end = text.find_first_of(" \t\r\n,", start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < 0 || v > INT32_MAX)
      fail_input(source + ": '" + item + "' at byte " + std::to_string(start) +
                 " is not a token id (expected a JSON array, or non-negative integers separated by commas or "
                 "spaces)");
    ids.push_back(static_cast<int32_t>(v));
    pos = end;
  }
  return ids;
}

int detokenize(const DetokenizeFlags& f) {
  const auto tok = load(f.model);
  std::vector<int32_t> ids;
  if (f.ids_option->count() > 0) {
    ids = parse_ids(f.ids, "--ids");
  } else if (!f.ids_file.empty()) {
    ids = parse_ids(read_text_file(f.ids_file), f.ids_file);
  } else {
    ids = parse_ids(std::string(std::istreambuf_iterator<char>(std::cin), {}), "stdin");
  }
  const std::string text = tok->decode(ids, f.special);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

}  // namespace

Action add_tokenize(CLI::App& app) {
  auto f = std::make_shared<TokenizeFlags>();
  app.add_option("-m,--model", f->model,
                 "GGUF model or vocabulary, or a tokenizer.json (default: the built-in model)")
      ->check(CLI::ExistingPath);
  auto* p = app.add_option("-p,--prompt", f->prompt, "text to tokenize");
  auto* file =
      app.add_option("-f,--file", f->prompt_file, "read the text from a file")->check(CLI::ExistingFile);
  p->excludes(file);
  app.add_flag("--json", f->json, "print one JSON array of ids and nothing else");
  app.add_flag("--special", f->special, "recognise control tokens written in the text (e.g. <|eot_id|>)");
  app.add_flag("--bos", f->bos, "add BOS (and EOS) as the vocabulary asks");
  app.callback([p, file] {
    if (p->count() == 0 && file->count() == 0) throw CLI::RequiredError("-p TEXT or -f FILE");
  });
  return [f] { return tokenize(*f); };
}

Action add_detokenize(CLI::App& app) {
  auto f = std::make_shared<DetokenizeFlags>();
  app.add_option("-m,--model", f->model,
                 "GGUF model or vocabulary, or a tokenizer.json (default: the built-in model)")
      ->check(CLI::ExistingPath);
  f->ids_option =
      app.add_option("--ids", f->ids, "token ids: 1,2,3 or a JSON array (default: read from stdin)");
  app.add_option("-f,--file", f->ids_file, "read the ids from a file")
      ->check(CLI::ExistingFile)
      ->excludes(f->ids_option);
  app.add_flag("--special", f->special, "print control tokens' text (e.g. <s>) instead of nothing");
  return [f] { return detokenize(*f); };
}

}  // namespace wgllm::cli
