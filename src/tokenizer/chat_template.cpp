#include "tokenizer/chat_template.hpp"

namespace wgllm::tokenizer {

ChatTemplate::ChatTemplate(std::string source, std::string name)
    : source_(std::move(source)), template_(source_, std::move(name)) {}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 const std::string& bos_token, const std::string& eos_token) const {
  using jinja::Dict;
  using jinja::Value;
  jinja::ValueList list;
  list.reserve(messages.size());
  for (const ChatMessage& m : messages) {
    Dict message;
    message.set(Value("role"), Value(m.role));
    message.set(Value("content"), Value(m.content));
    list.push_back(Value::dict(std::move(message)));
  }
  Dict context;
  context.set(Value("messages"), Value::list(std::move(list)));
  context.set(Value("tools"), Value::none());
  context.set(Value("documents"), Value::none());
  context.set(Value("add_generation_prompt"), Value(add_generation_prompt));
  context.set(Value("bos_token"), Value(bos_token));
  context.set(Value("eos_token"), Value(eos_token));
  return template_.render(Value::dict(std::move(context)));
}

std::optional<std::string> chat_template_from_gguf(const gguf::GgufFile& file) {
  if (!file.find("tokenizer.chat_template")) return std::nullopt;
  return file.require_string("tokenizer.chat_template");
}

ChatTemplate ChatTemplate::chatml() {
  return ChatTemplate(
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + "
      "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
      "chatml");
}

}  // namespace wgllm::tokenizer
