// A model's chat template (GGUF tokenizer.chat_template, Jinja) turned into the prompt text for a
// conversation, exactly as Hugging Face transformers' apply_chat_template(tokenize=False) renders it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "tokenizer/jinja/template.hpp"

namespace wgllm::tokenizer {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

class ChatTemplate {
 public:
  // Parses the template; throws Error(BadInput) "<name>:<line>: syntax error: ..." when it is invalid.
  explicit ChatTemplate(std::string source, std::string name = "chat_template");

  // The template's variables are those transformers passes: messages (a list of {role, content}),
  // add_generation_prompt, bos_token, eos_token, and tools = documents = None. Throws Error(BadInput)
  // naming the template line when rendering fails (raise_exception in the template, a type error, a
  // resource limit).
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     const std::string& bos_token, const std::string& eos_token) const;

  // ChatML, transformers' former default template, for models that ship none (the caller should warn).
  static ChatTemplate chatml();

  const std::string& source() const { return source_; }
  const std::string& name() const { return template_.name(); }

 private:
  std::string source_;
  jinja::Template template_;
};

// The template a model ships: GGUF's tokenizer.chat_template, nullopt when the file has none. Throws
// Error(BadInput) when the key is not a string.
std::optional<std::string> chat_template_from_gguf(const gguf::GgufFile& file);

// tokenizer_config.json's chat_template beside a tokenizer.json (`path`: the tokenizer.json or its
// directory): a string, or the one named "default" in a list of {name, template}. nullopt when there is no
// tokenizer_config.json or it has no chat_template. Throws Error(BadInput) naming the file and the field
// when it is malformed.
std::optional<std::string> chat_template_from_hf_json(const std::string& path);

}  // namespace wgllm::tokenizer
