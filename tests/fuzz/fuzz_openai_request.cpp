// The body of a POST to the server's generation routes, from anyone on the network, through what the server
// does with it before generating: parse_chat_request and parse_completion_request
// (src/server/openai_request.cpp), then the prompt (src/server/prompt.cpp: the chat template and the
// tokenizer of stories260K). Input: the body; both parsers read every input. Checked, beyond not crashing:
// - the only error is ApiError 400 (invalid_request_error) with a message, whose JSON serializes as the
//   server writes it;
// - an accepted request lies in the documented ranges (sampling values, at most 16 non-empty stop
//   sequences, a known role for every message, stream_options only with stream, token ids >= 0);
// - an accepted request written back as JSON parses to the same request (the parser keeps what it
//   checked: a value the checks accept but the settings cannot hold would show here);
// - a conversation's prompt holds control tokens only where the template puts them: the same ones as the
//   conversation with every content replaced by "x" (ChatML, whose markers are plain text to stories260K,
//   and Llama 2's template, which writes BOS and EOS), so a user's "</s>" never becomes EOS.
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "fuzz/fuzz_support.hpp"
#include "gguf/gguf_file.hpp"
#include "server/api_error.hpp"
#include "server/openai_request.hpp"
#include "server/prompt.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::fuzz {
namespace {

using nlohmann::json;
using server::GenerationRequest;

std::unique_ptr<tokenizer::Tokenizer> tok;
std::vector<std::unique_ptr<server::PromptBuilder>> builders;  // ChatML, Llama 2

std::string read_source(const char* relative) {
  std::string text;
  if (FILE* f = std::fopen(source_path(relative).c_str(), "rb")) {
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
    std::fclose(f);
  }
  check(!text.empty(), "cannot read", relative);
  return text;
}

// The request as a client would write it, every kept field explicit.
json write_back(const GenerationRequest& r, bool chat) {
  const runtime::SamplingParams& s = r.sampling;
  json j = {{"temperature", s.temperature},
            {"top_p", s.top_p},
            {"min_p", s.min_p},
            {"top_k", s.top_k},
            {"repeat_penalty", s.repeat_penalty},
            {"repeat_last_n", s.penalty_last_n},
            {"presence_penalty", s.presence_penalty},
            {"frequency_penalty", s.frequency_penalty},
            {"stream", r.stream}};
  if (!r.model.empty()) j["model"] = r.model;
  if (r.seed) j["seed"] = *r.seed;
  if (r.max_tokens) j["max_tokens"] = *r.max_tokens;
  if (!r.stop.empty()) j["stop"] = r.stop;
  if (r.include_usage) j["stream_options"] = {{"include_usage", true}};
  if (chat) {
    j["messages"] = json::array();
    for (const auto& m : r.messages) j["messages"].push_back({{"role", m.role}, {"content", m.content}});
  } else if (r.prompt_ids) {
    j["prompt"] = *r.prompt_ids;
  } else {
    j["prompt"] = r.prompt;
  }
  return j;
}

bool same(const GenerationRequest& a, const GenerationRequest& b) {
  const runtime::SamplingParams &x = a.sampling, &y = b.sampling;
  bool messages = a.messages.size() == b.messages.size();
  for (size_t i = 0; messages && i < a.messages.size(); ++i)
    messages = a.messages[i].role == b.messages[i].role && a.messages[i].content == b.messages[i].content;
  return messages && a.model == b.model && a.prompt == b.prompt && a.prompt_ids == b.prompt_ids &&
         x.temperature == y.temperature && x.top_p == y.top_p && x.min_p == y.min_p && x.top_k == y.top_k &&
         x.repeat_penalty == y.repeat_penalty && x.penalty_last_n == y.penalty_last_n &&
         x.presence_penalty == y.presence_penalty && x.frequency_penalty == y.frequency_penalty &&
         a.seed == b.seed && a.max_tokens == b.max_tokens && a.stop == b.stop && a.stream == b.stream &&
         a.include_usage == b.include_usage;
}

void check_ranges(const GenerationRequest& r, bool chat, std::string_view body) {
  const runtime::SamplingParams& s = r.sampling;
  check(s.temperature >= 0 && s.temperature <= 2, "temperature out of range", body);
  check(s.top_p >= 0 && s.top_p <= 1 && s.min_p >= 0 && s.min_p <= 1, "top_p or min_p out of range", body);
  check(s.top_k >= 0, "top_k below 0", body);
  check(s.repeat_penalty > 0 && s.repeat_penalty <= 100, "repeat_penalty out of (0, 100]", body);
  check(s.penalty_last_n >= 0 && uint32_t(s.penalty_last_n) <= runtime::kPenaltyHistory,
        "repeat_last_n out of range", body);
  check(s.presence_penalty >= -2 && s.presence_penalty <= 2 && s.frequency_penalty >= -2 &&
            s.frequency_penalty <= 2,
        "a penalty out of [-2, 2]", body);
  check(!r.max_tokens || *r.max_tokens >= 1, "max_tokens 0", body);
  check(r.stop.size() <= server::kMaxStopSequences, "more stop sequences than allowed", body);
  for (const std::string& stop : r.stop) check(!stop.empty(), "an empty stop sequence", body);
  check(r.stream || !r.include_usage, "include_usage without stream", body);
  if (chat) {
    check(!r.messages.empty(), "a chat without messages", body);
    for (const auto& m : r.messages)
      check(m.role == "system" || m.role == "user" || m.role == "assistant" || m.role == "tool",
            "a message with an unknown role", body);
  } else if (r.prompt_ids) {
    for (int32_t id : *r.prompt_ids) check(id >= 0, "a negative token id", body);
  }
}

// The control tokens of a prompt, in order.
std::vector<int32_t> controls(const std::vector<int32_t>& ids) {
  std::vector<int32_t> out;
  for (int32_t id : ids) {
    check(id >= 0 && id < tok->n_vocab(), "a prompt id outside the vocabulary");
    if (tok->vocab().types[static_cast<size_t>(id)] == tokenizer::TokenType::Control) out.push_back(id);
  }
  return out;
}

std::optional<std::vector<int32_t>> chat_prompt(const server::PromptBuilder& b,
                                                const std::vector<tokenizer::ChatMessage>& messages) {
  try {
    return b.chat(messages);
  } catch (const Error& e) {
    check(e.kind() == ErrorKind::BadInput, "a prompt failed with a runtime error", e.what());
    return std::nullopt;
  }
}

void check_prompt(const GenerationRequest& r, bool chat, std::string_view body) {
  if (!chat) {
    if (!r.prompt_ids) controls(builders[0]->completion(r.prompt));
    return;
  }
  std::vector<tokenizer::ChatMessage> plain = r.messages;
  // Not `= "x"`: GCC 12 warns wrongly there (-Wrestrict, its bug 105329).
  for (auto& m : plain) m.content.assign(1, 'x');
  for (const auto& b : builders) {
    const auto got = chat_prompt(*b, r.messages);
    const auto want = chat_prompt(*b, plain);
    if (got && want) check(controls(*got) == controls(*want), "message text became control tokens", body);
  }
}

void one(std::string_view body, bool chat) {
  GenerationRequest r;
  try {
    r = chat ? server::parse_chat_request(body) : server::parse_completion_request(body);
  } catch (const server::ApiError& e) {
    check(e.status == 400 && e.type == "invalid_request_error", "an error other than 400", e.what());
    check(*e.what() != '\0', "an error without a message", body);
    // As the server sends it: invalid UTF-8 (from a JSON parser's message quoting the input) replaced.
    const std::string sent = e.to_json().dump(-1, ' ', false, json::error_handler_t::replace);
    check(json::parse(sent)["error"]["message"].is_string(), "an error object without its message", sent);
    return;
  }
  check_ranges(r, chat, body);
  const std::string again = write_back(r, chat).dump();
  GenerationRequest back;
  try {
    back = chat ? server::parse_chat_request(again) : server::parse_completion_request(again);
  } catch (const server::ApiError& e) {
    fail(std::string("an accepted request, written back, is refused: ") + e.what(), again);
  }
  check(same(r, back), "an accepted request, written back, parses to another request", again);
  check_prompt(r, chat, body);
}

}  // namespace
}  // namespace wgllm::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace wgllm;
  auto file = gguf::GgufFile::open(fuzz::source_path("models/stories260K.gguf"));
  fuzz::tok = tokenizer::Tokenizer::from_gguf(*file);
  fuzz::builders.push_back(std::make_unique<server::PromptBuilder>(*fuzz::tok, std::nullopt));
  fuzz::builders.push_back(std::make_unique<server::PromptBuilder>(
      *fuzz::tok, fuzz::read_source("testdata/chat-templates/llama2.jinja")));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  wgllm::fuzz::one(body, /*chat=*/true);
  wgllm::fuzz::one(body, /*chat=*/false);
  return 0;
}
