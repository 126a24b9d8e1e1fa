// Differential check of the pre-tokenizers against PCRE2: every expression list of pre_tokenizer_config()
// splits random text (ASCII, and code points from many general categories, case-folding pairs, marks)
// exactly as PCRE2 with UTF and UCP does. Not built by CMake (PCRE2 is no dependency of wgllm); run it by
// hand after changing regex.cpp or adding a pre-tokenizer (docs/tokenizer.md):
//   apt-get install libpcre2-dev && ninja -C build-bpe wgllm_tokenizer
//   g++ -O2 -std=c++20 -Isrc tools/pcre2_differential.cpp build-bpe/libwgllm_{tokenizer,gguf,core}.a
//       -lpcre2-8 -o /tmp/pcre2_differential   (one command line)
//   /tmp/pcre2_differential
// Code points new in a Unicode version newer than PCRE2's tables are left out of the alphabet.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/utf8.hpp"
#include "tokenizer/pre_tokenizer.hpp"

using namespace wgllm::tokenizer;

// PCRE2's version of PreTokenizer::split: each expression cuts every piece into matches and the text
// between them.
std::vector<std::string> pcre_split(const std::vector<std::string>& regexes, const std::string& text) {
  std::vector<std::string> pieces = {text};
  for (const std::string& re : regexes) {
    int err;
    PCRE2_SIZE off;
    pcre2_code* code =
        pcre2_compile((PCRE2_SPTR)re.data(), re.size(), PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    if (!code) {
      std::printf("pcre2 cannot compile %s\n", re.c_str());
      std::exit(1);
    }
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    std::vector<std::string> next;
    for (const std::string& p : pieces) {
      size_t pos = 0, last = 0;
      while (pos < p.size()) {
        int rc = pcre2_match(code, (PCRE2_SPTR)p.data(), p.size(), pos, 0, md, nullptr);
        if (rc < 0) break;
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) {
          pos = ov[1] + wgllm::utf8::sequence_length((uint8_t)p[ov[1]]);
          continue;
        }
        if (ov[0] > last) next.push_back(p.substr(last, ov[0] - last));
        next.push_back(p.substr(ov[0], ov[1] - ov[0]));
        pos = last = ov[1];
      }
      if (last < p.size()) next.push_back(p.substr(last));
    }
    pieces = next;
    pcre2_match_data_free(md);
    pcre2_code_free(code);
  }
  return pieces;
}
int main() {
  std::mt19937_64 rng(42);
  const std::vector<char32_t> alphabet = {
      'a',   'b',    'Z',    'Q',     's',     'S',    't',    '\'',  '\'',   ' ',   ' ',    ' ',   '\n',
      '\r',  '\t',   '0',    '1',     '9',     '.',    ',',    '!',   '$',    '+',   '/',    '<',   '=',
      0xE9,  0xC9,   0x436,  0x416,   0x4E2D,  0x6587, 0xAC00, 0x301, 0x903,  0x663, 0x2160, 0xBD,  0x2026,
      0xAB,  0x20AC, 0xA9,   0x1F999, 0x3000,  0xA0,   0x2028, 0x85,  0x200B, 0x17F, 0x212A, 0x1C5, 0x2B0,
      0x5D0, 0xFF01, 0x3001, 0x2018,  0x1F600, 0x0800, 0x1E9E, 0xDF,  0x3C2,  0x3A3};
  const char* names[] = {"default",   "llama-bpe", "qwen2",        "llama4",        "gpt-2",
                         "starcoder", "falcon",    "deepseek-llm", "deepseek-coder"};
  int bad = 0;
  for (const char* name : names) {
    auto cfg = pre_tokenizer_config(name);
    PreTokenizer pre(cfg->regexes);
    for (int iter = 0; iter < 20000; ++iter) {
      // Mostly short strings; some of long runs, where failed attempts scan far (regex.hpp's Search).
      std::string text;
      const bool runs = rng() % 8 == 0;
      for (int i = rng() % 20; i > 0; --i) {
        const char32_t cp = alphabet[rng() % alphabet.size()];
        for (int n = runs ? rng() % 300 : 0; n >= 0; --n) wgllm::utf8::append(text, cp);
      }
      std::vector<std::string_view> ours_v;
      pre.split(text, ours_v);
      std::vector<std::string> ours(ours_v.begin(), ours_v.end());
      if (ours != pcre_split(cfg->regexes, text)) {
        if (++bad < 10) {
          std::printf("%s differs on '%s':\n ours:", name, text.c_str());
          for (auto& p : ours) std::printf(" [%s]", p.c_str());
          std::printf("\n pcre:");
          for (auto& p : pcre_split(cfg->regexes, text)) std::printf(" [%s]", p.c_str());
          std::printf("\n");
        }
      }
    }
    std::printf("%s done, %d differences so far\n", name, bad);
  }
  return bad == 0 ? 0 : 1;
}
