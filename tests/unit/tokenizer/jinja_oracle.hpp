// The reference for the Jinja tests: jinja2 itself, configured as transformers renders chat templates
// (render_jinja2.py, run with python3 in a subprocess, cases passed as JSON). Expected outputs are
// computed at test time, never taken from wgllm.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "support/test_support.hpp"
#include "tokenizer/jinja/template.hpp"

namespace wgllm::test {

using Json = nlohmann::ordered_json;

struct JinjaCase {
  std::string source;
  Json context = Json::object();
};

struct JinjaResult {
  bool ok = false;
  std::string output;  // when ok
  std::string error;   // otherwise
  int line = 0;        // the template line of the error; 0 when not reported
};

// Runs render_jinja2.py with `python` on the request file; returns its exit code and stdout.
inline int run_oracle(const std::string& python, const std::string& request, const std::string& err,
                      std::string& out) {
  std::string cmd = python + " '" + source_path("tests/unit/tokenizer/render_jinja2.py") + "' < '" + request +
                    "' 2> '" + err + "'";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + python);
  char buf[65536];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;) out.append(buf, n);
  int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Renders every case with jinja2. Throws std::runtime_error when python3 or its jinja2 is missing.
inline std::vector<JinjaResult> jinja2_render(const std::vector<JinjaCase>& cases) {
  static int calls = 0;
  Json request = {{"cases", Json::array()}};
  for (const JinjaCase& c : cases)
    request["cases"].push_back({{"template", c.source}, {"context", c.context}});
  std::string text = request.dump();
  std::string in = write_temp_file("jinja2-in-" + std::to_string(calls) + ".json",
                                   std::vector<uint8_t>(text.begin(), text.end()));
  std::string err = temp_dir() + "/jinja2-err-" + std::to_string(calls++) + ".txt";
  // The python3 on PATH may be another installation than the system's, which install-deps provides for.
  std::string out;
  int code = run_oracle("python3", in, err, out);
  if (code == 3 || code == 127) {
    out.clear();
    code = run_oracle("/usr/bin/python3", in, err, out);
  }
  if (code == 3 || code == 127)
    throw std::runtime_error(
        "the Jinja tests need python3 with jinja2 (Debian: python3-jinja2), which scripts/install-deps.sh "
        "installs: " +
        read_file(err));
  if (code != 0)
    throw std::runtime_error("render_jinja2.py failed (exit " + std::to_string(code) +
                             "): " + read_file(err));
  Json response = Json::parse(out);
  std::vector<JinjaResult> results;
  for (const Json& r : response["results"]) {
    JinjaResult res;
    if (r.contains("output")) {
      res.ok = true;
      res.output = r["output"].get<std::string>();
    } else {
      res.error = r["error"].get<std::string>();
      if (r["line"].is_number()) res.line = r["line"].get<int>();
    }
    results.push_back(std::move(res));
  }
  return results;
}

// Renders with wgllm; errors become results with the line from "<name>:<line>: message".
inline JinjaResult wgllm_render(const std::string& source, const Json& context) {
  JinjaResult r;
  try {
    r.output = tokenizer::jinja::Template(source, "t").render(tokenizer::jinja::from_json(context.dump()));
    r.ok = true;
  } catch (const Error& e) {
    r.error = e.what();
    if (r.error.rfind("t:", 0) == 0) r.line = std::atoi(r.error.c_str() + 2);
  }
  return r;
}

inline std::string describe(const JinjaResult& r) {
  return r.ok ? "output \"" + r.output + "\"" : "error (line " + std::to_string(r.line) + ") " + r.error;
}

// Every case renders as jinja2 renders it: same text, or an error where jinja2 has one (on the same
// line when jinja2 names one and `check_lines`).
inline void expect_same_as_jinja2(const std::vector<JinjaCase>& cases, bool check_lines = true) {
  std::vector<JinjaResult> expected = jinja2_render(cases);
  ASSERT_EQ(expected.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    JinjaResult got = wgllm_render(cases[i].source, cases[i].context);
    const JinjaResult& want = expected[i];
    bool same = got.ok == want.ok && (!want.ok || got.output == want.output) &&
                (want.ok || !check_lines || want.line == 0 || got.line == want.line);
    EXPECT_TRUE(same) << "template: " << cases[i].source << "\ncontext: " << cases[i].context.dump()
                      << "\njinja2: " << describe(want) << "\nwgllm:  " << describe(got);
  }
}

}  // namespace wgllm::test
