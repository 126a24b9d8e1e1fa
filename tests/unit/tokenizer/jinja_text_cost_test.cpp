// Templates that read one long string over and over (found by fuzzing, tests/fuzz/fuzz_chat_template.cpp):
// each read used to cost one step however long the string, so a loop of searches, comparisons or character
// indexing over a megabyte ran for hours within max_steps. Reading text now costs a step per
// kTextBytesPerStep bytes, so every such template stops at the step limit, quickly; and sort keys count
// against the work limit (a sort of 65536 copies of a 16 MB string tried to build 1 TB of lowercase keys).
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "core/error.hpp"
#include "tokenizer/chat_template.hpp"
#include "tokenizer/jinja/template.hpp"

namespace wgllm::tokenizer::jinja {
namespace {

// Renders with small step and work limits, so that the sanitizer build stays fast; returns the error message.
std::string render_error(const std::string& body) {
  Limits limits;
  limits.max_steps = 200'000;
  limits.max_work_bytes = 32 << 20;
  const std::string source = "{% set s = 'x' * 1000000 %}{% set t = 'x' * 1000000 %}" + body;
  const auto start = std::chrono::steady_clock::now();
  try {
    const std::string out = Template(source, "t", limits).render(from_json("{}"));
    return "no error, output of " + std::to_string(out.size()) + " bytes";
  } catch (const Error& e) {
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0) << body;
    return e.what();
  }
}

TEST(JinjaTextCost, RepeatedReadsOfALongStringHitTheStepLimit) {
  const std::string loop = "{% for i in range(100000) %}";
  for (const std::string& body : {
           loop + "{{ s.count('y') }}{% endfor %}",
           loop + "{{ 'y' in s }}{% endfor %}",
           loop + "{{ s == t }}{% endfor %}",
           loop + "{{ s < t }}{% endfor %}",
           loop + "{{ s[500000] }}{% endfor %}",
           loop + "{{ s[1:2] }}{% endfor %}",
           loop + "{{ s | length }}{% endfor %}",
           loop + "{{ s.startswith('y') }}{% endfor %}",
           loop + "{{ s.replace('y', 'z') | length }}{% endfor %}",
           loop + "{{ {s: 1}[t] }}{% endfor %}",
           loop + "{{ s is lower }}{% endfor %}",
       }) {
    EXPECT_EQ(render_error(body), "t:1: the template ran for more than 200000 steps") << body;
  }
}

TEST(JinjaTextCost, SortKeysCountAsWork) {
  const std::string copies =
      "{% set ns = namespace(l=[s]) %}{% for i in range(12) %}{% set ns.l = ns.l + ns.l %}{% endfor %}";
  for (const char* filter : {"sort", "unique | list", "max"}) {
    EXPECT_EQ(render_error(copies + "{{ ns.l | " + std::string(filter) + " | length }}").rfind("t:1: ", 0),
              0u)
        << filter;
  }
}

TEST(JinjaTextCost, IteratingALongStringIsChargedBeforeItsCharactersAreListed) {
  // With the default limits: 16M characters are far beyond max_steps, and used to become 16M values
  // (640 MB) before the charge (found by fuzzing: join over joined strings, 23 s in the fuzz build).
  const auto start = std::chrono::steady_clock::now();
  try {
    Template("{% set s = 'x' * 16000000 %}{{ s | join(',') | length }}", "t").render(from_json("{}"));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "t:1: the template ran for more than 5000000 steps");
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
}

TEST(JinjaTextCost, ALongConversationStillRendersWithTheDefaultLimits) {
  // 2 MB of messages through a template that reads each one several times.
  const ChatTemplate chat(
      "{% for m in messages %}{% if m.content is string and '<think>' not in m.content %}"
      "{{ m.role | upper }}: {{ m.content | trim }}{{ m.content.split(' ') | length }}\n{% endif %}{% endfor "
      "%}");
  const size_t n = 256 << 10;
  std::vector<ChatMessage> messages;
  for (int i = 0; i < 8; ++i) messages.push_back({i % 2 ? "assistant" : "user", std::string(n, 'a')});
  // Each line: "USER: " or "ASSISTANT: ", the content, "1" (one word), "\n".
  EXPECT_EQ(chat.render(messages, true, "<s>", "</s>").size(), 4 * (6 + n + 2) + 4 * (11 + n + 2));
}

}  // namespace
}  // namespace wgllm::tokenizer::jinja
