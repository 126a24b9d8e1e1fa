// The tokenizer that synthetic models carry (model/synthetic.hpp): any UTF-8 text round-trips, every byte
// is one token spelled in GPT-2's byte-level alphabet (rebuilt here from GPT-2's bytes_to_unicode, not
// from our tokenizer layer), the vocabulary has the shape's size, ChatML renders and its control tokens
// are recognised, and the float64 reference never ranks an end-of-generation token first.
#include "model/synthetic.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "cpu/reference_model.hpp"
#include "gguf/gguf_file.hpp"
#include "support/test_support.hpp"
#include "tokenizer/chat_template.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::model {
namespace {

// GPT-2's bytes_to_unicode (openai/gpt-2 encoder.py): the printable bytes keep their code point, the
// others get 256, 257, ... in byte order. Returns the UTF-8 of byte b's character.
std::string gpt2_char(uint8_t b) {
  const auto printable = [](int c) {
    return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
  };
  int cp = b;
  if (!printable(b)) {
    cp = 256;
    for (int c = 0; c < b; ++c) cp += printable(c) ? 0 : 1;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

void append_utf8(std::string& s, char32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Random valid UTF-8: ASCII (controls and whitespace included), Latin-1, CJK, emoji, any scalar value,
// and pieces that look like the vocabulary's special and unused tokens.
std::string random_text(std::mt19937_64& gen) {
  static const char* const pieces[] = {"<|begin_of_text|>", "<|im_start|>", "<|im_end|>", "<|end_of_text|>",
                                       "[PAD300]",          "  \n\n",       "\r\n\t",     "'s 123"};
  std::string s;
  const int n = static_cast<int>(gen() % 120);
  for (int i = 0; i < n; ++i) {
    switch (gen() % 6) {
      case 0:
        append_utf8(s, static_cast<char32_t>(gen() % 0x80));
        break;
      case 1:
        append_utf8(s, static_cast<char32_t>(0x80 + gen() % 0x780));
        break;
      case 2:
        append_utf8(s, static_cast<char32_t>(0x4E00 + gen() % 0x5000));
        break;
      case 3:
        append_utf8(s, static_cast<char32_t>(0x1F300 + gen() % 0x300));
        break;
      case 4: {
        char32_t cp = static_cast<char32_t>(gen() % 0x110000);
        if (cp >= 0xD800 && cp < 0xE000) cp -= 0x800;  // no surrogates: they are not UTF-8
        append_utf8(s, cp);
        break;
      }
      default:
        s += pieces[gen() % std::size(pieces)];
    }
  }
  return s;
}

// The tiny shape's whole model, written once.
const std::string& tiny_path() {
  static const std::string path = [] {
    const std::string p = test::temp_dir() + "/synthetic-tiny.gguf";
    const auto [shape, type] = parse_synthetic("tiny:q4_0");
    synthetic_model(shape, type, 7).write(p);
    return p;
  }();
  return path;
}

int32_t id_of(const tokenizer::Tokenizer& tok, const std::string& text) {
  const auto& tokens = tok.vocab().tokens;
  const auto it = std::find(tokens.begin(), tokens.end(), text);
  return it == tokens.end() ? -1 : static_cast<int32_t>(it - tokens.begin());
}

TEST(SyntheticTokenizer, AnyUtf8TextRoundTripsOneTokenPerByte) {
  SCOPED_TRACE(test::seed_note());
  auto file = gguf::GgufFile::open(tiny_path());
  const auto tok = tokenizer::Tokenizer::from_gguf(*file);
  std::vector<int32_t> byte_ids(256);
  for (int b = 0; b < 256; ++b) {
    byte_ids[b] = id_of(*tok, gpt2_char(static_cast<uint8_t>(b)));
    ASSERT_GE(byte_ids[b], 0) << "no token spells byte " << b;
  }
  std::mt19937_64 gen = test::rng(1);
  for (int i = 0; i < 300; ++i) {
    const std::string text = random_text(gen);
    std::vector<int32_t> expected;
    for (char c : text) expected.push_back(byte_ids[static_cast<uint8_t>(c)]);
    const std::vector<int32_t> ids = tok->encode(text, /*add_bos=*/false);
    ASSERT_EQ(ids, expected) << "text: " << text;
    ASSERT_EQ(tok->decode(ids), text);
    const std::vector<int32_t> with_bos = tok->encode(text, /*add_bos=*/true);
    ASSERT_EQ(with_bos.size(), ids.size() + 1);
    EXPECT_EQ(with_bos[0], id_of(*tok, "<|begin_of_text|>"));
    ASSERT_EQ(tok->decode(with_bos), text);
  }
}

TEST(SyntheticTokenizer, VocabularyHasTheShapesSizeControlTokensAndUnusedPadding) {
  const auto [shape, type] = parse_synthetic("llama-3.2-1b:q4_0");
  gguf::GgufWriter w;
  add_synthetic_tokenizer(w, shape.n_vocab);
  const std::string path = test::temp_dir() + "/synthetic-vocab.gguf";
  w.write(path);
  auto file = gguf::GgufFile::open(path);
  const auto tok = tokenizer::Tokenizer::from_gguf(*file);
  EXPECT_EQ(tok->n_vocab(), 128256);
  const tokenizer::Vocab& v = tok->vocab();
  EXPECT_EQ(v.bos, id_of(*tok, "<|begin_of_text|>"));
  EXPECT_EQ(v.eos, id_of(*tok, "<|end_of_text|>"));
  const int32_t im_start = id_of(*tok, "<|im_start|>"), im_end = id_of(*tok, "<|im_end|>");
  EXPECT_TRUE(tok->is_eog(v.eos));
  EXPECT_TRUE(tok->is_eog(im_end));
  EXPECT_FALSE(tok->is_eog(im_start));
  EXPECT_TRUE(v.add_bos);
  EXPECT_EQ(v.tokens.back(), "[PAD128255]");
  EXPECT_EQ(tok->piece(128255), "");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{v.bos, id_of(*tok, "H"), 128000, id_of(*tok, "i"), v.eos}),
            "Hi");
  EXPECT_EQ(tok->encode("<|im_start|>user", false, /*parse_special=*/true)[0], im_start);
}

TEST(SyntheticTokenizer, ShipsChatMl) {
  auto file = gguf::GgufFile::open(tiny_path());
  const std::optional<std::string> source = tokenizer::chat_template_from_gguf(*file);
  ASSERT_TRUE(source);
  const tokenizer::ChatTemplate tmpl(*source);
  EXPECT_EQ(
      tmpl.render({{"system", "Be brief."}, {"user", "Hi"}}, true, "<|begin_of_text|>", "<|end_of_text|>"),
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(SyntheticTokenizer, TooSmallAVocabularyIsBadInput) {
  gguf::GgufWriter w;
  try {
    add_synthetic_tokenizer(w, 259);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("259"), std::string::npos) << e.what();
  }
}

// Greedy generation on a synthetic model runs to its token limit: the float64 reference's logits of the
// control tokens are 0 while the largest logit is well above it.
TEST(SyntheticModel, ControlTokensNeverLeadTheLogits) {
  SCOPED_TRACE(test::seed_note());
  auto file = gguf::GgufFile::open(tiny_path());
  const auto tok = tokenizer::Tokenizer::from_gguf(*file);
  ASSERT_EQ(file->find_tensor("token_embd.weight")->dims, (std::vector<uint64_t>{256, 1024}));
  cpu::ReferenceModel ref(*file);
  std::mt19937_64 gen = test::rng(2);
  std::vector<int32_t> prompt = {tok->vocab().bos};
  for (int i = 0; i < 12; ++i) prompt.push_back(static_cast<int32_t>(gen() % 1024));
  for (const std::vector<double>& logits : ref.forward(prompt)) {
    const double top = *std::max_element(logits.begin(), logits.end());
    EXPECT_GT(top, 0.1);
    for (const char* control : {"<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"})
      EXPECT_EQ(logits[id_of(*tok, control)], 0.0) << control;
  }
}

}  // namespace
}  // namespace wgllm::model
