// Request bodies against OpenAI's API reference: accepted shapes map to the generation settings; every
// malformed body or field is a 400 naming the field, never a crash.
#include <gtest/gtest.h>

#include "server/api_error.hpp"
#include "server/openai_request.hpp"

namespace wgllm::server {
namespace {

// The ApiError a body raises: status, param and message.
ApiError error_of(const std::string& body, bool chat = true) {
  try {
    chat ? parse_chat_request(body) : parse_completion_request(body);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return ApiError(0, "", "");
}

TEST(OpenAiRequest, ChatFieldsMapToSettings) {
  GenerationRequest r = parse_chat_request(R"({
    "model": "m", "messages": [{"role": "developer", "content": "be brief"},
                               {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
                               {"role": "assistant", "content": null}],
    "temperature": 0, "top_p": 0.5, "top_k": 7, "min_p": 0.1, "seed": -1, "max_completion_tokens": 9,
    "max_tokens": 100, "stop": "END", "stream": true, "stream_options": {"include_usage": true},
    "presence_penalty": 0.5, "frequency_penalty": -0.25, "n": 1, "user": "ignored", "logprobs": false})");
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "hi there");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 7);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_EQ(r.seed, 0xFFFFFFFFu);  // 64-bit seeds are taken modulo 2^32
  EXPECT_EQ(r.max_tokens, 9u);     // max_completion_tokens supersedes max_tokens
  EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.sampling.presence_penalty, 0.5f);
  EXPECT_EQ(r.sampling.frequency_penalty, -0.25f);
}

TEST(OpenAiRequest, DefaultsAreLlamaCpps) {
  GenerationRequest r = parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_EQ(r.sampling.temperature, 0.8f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_EQ(r.sampling.top_p, 0.95f);
  EXPECT_EQ(r.sampling.min_p, 0.05f);
  EXPECT_FALSE(r.seed);
  EXPECT_FALSE(r.max_tokens);
  EXPECT_FALSE(r.stream);
  EXPECT_TRUE(r.model.empty());
}

TEST(OpenAiRequest, CompletionPromptShapes) {
  EXPECT_EQ(parse_completion_request(R"({"prompt": "abc"})").prompt, "abc");
  EXPECT_EQ(parse_completion_request(R"({"prompt": ["abc"]})").prompt, "abc");
  EXPECT_EQ(*parse_completion_request(R"({"prompt": [1, 2, 3]})").prompt_ids,
            (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(*parse_completion_request(R"({"prompt": [[5, 6]]})").prompt_ids, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(parse_completion_request(R"({"prompt": "x", "max_tokens": 3.0})").max_tokens, 3u);
}

TEST(OpenAiRequest, MalformedBodies) {
  for (const char* body : {"", "{", "[]", "\"text\"", "{\"messages\": [}", "null", "{\"a\":1}x"}) {
    ApiError e = error_of(body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.type, "invalid_request_error") << body;
  }
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  ApiError e = error_of(deep);
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(std::string(e.what()).find("deeper than"), std::string::npos) << e.what();
}

// Valid JSON whose number no double holds: nlohmann's parser throws out_of_range there, not parse_error,
// which reached the server's catch-all as a 500 (found by fuzz_openai_request's seeds).
TEST(OpenAiRequest, NumberBeyondADoubleIs400) {
  for (const char* body : {R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e400})",
                           R"({"prompt": "x", "temperature": -1e309})"}) {
    for (bool chat : {true, false}) {
      ApiError e = error_of(body, chat);
      EXPECT_EQ(e.status, 400) << body;
      EXPECT_NE(std::string(e.what()).find("number overflow"), std::string::npos) << e.what();
    }
  }
}

TEST(OpenAiRequest, WrongFieldsAreNamed) {
  struct Case {
    const char* body;
    const char* param;
  };
  const Case chat_cases[] = {
      {R"({})", "messages"},
      {R"({"messages": "hi"})", "messages"},
      {R"({"messages": []})", "messages"},
      {R"({"messages": [3]})", "messages[0]"},
      {R"({"messages": [{"content": "x"}]})", "messages[0].role"},
      {R"({"messages": [{"role": "wizard", "content": "x"}]})", "messages[0].role"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content[0].type"},
      {R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})", "messages[0].content[0].text"},
      {R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})", "temperature"},
      {R"({"messages": [{"role": "user", "content": "x"}], "temperature": 2.5})", "temperature"},
      {R"({"messages": [{"role": "user", "content": "x"}], "top_p": -0.1})", "top_p"},
      {R"({"messages": [{"role": "user", "content": "x"}], "top_k": 1.5})", "top_k"},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})", "max_tokens"},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": "10"})", "max_tokens"},
      {R"({"messages": [{"role": "user", "content": "x"}], "seed": 1e30})", "seed"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stop": 3})", "stop"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stop": ["a", 1]})", "stop"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stop": [""]})", "stop"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stream": "yes"})", "stream"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}})",
       "stream_options"},
      {R"({"messages": [{"role": "user", "content": "x"}], "n": 2})", "n"},
      {R"({"messages": [{"role": "user", "content": "x"}], "model": 7})", "model"},
      {R"({"messages": [{"role": "user", "content": "x"}], "presence_penalty": 3})", "presence_penalty"},
      {R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})", "logprobs"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})", "tools"},
      {R"({"messages": [{"role": "user", "content": "x"}], "repeat_penalty": 0})", "repeat_penalty"},
      // 0 in f32, which the sampler divides by (found with fuzz_openai_request's write-back check).
      {R"({"messages": [{"role": "user", "content": "x"}], "repeat_penalty": 1e-50})", "repeat_penalty"},
  };
  for (const Case& c : chat_cases) {
    ApiError e = error_of(c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(c.param), std::string::npos)
        << "the message names the field: " << e.what();
  }
  const Case completion_cases[] = {
      {R"({})", "prompt"},
      {R"({"prompt": 5})", "prompt"},
      {R"({"prompt": [1, -2]})", "prompt"},
      {R"({"prompt": [1, 2.5]})", "prompt"},
      {R"({"prompt": ["a", "b"]})", "prompt"},
      {R"({"prompt": "x", "echo": true})", "echo"},
      {R"({"prompt": "x", "suffix": "y"})", "suffix"},
      {R"({"prompt": "x", "best_of": 3})", "best_of"},
  };
  for (const Case& c : completion_cases) {
    ApiError e = error_of(c.body, false);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body << ": " << e.what();
  }
}

TEST(OpenAiRequest, ErrorObjectShape) {
  ApiError e = error_of(R"({"messages": [{"role": "user", "content": "x"}], "top_k": "many"})");
  nlohmann::json j = e.to_json();
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "top_k");
  EXPECT_TRUE(j["error"]["code"].is_null());
  EXPECT_TRUE(j["error"]["message"].is_string());
}

}  // namespace
}  // namespace wgllm::server
