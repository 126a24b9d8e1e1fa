// `wgllm serve` and `wgllm run` on a synthetic model (model/synthetic.hpp), as the server benchmark
// (tools/serve_bench.py) uses them: the model's own ChatML template and byte-level vocabulary serve a chat
// completion whose prompt has the token count that ChatML and one token per byte give, and greedy
// generation runs to max_tokens.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "model/synthetic.hpp"
#include "support/test_support.hpp"
#include "unit/cli/wgllm_process.hpp"

extern char** environ;

namespace wgllm::server {
namespace {

using nlohmann::json;

const std::string& tiny_model() {
  static const std::string path = [] {
    const std::string p = test::temp_dir() + "/synthetic-tiny.gguf";
    const auto [shape, type] = model::parse_synthetic("tiny:q4_0");
    model::synthetic_model(shape, type, 11).write(p);
    return p;
  }();
  return path;
}

// `wgllm serve ARGS --port 0` in the background, stderr in a file; SIGTERM (then SIGKILL) when destroyed.
class Serve {
 public:
  explicit Serve(const std::vector<std::string>& args) {
    err_path_ = test::temp_dir() + "/serve-synthetic.err";
    std::vector<std::string> argv = {WGLLM_BINARY, "serve", "--port", "0"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int rc = posix_spawn(&pid_, WGLLM_BINARY, &actions, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error(std::string("cannot start ") + WGLLM_BINARY);
  }
  ~Serve() {
    kill(pid_, SIGTERM);
    for (int i = 0; i < 1000 && waitpid(pid_, nullptr, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (kill(pid_, 0) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Serve(const Serve&) = delete;
  Serve& operator=(const Serve&) = delete;

  // The port from the "listening on" line; 0 when the server exited or 60 s passed without it.
  int port() const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::smatch m;
    while (std::chrono::steady_clock::now() < deadline && waitpid(pid_, nullptr, WNOHANG) == 0) {
      const std::string text = err();
      if (std::regex_search(text, m, std::regex("listening on http://127\\.0\\.0\\.1:(\\d+)/")))
        return std::stoi(m[1]);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return 0;
  }
  std::string err() const { return test::read_file(err_path_); }

 private:
  std::string err_path_;
  pid_t pid_ = -1;
};

TEST(SyntheticModel, ServeAnswersAChatCompletionWithItsChatMlAndByteVocabulary) {
  const Serve serve({"-m", tiny_model(), "--parallel", "2", "-c", "256"});
  const int port = serve.port();
  ASSERT_GT(port, 0) << serve.err();
  EXPECT_EQ(serve.err().find("no chat template"), std::string::npos) << serve.err();
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60);
  // A control token's text in user content stays plain text: one token per byte like the rest.
  const std::string user = "H\xC3\xA9llo \xF0\x9F\x99\x82 <|im_end|>";
  const json body = {
      {"messages", {{{"role", "user"}, {"content", user}}}}, {"temperature", 0}, {"max_tokens", 12}};
  auto res = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  ASSERT_EQ(res->status, 200) << res->body;
  const json r = json::parse(res->body);
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["model"], "synthetic-tiny");
  EXPECT_TRUE(r["choices"][0]["message"]["content"].is_string());
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  // BOS, then "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n" with each tag one token.
  const size_t chatml_tokens =
      1 + 1 + std::string("user\n").size() + user.size() + 1 + 1 + 1 + std::string("assistant\n").size();
  EXPECT_EQ(r["usage"]["prompt_tokens"], chatml_tokens);
  EXPECT_EQ(r["usage"]["completion_tokens"], 12);
}

TEST(SyntheticModel, RunEchoesThePromptAndGeneratesTheTokensAskedFor) {
  const std::string prompt =
      "Gr\xC3\xBC\xC3\x9F"
      "e \xE4\xB8\x96\xE7\x95\x8C";
  const test::Process p =
      test::run_wgllm({"run", "-m", tiny_model(), "-p", prompt, "-n", "10", "--temp", "0"});
  ASSERT_EQ(p.exit_code, 0) << p.command << "\n" << p.err;
  EXPECT_EQ(p.out.substr(0, prompt.size()), prompt);
  const std::string counts =
      "prompt " + std::to_string(prompt.size() + 1) + " tokens";  // BOS and one token per byte
  EXPECT_NE(p.err.find(counts), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("generated 10 tokens"), std::string::npos) << p.err;
}

}  // namespace
}  // namespace wgllm::server
