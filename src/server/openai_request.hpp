// The bodies of POST /v1/chat/completions and /v1/completions, parsed and checked field by field. Every
// problem is an ApiError 400 naming the field; unknown fields are ignored, as OpenAI's clients send many.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/step_params.hpp"
#include "tokenizer/chat_template.hpp"

namespace wgllm::server {

struct GenerationRequest {
  std::string model;                             // as the client named it; empty when absent
  std::vector<tokenizer::ChatMessage> messages;  // chat: the conversation
  // completions: the prompt, as text or as token ids
  std::string prompt;
  std::optional<std::vector<int32_t>> prompt_ids;
  // Sampling (with OpenAI's presence and frequency penalties): llama.cpp's defaults where the request is
  // silent (CONTRACTS.md); seed random when absent.
  runtime::SamplingParams sampling;
  std::optional<uint32_t> seed;
  std::optional<uint64_t> max_tokens;  // absent: until end of generation or a full context
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Nesting deeper than this is refused before it is built (hostile bodies).
constexpr int kMaxJsonDepth = 64;
constexpr size_t kMaxStopSequences = 16;

GenerationRequest parse_chat_request(std::string_view body);
GenerationRequest parse_completion_request(std::string_view body);

}  // namespace wgllm::server
