// A Hugging Face tokenizer.json (and tokenizer_config.json) from a stranger, as
// `wgllm tokenize -m tokenizer.json` reads them. Input: the tokenizer.json text, then optionally a NUL byte
// and the tokenizer_config.json text (JSON text holds no raw NUL). The loader must answer
// Error(BadInput) or a vocabulary that passes check_vocab; a tokenizer built from it (its pre-tokenizer
// expressions come from the file) must encode and decode a fixed text.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "fuzz/fuzz_support.hpp"
#include "tokenizer/tokenizer.hpp"
#include "tokenizer/vocab.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wgllm;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string json_path = fuzz::write_temp("tokenizer.json", input.substr(0, nul));
  const std::string config_path = fuzz::temp_dir() + "/tokenizer_config.json";
  if (nul == std::string_view::npos) {
    std::filesystem::remove(config_path);
  } else {
    fuzz::write_temp("tokenizer_config.json", input.substr(nul + 1));
  }

  try {
    tokenizer::Vocab vocab = tokenizer::vocab_from_hf_json(json_path);
    tokenizer::check_vocab(vocab);
    const tokenizer::Tokenizer tok(std::move(vocab));
    // Long runs of one character class, where a backtracking expression from the file would blow up.
    const std::string text = "Hello world!  123 4567 <|eot_id|></s> caf\xC3\xA9 \xF0\x9F\xA6\x99\n\t x\xFF" +
                             std::string(40, 'a') + std::string(40, ' ') + std::string(40, '7') + "!";
    for (bool special : {false, true}) {
      const std::vector<int32_t> ids = tok.encode(text, true, special);
      for (int32_t id : ids) fuzz::check(id >= 0 && id < tok.n_vocab(), "an id outside the vocabulary");
      (void)tok.decode(ids, special);
    }
  } catch (const Error& e) {
    fuzz::check(e.kind() == ErrorKind::BadInput, "a hostile tokenizer.json gave a runtime error", e.what());
  }
  return 0;
}
