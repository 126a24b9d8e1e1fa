// Errors name the template line; hostile templates (deep nesting, endless loops, huge output, recursion,
// self-referencing values) end in a clear Error instead of a crash or exhausted memory; randomly mutated
// real templates behave as jinja2 does.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <random>

#include "core/error.hpp"
#include "core/utf8.hpp"
#include "tokenizer/jinja/template.hpp"
#include "unit/tokenizer/jinja_oracle.hpp"

namespace wgllm::test {
namespace {

using tokenizer::jinja::Limits;
using tokenizer::jinja::Template;

std::string render_error(const std::string& source, const std::string& context = "{}", Limits limits = {}) {
  auto start = std::chrono::steady_clock::now();
  try {
    Template t(source, "t", limits);
    std::string out = t.render(tokenizer::jinja::from_json(context));
    return "no error, output of " + std::to_string(out.size()) + " bytes";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput) << e.what();
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0)
        << "limits should stop a runaway template quickly: " << source.substr(0, 200);
    return e.what();
  }
}

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

TEST(JinjaErrors, NameTheTemplateLine) {
  EXPECT_EQ(
      render_error("a\nb\n{% if x %}never closed"),
      "t:3: syntax error: unexpected end of template: the block opened on line 3 needs 'endif' or 'elif' or "
      "'else'");
  EXPECT_EQ(render_error("ok\n{{ x | bogus }}"), "t:2: syntax error: no filter named 'bogus'");
  EXPECT_EQ(render_error("ok\n\n{{ x is bogus }}"), "t:3: syntax error: no test named 'bogus'");
  EXPECT_EQ(render_error("{% for x in y %}\n{% endif %}"),
            "t:2: syntax error: unknown tag 'endif', expected 'endfor' or 'else'");
  EXPECT_EQ(render_error("{{ 'open string }}"), "t:1: syntax error: unterminated string starting with '");
  EXPECT_EQ(
      render_error(
          "{% macro fail(m) %}\n\n{{ raise_exception('bad: ' ~ m) }}\n{% endmacro %}\n\n{{ fail('x') }}"),
      "t:3: raise_exception: bad: x");
  EXPECT_EQ(render_error("\n{{ messages[0]['role'] }}", R"({"messages": []})"),
            "t:2: 'list object' has no element 0");
  EXPECT_EQ(render_error("{{ user.name }}"), "t:1: 'user' is undefined");
  EXPECT_EQ(render_error("x\n{{ 'a' + 1 }}"),
            "t:2: TypeError: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(render_error("{% for x in y recursive %}{% endfor %}"),
            "t:1: syntax error: recursive loops are not supported");
}

TEST(JinjaErrors, ContextMustBeValid) {
  EXPECT_EQ(render_error("x", "[1, 2]"), "t:0: the template context must be a dict, not list");
  EXPECT_THROW(tokenizer::jinja::from_json("{\"a\": "), Error);
  EXPECT_THROW(tokenizer::jinja::from_json(repeat("[", 1000) + repeat("]", 1000)), Error);
  EXPECT_THROW(tokenizer::jinja::from_json("{\"big\": 18446744073709551615}"), Error);
}

TEST(JinjaHostile, DeepNestingIsRefused) {
  const std::string nesting = "nesting deeper than 200 levels";
  const size_t n = 5000;  // far beyond the limit; a recursive walk this deep would overflow the stack
  for (const std::string& source : {
           "{{ " + repeat("(", n) + "1" + repeat(")", n) + " }}",
           "{{ " + repeat("[", n) + repeat("]", n) + " }}",
           repeat("{% if true %}", n) + repeat("{% endif %}", n),
           repeat("{% for x in [1] %}", n) + repeat("{% endfor %}", n),
           "{{ 1" + repeat(" + 1", n) + " }}",
           "{{ 'a'" + repeat(" ~ 'a'", n) + " }}",
           "{{ x" + repeat(" | trim", n) + " }}",
           "{{ x" + repeat(".a", n) + " }}",
           "{{ x" + repeat("[0]", n) + " }}",
           "{{ " + repeat("not ", n) + "x }}",
           "{{ " + repeat("- ", n) + "1 }}",
           "{{ 1" + repeat(" if x", n) + " }}",
           "{{ f" + repeat("()", n) + " }}",
       }) {
    std::string e = render_error(source);
    EXPECT_NE(e.find(nesting), std::string::npos) << e;
  }
}

