#include "tokenizer/conversation.hpp"

#include <algorithm>
#include <string_view>

#include "core/error.hpp"
#include "core/utf8.hpp"

namespace wgllm::tokenizer {

namespace {

using Range = Tokenizer::Range;

// The token texts that encode_prompt recognises only outside plain ranges (user-defined tokens are
// recognised in any text, as users' own text gets them too).
std::vector<std::string_view> control_texts(const Tokenizer& tok) {
  const Vocab& v = tok.vocab();
  std::vector<std::string_view> out;
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    if ((v.types[id] == TokenType::Control || v.types[id] == TokenType::Unknown) && !v.tokens[id].empty())
      out.push_back(v.tokens[id]);
  }
  return out;
}

// The parts of a content that must stay plain text: each occurrence of a control text, a start that could
// end one begun by the template's text before it, and an end that could begin one that the template's
// text after it completes.
std::vector<Range> control_ranges(std::string_view content, const std::vector<std::string_view>& controls) {
  std::vector<bool> mark(content.size());
  auto set = [&](size_t begin, size_t end) { std::fill(mark.begin() + begin, mark.begin() + end, true); };
  for (std::string_view t : controls) {
    for (size_t m = content.find(t); m != std::string_view::npos; m = content.find(t, m + 1))
      set(m, m + t.size());
    for (size_t k = 1; k < t.size() && k <= content.size(); ++k) {
      if (content.ends_with(t.substr(0, k))) set(content.size() - k, content.size());
      if (content.starts_with(t.substr(t.size() - k))) set(0, k);
    }
  }
  std::vector<Range> ranges;
  for (size_t i = 0; i < mark.size();) {
    if (!mark[i]) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < mark.size() && mark[end]) ++end;
    ranges.push_back({i, end});
    i = end;
  }
  return ranges;
}

// A private-use character that occurs in none of `texts`, to delimit placeholders.
std::string placeholder_mark(const std::vector<std::string_view>& texts) {
  for (char32_t cp = 0xE000; cp <= 0xF8FF; ++cp) {
    std::string mark;
    utf8::append(mark, cp);
    if (std::none_of(texts.begin(), texts.end(), [&](std::string_view t) { return t.find(mark) != t.npos; }))
      return mark;
  }
  fail_input(
      "the chat messages use every private-use character; no placeholder is left for control-token text");
}

}  // namespace

ChatPrompt render_chat(const ChatTemplate& tmpl, const Tokenizer& tok,
                       const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  const Vocab& v = tok.vocab();
  const std::string bos = v.bos >= 0 ? v.tokens[v.bos] : std::string();
  const std::string eos = v.eos >= 0 ? v.tokens[v.eos] : std::string();
  std::vector<std::string_view> texts = {tmpl.source(), bos, eos};
  for (const ChatMessage& m : messages) texts.push_back(m.content);
  const std::string mark = placeholder_mark(texts);

  const std::vector<std::string_view> controls = control_texts(tok);
  std::vector<std::string> originals;  // [placeholder number] the content text it stands for
  std::vector<ChatMessage> masked = messages;
  for (ChatMessage& m : masked) {
    const std::vector<Range> ranges = control_ranges(m.content, controls);
    if (ranges.empty()) continue;
    std::string content;
    size_t pos = 0;
    for (const Range& r : ranges) {
      content.append(m.content, pos, r.begin - pos);
      content += mark + std::to_string(originals.size()) + mark;
      originals.push_back(m.content.substr(r.begin, r.end - r.begin));
      pos = r.end;
    }
    content.append(m.content, pos);
    m.content = std::move(content);
  }

  const std::string rendered = tmpl.render(masked, add_generation_prompt, bos, eos);
  ChatPrompt out;
  size_t pos = 0;
  for (size_t m; (m = rendered.find(mark, pos)) != std::string::npos;) {
    out.text.append(rendered, pos, m - pos);
    const size_t digits = m + mark.size();
    const size_t close = rendered.find(mark, digits);
    const std::string_view number(rendered.data() + digits, close == std::string::npos ? 0 : close - digits);
    size_t index = 0;
    bool valid = !number.empty() && number.size() <= 9;
    for (char c : number) {
      valid = valid && c >= '0' && c <= '9';
      index = index * 10 + static_cast<size_t>(c - '0');
    }
    if (!valid || index >= originals.size())
      fail_input(tmpl.name() +
                 ": the template cut or changed a message's text around a control token's text, "
                 "which therefore cannot be kept plain text");
    out.plain.push_back({out.text.size(), out.text.size() + originals[index].size()});
    out.text += originals[index];
    pos = close + mark.size();
  }
  out.text.append(rendered, pos);
  return out;
}

std::vector<int32_t> tokenize_chat(const Tokenizer& tok, const ChatPrompt& prompt) {
  std::vector<int32_t> ids = tok.encode_prompt(prompt.text, prompt.plain, /*continues=*/false);
  const Vocab& v = tok.vocab();
  if (v.add_bos && v.bos >= 0 && (ids.empty() || ids.front() != v.bos)) ids.insert(ids.begin(), v.bos);
  return ids;
}

Conversation::Conversation(const Tokenizer& tok, ChatTemplate tmpl) : tok_(tok), template_(std::move(tmpl)) {}

void Conversation::set_system(const std::string& text) {
  const bool has = !messages_.empty() && messages_.front().role == "system";
  if (text.empty()) {
    if (has) messages_.erase(messages_.begin());
  } else if (has) {
    messages_.front().content = text;
  } else {
    messages_.insert(messages_.begin(), {"system", text});
  }
}

void Conversation::add(ChatMessage message) {
  messages_.push_back(std::move(message));
}

void Conversation::pop() {
  if (!messages_.empty()) messages_.pop_back();
}

void Conversation::reset() {
  std::erase_if(messages_, [](const ChatMessage& m) { return m.role != "system"; });
  tokens_.clear();
  text_.clear();
}

Conversation::Prompt Conversation::next_prompt() const {
  ChatPrompt chat = render_chat(template_, tok_, messages_, /*add_generation_prompt=*/true);
  Prompt p;
  // KV-cache reuse: the new rendering extends the text of what was fed, so only the rest is fed. Anything
  // else means the model's cache no longer matches the conversation: it is re-prefilled from the start.
  if (!tokens_.empty() && chat.text.size() > text_.size() && chat.text.starts_with(text_)) {
    const size_t start = text_.size();
    std::vector<Range> plain;
    for (const Range& r : chat.plain)
      if (r.end > start) plain.push_back({std::max(r.begin, start) - start, r.end - start});
    p.tokens = tok_.encode_prompt(std::string_view(chat.text).substr(start), plain, /*continues=*/true);
    p.reused = tokens_.size();
  }
  if (p.tokens.empty()) {
    p.tokens = tokenize_chat(tok_, chat);
    p.reused = 0;
  }
  p.text = std::move(chat.text);
  return p;
}

void Conversation::fed(const Prompt& p) {
  tokens_.resize(std::min(p.reused, tokens_.size()));
  tokens_.insert(tokens_.end(), p.tokens.begin(), p.tokens.end());
  text_ = p.text;
}

void Conversation::fed(int32_t id) {
  tokens_.push_back(id);
  text_ += tok_.piece(id, /*special=*/true);
}

void Conversation::add_reply(std::span<const int32_t> ids) {
  std::string content;
  for (int32_t id : ids) content += tok_.piece(id);
  messages_.push_back({"assistant", utf8::sanitize(content)});
}

}  // namespace wgllm::tokenizer
