// A chat template from a stranger's GGUF file (tokenizer.chat_template), rendered as the server and
// `wgllm run` render it: ChatTemplate with its default limits, over a fixed conversation. Input: the
// template text. The answer must be a rendered text or Error(BadInput), within the interpreter's limits
// (Limits in jinja/interpreter.hpp: output, work bytes, steps, depth), so neither memory nor time run away.
#include <string>
#include <vector>

#include "core/error.hpp"
#include "fuzz/fuzz_support.hpp"
#include "tokenizer/chat_template.hpp"
#include "tokenizer/jinja/interpreter.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wgllm;
  static const std::vector<tokenizer::ChatMessage> messages = {
      {"system", "You are a helpful assistant."},
      {"user", "Hello! What is 2+2? {{ not a template }} {% raw %}"},
      {"assistant", "4. Anything else? \xF0\x9F\xA6\x99 caf\xC3\xA9"},
      {"user", "Tell me a story\nin two lines."},
  };
  try {
    const tokenizer::ChatTemplate chat(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    const std::string out = chat.render(messages, size % 2 == 0, "<s>", "</s>");
    fuzz::check(out.size() <= tokenizer::jinja::Limits{}.max_output_bytes, "output beyond the output limit");
  } catch (const Error& e) {
    fuzz::check(e.kind() == ErrorKind::BadInput, "a template gave a runtime error, not bad input", e.what());
  }
  return 0;
}
