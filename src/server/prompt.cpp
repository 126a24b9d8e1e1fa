#include "server/prompt.hpp"

#include "tokenizer/conversation.hpp"

namespace wgllm::server {

PromptBuilder::PromptBuilder(const tokenizer::Tokenizer& tokenizer,
                             const std::optional<std::string>& chat_template)
    : tokenizer_(tokenizer),
      template_(chat_template ? tokenizer::ChatTemplate(*chat_template) : tokenizer::ChatTemplate::chatml()) {
}

std::vector<int32_t> PromptBuilder::chat(const std::vector<tokenizer::ChatMessage>& messages) const {
  return tokenizer::tokenize_chat(
      tokenizer_, tokenizer::render_chat(template_, tokenizer_, messages, /*add_generation_prompt=*/true));
}

std::vector<int32_t> PromptBuilder::completion(std::string_view text) const {
  return tokenizer_.encode(text, /*add_bos=*/true);
}

}  // namespace wgllm::server
