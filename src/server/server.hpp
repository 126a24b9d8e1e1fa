// `wgllm serve`: an OpenAI-compatible HTTP server over a runtime::Generator (docs/server.md).
// Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models[/ID], GET /health, GET /metrics,
// the chat page at /, and the in-browser page at /local/ with the .gguf files of --models-dir at
// /models/NAME.gguf (docs/web.md). Errors are OpenAI error objects.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "runtime/generator.hpp"
#include "server/prompt.hpp"
#include "server/scheduler.hpp"
#include "tokenizer/tokenizer.hpp"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace wgllm::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                  // 0: any free port (bind() says which)
  std::string model_id;             // the served model's id (CONTRACTS.md: --alias or the file name)
  std::string api_key;              // non-empty: /v1/* and /metrics need "Authorization: Bearer <key>"
  size_t max_body_bytes = 8 << 20;  // larger request bodies get 413
  uint32_t queue_limit = 64;        // requests waiting for a slot; more get 429
  std::string web_dir;  // `make web`'s output (pkg/, chat/): served at /local/; empty or absent: not served
  std::string models_dir;  // its .gguf files (directly inside) at /models/NAME.gguf; empty: none
};

class Server {
 public:
  // `chat_template`: the model's, nullopt for the ChatML fallback. The generator and tokenizer must outlive
  // the server; the server's scheduler thread is the only one that calls the generator, and `recover`
  // (Scheduler's) when a step fails.
  Server(runtime::Generator& generator, const tokenizer::Tokenizer& tokenizer,
         const std::optional<std::string>& chat_template, ServerOptions options, Recover recover = {});
  ~Server();

  // Binds the address; returns the port. Throws Error(Runtime) when it cannot.
  int bind();
  // Serves until stop(); returns when the server has stopped.
  void serve();
  void stop();  // from any thread
  SchedulerStats stats() const { return scheduler_.stats(); }

 private:
  void routes();
  void generate(const httplib::Request& req, httplib::Response& res, bool chat);
  void count(const std::string& route, int status);
  std::string metrics() const;

  const tokenizer::Tokenizer& tokenizer_;
  PromptBuilder prompts_;
  ServerOptions options_;
  Scheduler scheduler_;
  std::unique_ptr<httplib::Server> http_;
  const int64_t created_;  // unix time the model was loaded, for /v1/models

  mutable std::mutex counts_mutex_;
  std::map<std::pair<std::string, int>, uint64_t> responses_;  // (route, status) -> count
};

}  // namespace wgllm::server