// Smaller limits than the defaults keep this fast in sanitizer builds; the mechanisms are the same.
TEST(JinjaHostile, RunawayRenderingIsStopped) {
  Limits small;
  small.max_output_bytes = 1 << 20;
  small.max_work_bytes = 16 << 20;
  small.max_steps = 20000;
  struct Case {
    std::string source;
    std::string expected;  // part of the message
  };
  const Case cases[] = {
      {"{% for i in xs %}{% for j in xs %}{% for k in xs %}{% endfor %}{% endfor %}{% endfor %}",
       "the template ran for more than 20000 steps"},
      {"{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", "the output exceeds 1048576 bytes"},
      {"{{ 'a' * 1000000000000 }}", "repetition result exceeds the limit of 1048576 bytes"},
      {"{{ [1, 2] * 1000000000000 }}", "repetition result exceeds"},
      {"{{ range(1000000) | length }}", "range too big: the sandbox allows at most 100000 items"},
      {"{{ range(-9223372036854775807, 9223372036854775807) | length }}", "range too big"},
      {"{% set ns = namespace(s='x' * 100000) %}{% for i in range(10000) %}{% set ns.s = ns.s ~ 'y' %}{% "
       "endfor %}",
       "the template built more than 16777216 bytes of strings and lists"},
      {"{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}", "nested deeper than 400 levels"},
      {"{% set ns = namespace(v=[]) %}{% for i in range(1000) %}{% set ns.v = [ns.v] %}{% endfor %}",
       "lists and dicts nested deeper than 256 levels"},
      {"{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", "nests too deeply to print"},
      {"{% set s = 'x' * 500000 %}{{ [s] * 100 }}", "a value's text exceeds the limit of 1048576 bytes"},
      {"{{ [1] | tojson(indent=100000000000) }}", "exceeds the output limit"},
      {"{{ (['x'] * 100) | tojson(indent=100000) }}", "exceeds the limit of 1048576 bytes"},
      {"{{ ('a\\n' * 1000) | indent(10000) }}", "indent() result exceeds the limit"},
      {"{{ ('ab' * 10000) | replace('a', 'x' * 1000) }}", "replace() result exceeds the limit"},
      {"{{ ('ab' * 10000) | replace('', 'x' * 100) }}", "replace() result exceeds the limit"},
      {"{{ 9223372036854775807 + 1 }}", "OverflowError"},
      {"{{ 2 ** 64 }}", "OverflowError"},
      {"{{ 99999999999999999999 }}", "exceeds the 64-bit range"},
  };
  Json xs = Json::array();
  for (int i = 0; i < 1000; ++i) xs.push_back(i);
  const std::string context = Json{{"xs", xs}}.dump();
  for (const Case& c : cases) {
    std::string e = render_error(c.source, context, small);
    EXPECT_NE(e.find(c.expected), std::string::npos) << c.source.substr(0, 200) << "\n -> " << e;
  }
  // A long chain of namespaces (each holding the previous one) is freed without deep recursion.
  EXPECT_EQ(
      Template("{% set ns = namespace(h=none) %}{% for i in range(20000) %}{% set ns.h = namespace(n=ns.h) %}"
               "{% endfor %}done")
          .render(tokenizer::jinja::from_json("{}")),
      "done");
}

TEST(JinjaHostile, DefaultLimits) {
  Limits defaults;
  EXPECT_EQ(defaults.max_output_bytes, size_t{16} << 20);
  EXPECT_EQ(defaults.max_work_bytes, size_t{256} << 20);
  EXPECT_EQ(defaults.max_steps, 5'000'000u);
  EXPECT_EQ(defaults.max_depth, 400);
  EXPECT_EQ(render_error("{{ 'x' * 9000000 }}\n{{ 'y' * 9000000 }}"),
            "t:2: the output exceeds 16777216 bytes");
}

TEST(JinjaHostile, CustomLimits) {
  Limits tight;
  tight.max_output_bytes = 100;
  tight.max_steps = 1000;
  EXPECT_EQ(render_error("{{ 'x' * 101 }}", "{}", tight),
            "t:1: repetition result exceeds the limit of 100 bytes");
  EXPECT_EQ(render_error("{{ 'x' * 60 ~ 'y' * 60 }}", "{}", tight),
            "t:1: a string of 120 bytes exceeds the limit of 100");
  EXPECT_EQ(render_error("{% for i in range(200) %}{{ i }}{% endfor %}", "{}", tight),
            "t:1: the output exceeds 100 bytes");
  EXPECT_EQ(render_error("{% for i in range(2000) %}{% endfor %}", "{}", tight),
            "t:1: the template ran for more than 1000 steps");
}

