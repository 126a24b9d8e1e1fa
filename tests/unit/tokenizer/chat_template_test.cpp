// Published chat templates of real models (testdata/chat-templates), rendered for a set of conversations,
// must give exactly what jinja2 gives with transformers' settings and arguments (apply_chat_template
// passes messages, tools=None, documents=None, add_generation_prompt and the special tokens).
#include "tokenizer/chat_template.hpp"

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "unit/tokenizer/jinja_oracle.hpp"

namespace wgllm::test {
namespace {

using tokenizer::ChatMessage;
using tokenizer::ChatTemplate;

struct ModelTemplate {
  const char* file;  // under testdata/chat-templates/
  const char* bos;   // the model's tokenizer_config bos_token / eos_token
  const char* eos;
};

const ModelTemplate kTemplates[] = {
    {"llama2.jinja", "<s>", "</s>"},
    {"llama3.jinja", "<|begin_of_text|>", "<|end_of_text|>"},
    {"llama3_1.jinja", "<|begin_of_text|>", "<|eot_id|>"},
    {"llama3_2.jinja", "<|begin_of_text|>", "<|eot_id|>"},
    {"llama4.jinja", "<|begin_of_text|>", "<|eot|>"},
    {"mistral_nemo.jinja", "<s>", "</s>"},
    {"gemma2.jinja", "<bos>", "<eos>"},
    {"gemma3.jinja", "<bos>", "<eos>"},
    {"deepseek_v3.jinja", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"},
    {"qwen3.jinja", "", "<|im_end|>"},
    {"phi3.jinja", "<s>", "<|endoftext|>"},
};

std::vector<std::vector<ChatMessage>> conversations() {
  return {
      {{"system", "You are a helpful assistant."}, {"user", "Hello!"}},
      {{"user", "What is 2+2?"}},
      {{"user", "Hi"}, {"assistant", "Hello! How can I help?"}, {"user", "Tell me a joke."}},
      {{"system", "Answer in French."},
       {"user", "Good morning"},
       {"assistant", "Bonjour"},
       {"user", "Thanks"},
       {"assistant", "De rien"}},
      {{"user", "Ping"}, {"assistant", "Pong"}},
      {{"system", "  Padded system prompt \n"},
       {"user",
        "  spaces around  \nQuotes ' \" backslash \\ braces {{ bos_token }} {% if %} é ☃ 🎉 中文\r\nend  "},
       {"assistant", "\n  answer with trailing newline\n"},
       {"user", "<|im_start|>fake tag</s>"}},
      {{"user", "Think first."},
       {"assistant", "<think>\nsome reasoning\n</think>\n\nThe answer."},
       {"user", "Again"}},
      {{"user", "first"}, {"user", "second in a row"}},
      {},
      {{"assistant", "I speak first"}, {"user", "ok"}},
  };
}

Json context_json(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                  const ModelTemplate& t) {
  Json list = Json::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return {{"messages", list},     {"tools", nullptr},
          {"documents", nullptr}, {"add_generation_prompt", add_generation_prompt},
          {"bos_token", t.bos},   {"eos_token", t.eos}};
}

class PublishedTemplate : public ::testing::TestWithParam<ModelTemplate> {};

TEST_P(PublishedTemplate, RendersLikeJinja2) {
  const ModelTemplate& t = GetParam();
  std::string source = read_file(testdata_path(std::string("chat-templates/") + t.file));
  ChatTemplate tmpl(source, t.file);

  std::vector<std::pair<std::vector<ChatMessage>, bool>> inputs;
  std::vector<JinjaCase> cases;
  for (const auto& conv : conversations()) {
    for (bool agp : {false, true}) {
      inputs.emplace_back(conv, agp);
      cases.push_back({source, context_json(conv, agp, t)});
    }
  }
  std::vector<JinjaResult> expected = jinja2_render(cases);
  ASSERT_EQ(expected.size(), cases.size());
  int rendered = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("conversation " + std::to_string(i / 2) + ", add_generation_prompt=" +
                 (inputs[i].second ? "true" : "false") + "\ncontext: " + cases[i].context.dump());
    const JinjaResult& want = expected[i];
    if (want.ok) {
      EXPECT_EQ(tmpl.render(inputs[i].first, inputs[i].second, t.bos, t.eos), want.output);
      ++rendered;
      continue;
    }
    // jinja2 refuses this conversation (raise_exception, or messages[0] of an empty list): so must we,
    // naming the template and the same line.
    try {
      std::string out = tmpl.render(inputs[i].first, inputs[i].second, t.bos, t.eos);
      ADD_FAILURE() << "rendered \"" << out << "\" where jinja2 failed: " << want.error;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      std::string prefix = std::string(t.file) + ":" + std::to_string(want.line) + ": ";
      if (want.line) {
        EXPECT_EQ(std::string(e.what()).rfind(prefix, 0), 0u) << e.what() << "\njinja2: " << want.error;
      }
      if (want.error.rfind("TemplateError: ", 0) == 0) {  // raise_exception: the same message
        EXPECT_NE(std::string(e.what()).find(want.error.substr(15)), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_GE(rendered, 8) << "most conversations should render";
}

INSTANTIATE_TEST_SUITE_P(Models, PublishedTemplate, ::testing::ValuesIn(kTemplates),
                         [](const ::testing::TestParamInfo<ModelTemplate>& info) {
                           std::string name = info.param.file;
                           name = name.substr(0, name.find('.'));
                           return name;
                         });

// The tool-calling paths of the templates that have them (tools in the system or user turn as JSON,
// assistant tool calls, tool results), through the general renderer with transformers' arguments.
TEST(ChatTemplate, ToolUseRendersLikeJinja2) {
  Json tools = Json::parse(R"([{"type": "function", "function": {"name": "get_weather",
    "description": "Current weather in a city, \"quoted\" and 🌦", "parameters": {"type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}, "days": {"type": "integer"}},
    "required": ["city"]}}}, {"type": "function", "function": {"name": "now", "description": "Time",
    "parameters": {"type": "object", "properties": {}}}}])");
  Json call = Json::parse(R"({"id": "call12345", "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2}}})");
  std::vector<Json> conversations = {
      Json::parse(
          R"([{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather?"}])"),
      Json::array({Json{{"role", "user"}, {"content", "Weather in Zürich?"}},
                   Json{{"role", "assistant"}, {"content", ""}, {"tool_calls", Json::array({call})}},
                   Json{{"role", "tool"}, {"content", "{\"temp\": 21}"}, {"tool_call_id", "call12345"}},
                   Json{{"role", "assistant"}, {"content", "It is 21 °C."}},
                   Json{{"role", "user"}, {"content", "And tomorrow?"}}}),
  };
  std::vector<JinjaCase> cases;
  for (const char* file : {"llama3_2.jinja", "llama4.jinja", "mistral_nemo.jinja", "qwen3.jinja"}) {
    std::string source = read_file(testdata_path(std::string("chat-templates/") + file));
    for (const Json& messages : conversations) {
      cases.push_back({source,
                       {{"messages", messages},
                        {"tools", tools},
                        {"documents", nullptr},
                        {"add_generation_prompt", true},
                        {"bos_token", "<s>"},
                        {"eos_token", "</s>"}}});
    }
  }
  std::vector<JinjaResult> expected = jinja2_render(cases);
  for (const JinjaResult& r : expected) EXPECT_TRUE(r.ok) << "every case should render: " << r.error;
  expect_same_as_jinja2(cases);
}

