// A chat turned into the token ids a model is fed, turn after turn: the model's chat template renders the
// messages, the template's own markers become control tokens, and nothing a user (or the model) wrote
// ever does.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/chat_template.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::tokenizer {

// A conversation rendered through a chat template, ready for Tokenizer::encode_prompt: `plain` holds the
// byte ranges of `text` that came from messages' contents and spell (part of) a control token's text.
struct ChatPrompt {
  std::string text;
  std::vector<Tokenizer::Range> plain;  // sorted, disjoint
};

// Renders `messages` with the vocabulary's BOS and EOS texts. Before rendering, every control-token text in
// a message's content (and a content's start or end that could complete one together with the template's
// text around it) is swapped for a placeholder the template cannot confuse with anything else; afterwards
// the placeholders get their text back and its range goes into `plain`. The text equals what the template
// renders from the messages as they are. Throws Error(BadInput) when rendering fails, or when the template
// cut or changed a placeholder (then a content's control-token text could not be kept plain).
ChatPrompt render_chat(const ChatTemplate& tmpl, const Tokenizer& tok,
                       const std::vector<ChatMessage>& messages, bool add_generation_prompt);

// The ids of a whole rendered prompt: control tokens only where the template wrote them, and BOS first when
// the vocabulary adds it and the template did not already begin with it (no double BOS). No EOS.
std::vector<int32_t> tokenize_chat(const Tokenizer& tok, const ChatPrompt& prompt);

// A multi-turn chat and the tokens its model holds. The driver adds a user message, asks next_prompt() for
// the tokens to feed, reports what it fed (fed), and adds the reply (add_reply).
class Conversation {
 public:
  Conversation(const Tokenizer& tok, ChatTemplate tmpl);

  const std::vector<ChatMessage>& messages() const { return messages_; }
  const ChatTemplate& chat_template() const { return template_; }

  // Sets the system message (kept first), or removes it when `text` is empty.
  void set_system(const std::string& text);
  void add(ChatMessage message);
  void pop();  // removes the last message (e.g. a turn that did not fit the context)
  // Forgets every message but the system message, and the tokens fed: the next prompt starts over.
  void reset();

  struct Prompt {
    std::vector<int32_t> tokens;  // to feed after the first `reused` tokens already fed
    size_t reused = 0;            // 0: the model's cache is to be discarded and the whole prompt fed
    std::string text;             // the rendered conversation that all the fed tokens stand for
  };
  // The conversation rendered with the generation prompt. When that text extends the text of what was fed
  // so far, only the new part is tokenized (its tokens continue the cached ones: the model's own sampled
  // tokens stay as they were, even where tokenizing their text again would give other ids); otherwise (an
  // edited system message, a template that rewrites earlier turns, a reply the template trims) the whole
  // prompt is tokenized afresh and reused is 0.
  Prompt next_prompt() const;
  // The model was fed `p.tokens` after its first `p.reused` tokens.
  void fed(const Prompt& p);
  // The model was fed a token it generated.
  void fed(int32_t id);
  // The assistant's reply: every generated token but an end-of-generation one, fed or not. Its content is
  // the tokens' text (with SentencePiece's leading space: it is what followed the prompt).
  void add_reply(std::span<const int32_t> ids);

  std::span<const int32_t> tokens() const { return tokens_; }  // everything fed, in order

 private:
  const Tokenizer& tok_;
  ChatTemplate template_;
  std::vector<ChatMessage> messages_;
  std::vector<int32_t> tokens_;
  std::string text_;  // what tokens_ stand for: the last prompt's text, then the fed tokens' pieces
};

}  // namespace wgllm::tokenizer