TEST(JinjaHostile, ArbitraryBytesNeverCrash) {
  SCOPED_TRACE(seed_note());
  auto gen = rng(1);
  const std::string alphabet = "{}%#-+()[]|.,:~'\"\\ \n\tabcxyz019_=<>!*/ifrendsetmacroloop\xc3\xa9\xff";
  for (int i = 0; i < 3000; ++i) {
    std::string source;
    size_t n = std::uniform_int_distribution<size_t>(0, 80)(gen);
    for (size_t k = 0; k < n; ++k)
      source += alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(gen)];
    try {
      Template(source, "t").render(tokenizer::jinja::from_json(R"({"x": [1, "a", {"k": null}], "y": "s"})"));
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput) << source;
      EXPECT_EQ(std::string(e.what()).rfind("t:", 0), 0u) << e.what();
    }
  }
}

// Random edits of real chat templates (deleted, repeated and inserted pieces) rendered with a real
// conversation: wgllm must fail where jinja2 fails and produce the same text where it succeeds.
// The corpus is fixed unless WGLLM_TEST_SEED asks for another; it also holds every divergence a fresh
// corpus once found (kFoundDivergences), as the edits that made it.
TEST(JinjaHostile, MutatedTemplatesBehaveLikeJinja2) {
  SCOPED_TRACE(seed_note());
  auto gen = std::getenv("WGLLM_TEST_SEED") ? rng(2) : std::mt19937_64(2);
  const char* files[] = {"llama3_2.jinja", "qwen3.jinja",       "mistral_nemo.jinja",
                         "gemma3.jinja",   "deepseek_v3.jinja", "llama4.jinja"};
  const char* pieces[] = {"{%",       "%}",     "{{",      "}}",   "{%-",    "-%}",     "{#",
                          "#}",       "|trim",  "|length", " if ", " else ", "(",       ")",
                          "[",        "]",      "'",       "\"",   "\n",     "  ",      "loop.index",
                          "[0]",      "[::-1]", "~",       " + ",  " not ",  " and ",   " or ",
                          "endif",    "endfor", "else",    "none", "true",   "|tojson", ".strip()",
                          "messages", "ns.",    ",",       ":",    "0",      "-1"};
  Json context =
      Json::parse(R"({"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "<think>r</think>\n\nyo"}, {"role": "user", "content": " again "}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "tools": null, "documents": null})");
  std::vector<JinjaCase> cases;
  for (int i = 0; i < 240; ++i) {
    std::string source = read_file(testdata_path(std::string("chat-templates/") + files[i % 6]));
    int edits = std::uniform_int_distribution<int>(1, 3)(gen);
    for (int k = 0; k < edits; ++k) {
      size_t at = std::uniform_int_distribution<size_t>(0, source.size())(gen);
      size_t len = std::min<size_t>(std::uniform_int_distribution<size_t>(1, 8)(gen), source.size() - at);
      switch (std::uniform_int_distribution<int>(0, 2)(gen)) {
        case 0:
          source.erase(at, len);
          break;
        case 1:
          source.insert(at, source.substr(at, len));
          break;
        default:
          source.insert(at, pieces[std::uniform_int_distribution<size_t>(0, std::size(pieces) - 1)(gen)]);
      }
    }
    if (utf8::is_valid(source)) cases.push_back({source, context});  // an edit may cut a character
  }
  struct Found {
    const char* file;
    std::vector<std::pair<const char*, const char*>> replacements;  // each made once: (from, to)
  };
  const Found kFoundDivergences[] = {
      // WGLLM_TEST_SEED=4559918568972290765: loop_messages left undefined, so selectattr has no item to
      // apply its (now unknown) test to; jinja2 renders "<s>", wgllm failed on the test's name.
      {"mistral_nemo.jinja",
       {{"set loop_messages = messages[1:]", "set elseloop_messages = messages[1:]"},
        {"\"equalto\"", "\"eq{%ualto\""}}},
  };
  for (const Found& found : kFoundDivergences) {
    std::string source = read_file(testdata_path(std::string("chat-templates/") + found.file));
    for (const auto& [from, to] : found.replacements) {
      const size_t at = source.find(from);
      ASSERT_NE(at, std::string::npos) << found.file << ": " << from;
      source.replace(at, std::string_view(from).size(), to);
    }
    cases.push_back({source, context});
  }
  // Error lines are not compared: a broken tag can make jinja2 and wgllm report its start or its end.
  expect_same_as_jinja2(cases, false);
}

}  // namespace
}  // namespace wgllm::test
