#include "server/prompt.hpp"

namespace wgllm::server {

namespace {

std::string token_text(const tokenizer::Tokenizer& tok, int32_t id) {
  return id >= 0 ? tok.vocab().tokens[id] : std::string();
}

}  // namespace

PromptBuilder::PromptBuilder(const tokenizer::Tokenizer& tokenizer,
                             const std::optional<std::string>& chat_template)
    : tokenizer_(tokenizer),
      template_(chat_template ? tokenizer::ChatTemplate(*chat_template) : tokenizer::ChatTemplate::chatml()),
      fallback_(!chat_template) {}

std::vector<int32_t> PromptBuilder::chat(const std::vector<tokenizer::ChatMessage>& messages) const {
  const tokenizer::Vocab& v = tokenizer_.vocab();
  std::string text = template_.render(messages, /*add_generation_prompt=*/true, token_text(tokenizer_, v.bos),
                                      token_text(tokenizer_, v.eos));
  return tokenizer_.encode(text, /*add_bos=*/true);
}

std::vector<int32_t> PromptBuilder::completion(std::string_view text) const {
  return tokenizer_.encode(text, /*add_bos=*/true);
}

}  // namespace wgllm::server