TEST(ChatTemplate, ChatmlFallbackRendersLikeJinja2) {
  ChatTemplate chatml = ChatTemplate::chatml();
  ModelTemplate t{"chatml", "", ""};
  std::vector<JinjaCase> cases;
  std::vector<std::pair<std::vector<ChatMessage>, bool>> inputs;
  for (const auto& conv : conversations()) {
    for (bool agp : {false, true}) {
      inputs.emplace_back(conv, agp);
      cases.push_back({chatml.source(), context_json(conv, agp, t)});
    }
  }
  std::vector<JinjaResult> expected = jinja2_render(cases);
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(expected[i].ok) << expected[i].error;
    EXPECT_EQ(chatml.render(inputs[i].first, inputs[i].second, "", ""), expected[i].output);
  }
  EXPECT_EQ(chatml.render({{"user", "hi"}}, true, "", ""),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, ErrorsNameTheTemplateAndLine) {
  try {
    ChatTemplate("line one\n{% for m in messages %}\n{{ m | bogus }}\n{% endfor %}", "my_model");
    FAIL() << "an unknown filter must be refused when the template is parsed";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_STREQ(e.what(), "my_model:3: syntax error: no filter named 'bogus'");
  }
  std::string gemma = read_file(testdata_path("chat-templates/gemma2.jinja"));
  try {
    ChatTemplate(gemma, "gemma2").render({{"system", "s"}, {"user", "u"}}, true, "<bos>", "<eos>");
    FAIL() << "Gemma 2's template refuses a system message";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_STREQ(e.what(), "gemma2:1: raise_exception: System role not supported");
  }
}

TEST(ChatTemplate, RendersRepeatedlyAndKeepsItsSource) {
  std::string src = read_file(testdata_path("chat-templates/qwen3.jinja"));
  ChatTemplate t(src, "qwen3");
  EXPECT_EQ(t.source(), src);
  EXPECT_EQ(t.name(), "qwen3");
  std::string first = t.render({{"user", "a"}}, true, "", "<|im_end|>");
  ChatTemplate copy = t;
  EXPECT_EQ(copy.render({{"user", "a"}}, true, "", "<|im_end|>"), first);
  EXPECT_EQ(first, "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n");
}

}  // namespace
}  // namespace wgllm::test
