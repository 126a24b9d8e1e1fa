// Requests to token ids: a conversation through the model's chat template (ChatML when the model ships
// none), a completion prompt as `wgllm run` tokenizes it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/chat_template.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::server {

class PromptBuilder {
 public:
  // `chat_template`: the model's (tokenizer.chat_template), nullopt for the ChatML fallback.
  PromptBuilder(const tokenizer::Tokenizer& tokenizer, const std::optional<std::string>& chat_template);

  // The template's markers become control tokens, the messages' text never does (tokenizer/conversation.hpp).
  // Throws Error(BadInput) when the template fails on the conversation (raise_exception, ...).
  std::vector<int32_t> chat(const std::vector<tokenizer::ChatMessage>& messages) const;
  std::vector<int32_t> completion(std::string_view text) const;
  const std::string& template_name() const { return template_.name(); }

 private:
  const tokenizer::Tokenizer& tokenizer_;
  tokenizer::ChatTemplate template_;
};

}  // namespace wgllm::server
