// The server in-process on a free port, driven over plain HTTP (cpp-httplib's client) with the built-in
// stories260K, which has no chat template (the ChatML fallback serves). Texts are checked against other
// implementations: llama2.c's greedy story, and the float64 CPU reference's greedy continuation of the
// ChatML prompt. Every error case of issue 6 gets its status and an OpenAI error object.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <thread>

#include "cpu/reference_model.hpp"
#include "gguf/gguf_file.hpp"
#include "gpu/device.hpp"
#include "runtime/batcher.hpp"
#include "runtime/forward.hpp"
#include "server/server.hpp"
#include "support/test_support.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/cli/wgllm_process.hpp"

namespace wgllm::server {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string stories260k() {
  return test::source_path("models/stories260K.gguf");
}

// The model, loaded once for the whole binary.
struct Model {
  std::unique_ptr<gguf::GgufFile> file = gguf::GgufFile::open(stories260k());
  std::unique_ptr<tokenizer::Tokenizer> tok = tokenizer::Tokenizer::from_gguf(*file);
  std::unique_ptr<gpu::Device> device = gpu::open_device();
  std::unique_ptr<runtime::Forward> forward =
      std::make_unique<runtime::Forward>(*device, *file, runtime::ForwardOptions{.n_ctx = 256, .n_seq = 8});
  runtime::Batcher generator{*forward};
};

Model& model() {
  static Model* m = [] {
    std::signal(SIGPIPE, SIG_IGN);  // the clients here close sockets the server may still write to
    return new Model;
  }();
  return *m;
}

// Lets the test decide when each step runs: step() waits for a permit. With `slots`, the scheduler sees
// only that many of the inner generator's slots.
class GatedGenerator : public runtime::Generator {
 public:
  explicit GatedGenerator(runtime::Generator& inner, uint32_t slots = 0)
      : inner_(inner), slots_(slots ? slots : inner.slots()) {}
  uint32_t slots() const override { return slots_; }
  uint32_t context_size() const override { return inner_.context_size(); }
  uint32_t vocab_size() const override { return inner_.vocab_size(); }
  std::optional<Started> start(std::span<const int32_t> prompt, const runtime::SamplingParams& s) override {
    return inner_.start(prompt, s);
  }
  void finish(uint32_t slot) override { inner_.finish(slot); }
  bool busy() const override { return inner_.busy(); }
  std::vector<Sampled> step() override {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return permits_ > 0 || open_; });
    if (!open_) --permits_;
    lock.unlock();
    auto sampled = inner_.step();
    lock.lock();
    ++steps_;
    cv_.notify_all();
    return sampled;
  }

  void allow(int n) {
    std::lock_guard lock(mutex_);
    permits_ += n;
    cv_.notify_all();
  }
  void open() {  // every step runs from now on
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }
  bool wait_steps(uint64_t n, std::chrono::milliseconds timeout = 20s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return steps_ >= n; });
  }
  uint64_t steps() {
    std::lock_guard lock(mutex_);
    return steps_;
  }

 private:
  runtime::Generator& inner_;
  const uint32_t slots_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int permits_ = 0;
  bool open_ = false;
  uint64_t steps_ = 0;
};

// A server on a free port of 127.0.0.1, serving from its own thread.
class Running {
 public:
  explicit Running(ServerOptions options = {}, runtime::Generator* generator = nullptr,
                   std::optional<std::string> chat_template = std::nullopt, Recover recover = {})
      : server_(generator ? *generator : model().generator, *model().tok, chat_template,
                with_defaults(options), std::move(recover)) {
    port_ = server_.bind();
    thread_ = std::thread([this] { server_.serve(); });
  }
  ~Running() {
    server_.stop();
    thread_.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c;
  }
  int port() const { return port_; }
  Server& server() { return server_; }

 private:
  static ServerOptions with_defaults(ServerOptions o) {
    o.port = 0;
    if (o.model_id.empty()) o.model_id = "stories260K";
    return o;
  }
  Server server_;
  int port_ = 0;
  std::thread thread_;
};

json post(httplib::Client& c, const std::string& path, const json& body, int expected_status) {
  auto res = c.Post(path, body.dump(), "application/json");
  if (!res) {
    ADD_FAILURE() << "no response from " << path << ": " << httplib::to_string(res.error());
    return {};
  }
  EXPECT_EQ(res->status, expected_status) << path << " " << body.dump() << "\n" << res->body;
  return json::parse(res->body, nullptr, false);
}

// An OpenAI error object with this status; returns its message.
std::string expect_error(const httplib::Result& res, int status) {
  if (!res) {
    ADD_FAILURE() << "no response: " << httplib::to_string(res.error());
    return {};
  }
  EXPECT_EQ(res->status, status) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  json j = json::parse(res->body, nullptr, false);
  EXPECT_TRUE(j.contains("error") && j["error"].contains("message") && j["error"].contains("type") &&
              j["error"].contains("param") && j["error"].contains("code"))
      << res->body;
  return j.is_object() && j.contains("error") ? j["error"].value("message", "") : "";
}

// Sends `request` as it is and returns everything the server answers before it closes the connection.
std::string raw_http(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) reply.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return reply;
}

std::string chatml(const std::string& user) {
  return "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n";
}

// The float64 CPU reference's greedy continuation of `prompt` ids: at most n_new ids, ending before an
// end-of-generation token.
std::vector<int32_t> reference_ids(const std::vector<int32_t>& prompt, size_t n_new) {
  cpu::ReferenceModel ref(*model().file);
  std::vector<double> logits = ref.forward(prompt).back();
  std::vector<int32_t> ids;
  for (size_t i = 0; i < n_new; ++i) {
    const int32_t id = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (model().tok->is_eog(id)) break;
    ids.push_back(id);
    if (i + 1 < n_new) logits = ref.step(id);
  }
  return ids;
}

std::string text_of(std::span<const int32_t> ids, bool strip_leading_space) {
  tokenizer::StreamDecoder decoder(*model().tok, strip_leading_space);
  std::string text;
  for (int32_t id : ids) text += decoder.push(id);
  return text + decoder.flush();
}

// The reference's greedy continuation of `prompt` ids, decoded as a reply of its own.
std::string reference_reply(const std::vector<int32_t>& prompt, int n_new) {
  return text_of(reference_ids(prompt, static_cast<size_t>(n_new)), /*strip_leading_space=*/true);
}

// llama2.c's greedy story from BOS (200 tokens) as token ids: the reference's greedy ids, checked to spell
// llama2.c's text. A prompt of BOS and the first k of them continues with the rest of the story.
struct Story {
  std::vector<int32_t> ids;
  std::string text;

  static const Story& get() {
    static const Story story = [] {
      Story s;
      s.ids = reference_ids({model().tok->vocab().bos}, 200);
      s.text = test::without_final_newline(
          test::read_file(test::testdata_path("karpathy-llama2.c/expected_stories260K_t0_n200.txt")));
      EXPECT_EQ(s.ids.size(), 200u);
      EXPECT_EQ(text_of(s.ids, true), s.text) << "the reference's greedy ids do not spell llama2.c's story";
      return s;
    }();
    return story;
  }
  // BOS and the story's first k ids.
  std::vector<int32_t> prompt(size_t k) const {
    std::vector<int32_t> p = {model().tok->vocab().bos};
    p.insert(p.end(), ids.begin(), ids.begin() + static_cast<long>(k));
    return p;
  }
  // What a completion of prompt(k) with n new tokens must say: the story's text after its first k tokens
  // (a completion continues its prompt's text, so its first word keeps its space).
  std::string continuation(size_t k, size_t n) const {
    const std::string before = text_of(std::span(ids).first(k), true);
    const std::string upto = text_of(std::span(ids).first(k + n), true);
    EXPECT_EQ(upto.substr(0, before.size()), before);
    return upto.substr(before.size());
  }
};

json story_request(size_t k, size_t n, bool stream = false) {
  return {{"prompt", Story::get().prompt(k)}, {"temperature", 0}, {"max_tokens", n}, {"stream", stream}};
}

// A completion or chat reply's text, from a JSON body or from a stream of server-sent events.
std::string reply_text(const std::string& body) {
  std::string text;
  auto add = [&](const json& j) {
    const json& c = j["choices"][0];
    if (c.contains("text")) text += c["text"].get<std::string>();
    if (c.contains("message")) text += c["message"].value("content", "");
    if (c.contains("delta")) text += c["delta"].value("content", "");
  };
  if (!body.starts_with("data: ")) {
    add(json::parse(body));
    return text;
  }
  for (size_t at = 0; (at = body.find("data: ", at)) != std::string::npos;) {
    const size_t end = body.find("\n\n", at);
    const std::string data = body.substr(at + 6, end - at - 6);
    at = end;
    if (data == "[DONE]") break;
    json j = json::parse(data);
    if (!j["choices"].empty()) add(j);
  }
  return text;
}

// POSTs `body` (streamed or not) and returns the reply's text; empty when there was no 200 response.
std::string complete(const Running& s, const json& body, const std::string& path = "/v1/completions") {
  auto c = s.client();
  std::string received;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    received.append(data, n);
    return true;
  };
  auto res = c.send(req);
  if (!res || res->status != 200) {
    ADD_FAILURE() << body.dump() << ": " << (res ? res->body : httplib::to_string(res.error()));
    return {};
  }
  return reply_text(received);
}

// The value of a gauge or counter without labels in /metrics; -1 when absent.
double metric(const Running& s, const std::string& name) {
  auto res = s.client().Get("/metrics");
  if (!res) return -1;
  const size_t at = res->body.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(res->body.substr(at + name.size() + 2));
}

TEST(Server, GreedyCompletionFromBosIsLlama2csStory) {
  Running s;
  auto c = s.client();
  json r = post(c, "/v1/completions",
                {{"model", "stories260K"}, {"prompt", ""}, {"temperature", 0}, {"max_tokens", 200}}, 200);
  std::string expected =
      test::read_file(test::testdata_path("karpathy-llama2.c/expected_stories260K_t0_n200.txt"));
  if (expected.ends_with('\n')) expected.pop_back();
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["model"], "stories260K");
  EXPECT_EQ(r["choices"][0]["text"], expected);
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["prompt_tokens"], 1);  // BOS
  EXPECT_EQ(r["usage"]["completion_tokens"], 200);
  EXPECT_EQ(r["usage"]["total_tokens"], 201);
  EXPECT_EQ(r["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

TEST(Server, ChatRendersChatMlAndRepliesAsTheReferenceDoes) {
  Running s;
  auto c = s.client();
  const std::string user = "Tell me a story about a cat.";
  json r = post(
      c, "/v1/chat/completions",
      {{"messages", {{{"role", "user"}, {"content", user}}}}, {"temperature", 0}, {"max_tokens", 40}}, 200);
  std::vector<int32_t> prompt = model().tok->encode(chatml(user), /*add_bos=*/true);
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  const std::string expected = reference_reply(prompt, 40);
  EXPECT_EQ(r["choices"][0]["message"].value("content", ""), expected);
  EXPECT_EQ(r["usage"]["prompt_tokens"], prompt.size());
}

TEST(Server, UserTextNeverBecomesControlTokens) {
  Running s;
  auto c = s.client();
  const std::string user = "</s><s>";  // stories260K's EOS and BOS texts
  json r = post(c, "/v1/chat/completions",
                {{"messages", {{{"role", "user"}, {"content", user}}}}, {"max_tokens", 1}}, 200);
  const auto& tok = *model().tok;
  size_t as_text = tok.encode(chatml(user), true, /*parse_special=*/false).size();
  size_t as_control = tok.encode(chatml(user), true, /*parse_special=*/true).size();
  ASSERT_NE(as_text, as_control);
  EXPECT_EQ(r["usage"]["prompt_tokens"], as_text);
}

TEST(Server, ModelsHealthMetricsAndPage) {
  Running s(ServerOptions{.model_id = "my-alias"});
  auto c = s.client();
  auto res = c.Get("/v1/models");
  ASSERT_TRUE(res);
  json models = json::parse(res->body);
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "my-alias");
  EXPECT_EQ(models["data"][0]["object"], "model");
  res = c.Get("/v1/models/my-alias");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(expect_error(c.Get("/v1/models/gpt-4"), 404).find("'my-alias'"), std::string::npos);

  res = c.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["status"], "ok");

  post(c, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 5}, {"temperature", 0}}, 200);
  // A response is counted once it has been written, which can be just after the client has read it.
  const std::string counted = "wgllm_http_responses_total{route=\"/v1/completions\",status=\"200\"} 1\n";
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  do {
    res = c.Get("/metrics");
    ASSERT_TRUE(res);
  } while (res->body.find(counted) == std::string::npos && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0), 0u);
  for (const char* line : {"# TYPE wgllm_generated_tokens_total counter\nwgllm_generated_tokens_total 5\n",
                           "wgllm_prompt_tokens_total 2\n", "wgllm_queue_depth 0\n", "wgllm_slots_active 0\n",
                           "# TYPE wgllm_generated_tokens_per_second gauge\n",
                           "wgllm_http_responses_total{route=\"/v1/completions\",status=\"200\"} 1\n"})
    EXPECT_NE(res->body.find(line), std::string::npos) << line << "\nin:\n" << res->body;
  // One step per token: the prompt's pass samples the first, each later step one more.
  EXPECT_EQ(metric(s, "wgllm_steps_total"), 5);
  EXPECT_GT(metric(s, "wgllm_step_seconds_total"), 0);

  res = c.Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(res->get_header_value("Content-Security-Policy").find("script-src 'self'"), std::string::npos);
  EXPECT_NE(res->body.find("<script src=\"chat.js\""), std::string::npos);
  for (const char* asset : {"/chat.js", "/chat.css"}) {
    res = c.Get(asset);
    ASSERT_TRUE(res) << asset;
    EXPECT_EQ(res->status, 200) << asset;
  }
  // Nothing else from the filesystem.
  for (const char* path : {"/../CMakeLists.txt", "/index.html/../chat.js", "/etc/passwd", "/models/x.gguf"})
    expect_error(c.Get(path), 404);
}

TEST(Server, MalformedJsonAndWrongTypesAre400NamingTheField) {
  Running s;
  auto c = s.client();
  EXPECT_NE(expect_error(c.Post("/v1/chat/completions", "{\"messages\": [", "application/json"), 400)
                .find("not valid JSON"),
            std::string::npos);
  auto res =
      c.Post("/v1/chat/completions",
             R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"})", "application/json");
  EXPECT_NE(expect_error(res, 400).find("'max_tokens'"), std::string::npos);
  EXPECT_EQ(json::parse(res->body)["error"]["param"], "max_tokens");
  res = c.Post("/v1/completions", R"({"prompt": [1, 99999]})", "application/json");
  EXPECT_NE(expect_error(res, 400).find("99999"), std::string::npos);
  // The server keeps serving.
  post(c, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}, 200);
}

// A web page on another origin may POST these types without a CORS preflight; they are refused.
TEST(Server, BodiesABrowserSendsAcrossOriginsAre415) {
  Running s;
  auto c = s.client();
  const std::string big(10000, 'x');  // over cpp-httplib's own 8 KiB cap on form bodies
  for (const char* type :
       {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"}) {
    for (const std::string& body : {std::string(R"({"prompt": "x"})"), big}) {
      std::string message = expect_error(c.Post("/v1/chat/completions", body, type), 415);
      EXPECT_NE(message.find("application/json"), std::string::npos) << type << ": " << message;
    }
  }
  // A client that sends no type at all is served (cpp-httplib's client would add text/plain: a raw socket).
  const std::string body = R"({"prompt": "Once", "max_tokens": 2})";
  std::string reply =
      raw_http(s.port(), "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  EXPECT_EQ(reply.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << reply;
}

// A page on a host name that resolves to 127.0.0.1 (DNS rebinding) does not reach a loopback server.
TEST(Server, LoopbackServerAnswersOnlyLoopbackHostNames) {
  Running s;
  auto c = s.client();
  for (const char* host : {"evil.example", "evil.example:8080", "192.168.1.2", "[fe80::1]:80"}) {
    httplib::Headers headers = {{"Host", host}};
    std::string message = expect_error(c.Get("/v1/models", headers), 403);
    EXPECT_NE(message.find("--host"), std::string::npos) << message;
    EXPECT_EQ(c.Get("/", headers)->status, 403) << host;
  }
  for (const char* host :
       {"localhost", "LOCALHOST:8080", "127.0.0.1", "127.1.2.3:99", "[::1]:8080", "app.localhost"}) {
    httplib::Headers headers = {{"Host", host}};
    auto res = c.Get("/v1/models", headers);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << host;
  }
}

TEST(Server, UnknownModelIs404WithTheServedId) {
  Running s;
  auto c = s.client();
  std::string message = expect_error(
      c.Post("/v1/chat/completions", R"({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})",
             "application/json"),
      404);
  EXPECT_NE(message.find("gpt-4o"), std::string::npos) << message;
  EXPECT_NE(message.find("stories260K"), std::string::npos) << message;
}

TEST(Server, PromptLongerThanTheContextIs400NamingBothNumbers) {
  Running s;  // 256 positions
  auto c = s.client();
  std::string prompt;
  for (int i = 0; i < 300; ++i) prompt += "cat ";
  size_t n = model().tok->encode(prompt, true).size();
  ASSERT_GE(n, 256u);
  std::string message =
      expect_error(c.Post("/v1/completions", json{{"prompt", prompt}}.dump(), "application/json"), 400);
  EXPECT_NE(message.find(std::to_string(n)), std::string::npos) << message;
  EXPECT_NE(message.find("256"), std::string::npos) << message;
  EXPECT_EQ(json::parse(c.Post("/v1/completions", json{{"prompt", prompt}}.dump(), "application/json")
                            ->body)["error"]["param"],
            "prompt");
}

TEST(Server, BodyOverTheLimitIs413) {
  Running s(ServerOptions{.max_body_bytes = 4096});
  auto c = s.client();
  json body = {{"prompt", std::string(5000, 'a')}};
  std::string message = expect_error(c.Post("/v1/completions", body.dump(), "application/json"), 413);
  EXPECT_NE(message.find("4096"), std::string::npos) << message;
  post(c, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}, 200);
}

TEST(Server, WrongMethodIs405AndUnknownRouteIs404) {
  Running s;
  auto c = s.client();
  auto res = c.Get("/v1/chat/completions");
  expect_error(res, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "POST");
  res = c.Delete("/v1/models");
  expect_error(res, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "GET, HEAD");
  expect_error(c.Put("/health", "", "text/plain"), 405);
  expect_error(c.Post("/v1/embeddings", "{}", "application/json"), 404);
}

TEST(Server, ApiKeyGuardsTheApi) {
  Running s(ServerOptions{.api_key = "sekrit"});
  auto c = s.client();
  auto res = c.Get("/v1/models");
  EXPECT_NE(expect_error(res, 401).find("Authorization: Bearer"), std::string::npos);
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "invalid_api_key");
  expect_error(c.Get("/metrics"), 401);
  expect_error(c.Post("/v1/completions", R"({"prompt": "x"})", "application/json"), 401);
  c.set_bearer_token_auth("wrong");
  expect_error(c.Get("/v1/models"), 401);
  c.set_bearer_token_auth("sekrit");
  res = c.Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  post(c, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}, 200);
  // The page and the health check stay open: the page asks for the key itself.
  httplib::Client anonymous = s.client();
  EXPECT_EQ(anonymous.Get("/health")->status, 200);
  EXPECT_EQ(anonymous.Get("/")->status, 200);
}

// One slot and no queue: while a request generates, the next gets 429; once it is over, requests pass again.
TEST(Server, BusyPastTheQueueLimitIs429) {
  GatedGenerator gate(model().generator, /*slots=*/1);
  Running s(ServerOptions{.queue_limit = 0}, &gate);
  std::thread first([&] {
    auto c = s.client();
    post(c, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}}, 200);
  });
  // The first request holds the slot once its prompt step ran.
  gate.allow(1);
  ASSERT_TRUE(gate.wait_steps(1));
  auto c = s.client();
  std::string message =
      expect_error(c.Post("/v1/completions", R"({"prompt": "x"})", "application/json"), 429);
  EXPECT_NE(message.find("busy"), std::string::npos) << message;
  gate.open();
  first.join();
  post(c, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}, 200);
}

// A client that disconnects mid-stream: its sequence runs at most one more step, and its slot is free.
TEST(Server, DisconnectedClientIsDroppedWithinOneStep) {
  GatedGenerator gate(model().generator);
  Running s(ServerOptions{}, &gate);
  std::atomic<int> chunks{0};
  std::thread client([&] {
    auto c = s.client();
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = json{{"prompt", "Once"}, {"max_tokens", 100}, {"stream", true}}.dump();
    req.set_header("Content-Type", "application/json");
    // Returning false from the receiver closes the connection.
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
      ++chunks;
      return false;
    };
    c.send(req);
  });
  gate.allow(1);  // the prompt step samples the first token
  client.join();
  ASSERT_GE(chunks.load(), 1);
  uint64_t steps = gate.steps();
  gate.allow(1);  // the step that may already have been under way when the client left
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (s.server().stats().active != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(s.server().stats().active, 0u) << "the slot is still held";
  EXPECT_LE(gate.steps(), steps + 1);
  // The slot serves the next request.
  gate.open();
  auto c = s.client();
  post(c, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}, 200);
}

TEST(Server, StreamingSendsRoleTextFinishUsageAndDone) {
  Running s;
  auto c = s.client();
  std::string body;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.body = json{{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                  {"temperature", 0},
                  {"max_tokens", 8},
                  {"stream", true},
                  {"stream_options", {{"include_usage", true}}}}
                 .dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    body.append(data, n);
    return true;
  };
  auto res = c.send(req);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  std::vector<json> events;
  size_t at = 0;
  bool done = false;
  while ((at = body.find("data: ", at)) != std::string::npos) {
    size_t end = body.find("\n\n", at);
    ASSERT_NE(end, std::string::npos);
    std::string data = body.substr(at + 6, end - at - 6);
    at = end + 2;
    if (data == "[DONE]") {
      done = true;
      EXPECT_EQ(at, body.size()) << "nothing after [DONE]";
      break;
    }
    events.push_back(json::parse(data));
  }
  ASSERT_TRUE(done);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front()["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_EQ(events[i]["object"], "chat.completion.chunk");
    EXPECT_TRUE(events[i]["usage"].is_null());
    text += events[i]["choices"][0]["delta"].value("content", "");
  }
  EXPECT_EQ(events[events.size() - 2]["choices"][0]["finish_reason"], "length");
  const json& last = events.back();
  EXPECT_TRUE(last["choices"].empty());
  EXPECT_EQ(last["usage"]["completion_tokens"], 8);
  std::vector<int32_t> prompt = model().tok->encode(chatml("Hi"), true);
  const std::string expected = reference_reply(prompt, 8);
  EXPECT_EQ(text, expected);
}

// Batch invariance: 8 greedy requests at once (prompts of 2-91 tokens, so some prefill through the GEMM)
// each give the text they give alone, and that text is llama2.c's story after the prompt.
TEST(ServerBatching, ConcurrentGreedyRequestsGiveTheirTextAlone) {
  const Story& story = Story::get();
  const std::vector<size_t> given = {1, 5, 12, 20, 33, 47, 64, 90};
  std::vector<std::string> alone, together(given.size());
  {
    runtime::Batcher fresh(*model().forward);
    Running s(ServerOptions{}, &fresh);
    for (size_t k : given) alone.push_back(complete(s, story_request(k, 200 - k)));
  }
  runtime::Batcher fresh(*model().forward);
  Running s(ServerOptions{}, &fresh);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < given.size(); ++i)
    clients.emplace_back(
        [&, i] { together[i] = complete(s, story_request(given[i], 200 - given[i], i % 2)); });
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < given.size(); ++i) {
    SCOPED_TRACE("prompt of BOS and " + std::to_string(given[i]) + " tokens of the story");
    EXPECT_EQ(together[i], alone[i]);
    EXPECT_EQ(alone[i], story.continuation(given[i], 200 - given[i]));
  }
  // One by one they would take 1328 steps.
  EXPECT_LT(s.server().stats().steps, 400u) << "the requests did not run together";
}

// A follow-up chat turn reuses the KV cache of its shared prefix: cached_tokens is that prefix (the first
// prompt and the reply tokens fed back, as far as the new prompt's tokens agree with them), and the reply
// is the reference's greedy continuation, the same as from a server that reuses nothing.
TEST(ServerBatching, FollowUpTurnReusesTheCachedPrefix) {
  const std::string u1 = "Tell me a story about a cat.", u2 = "What did the cat do next?";
  const std::vector<int32_t> prompt1 = model().tok->encode(chatml(u1), true);
  const std::vector<int32_t> reply1 = reference_ids(prompt1, 12);
  const std::string reply1_text = text_of(reply1, true);
  const std::vector<int32_t> prompt2 =
      model().tok->encode(chatml(u1) + reply1_text + "<|im_end|>\n" + chatml(u2), true);
  // The slot holds the first prompt and the reply's tokens but the last (never fed back).
  std::vector<int32_t> cached = prompt1;
  cached.insert(cached.end(), reply1.begin(), reply1.end() - 1);
  const size_t common = std::mismatch(cached.begin(), cached.end(), prompt2.begin()).first - cached.begin();
  const size_t expected_cached = std::min(common, prompt2.size() - 1);
  ASSERT_GT(expected_cached, prompt1.size());
  const std::string reply2 = reference_reply(prompt2, 16);

  const json turn1 = {
      {"messages", {{{"role", "user"}, {"content", u1}}}}, {"temperature", 0}, {"max_tokens", 12}};
  const json turn2 = {{"messages",
                       {{{"role", "user"}, {"content", u1}},
                        {{"role", "assistant"}, {"content", reply1_text}},
                        {{"role", "user"}, {"content", u2}}}},
                      {"temperature", 0},
                      {"max_tokens", 16}};
  runtime::Batcher fresh(*model().forward);
  Running s(ServerOptions{}, &fresh);
  auto c = s.client();
  json r1 = post(c, "/v1/chat/completions", turn1, 200);
  EXPECT_EQ(r1["choices"][0]["message"]["content"], reply1_text);
  EXPECT_EQ(r1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  // Another conversation in between takes another slot and leaves the first one's cache alone.
  post(c, "/v1/completions", story_request(3, 5), 200);
  json r2 = post(c, "/v1/chat/completions", turn2, 200);
  EXPECT_EQ(r2["usage"]["prompt_tokens"], prompt2.size());
  EXPECT_EQ(r2["usage"]["prompt_tokens_details"]["cached_tokens"], expected_cached);
  EXPECT_EQ(r2["choices"][0]["message"]["content"], reply2);
  // The same turn again: everything but the prompt's last token (whose logits it needs) is reused.
  json again = post(c, "/v1/chat/completions", turn2, 200);
  EXPECT_EQ(again["usage"]["prompt_tokens_details"]["cached_tokens"], prompt2.size() - 1);
  EXPECT_EQ(again["choices"][0]["message"]["content"], reply2);
  EXPECT_EQ(metric(s, "wgllm_prompt_tokens_cached_total"), double(expected_cached + prompt2.size() - 1));

  runtime::Batcher nothing_cached(*model().forward);
  Running t(ServerOptions{}, &nothing_cached);
  auto d = t.client();
  json without = post(d, "/v1/chat/completions", turn2, 200);
  EXPECT_EQ(without["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(without["choices"][0]["message"]["content"], reply2);
}

// While two requests decode, one with a long prompt joins and one finishes after 5 tokens: every text is
// still llama2.c's story after its prompt.
TEST(ServerBatching, JoiningAndEarlyFinishingRequestsLeaveTheOthersAlone) {
  const Story& story = Story::get();
  runtime::Batcher fresh(*model().forward);
  GatedGenerator gate(fresh);
  Running s(ServerOptions{}, &gate);
  std::string a, b, joining, early;
  std::thread ta([&] { a = complete(s, story_request(3, 150, /*stream=*/true)); });
  std::thread tb([&] { b = complete(s, story_request(10, 120)); });
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (s.server().stats().active + s.server().stats().queued < 2 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  gate.allow(6);
  ASSERT_TRUE(gate.wait_steps(6));
  ASSERT_EQ(s.server().stats().active, 2u);
  std::thread tc([&] { joining = complete(s, story_request(90, 100)); });
  std::thread td([&] { early = complete(s, story_request(40, 5, /*stream=*/true)); });
  // Both have arrived: queued, or already admitted into a free slot if the scheduler was between steps
  // when they came (it admits before it enters the gated step). Either way they join running sequences.
  auto arrived = [&] {
    const auto st = s.server().stats();  // one snapshot: a request moving from the queue is counted once
    return st.active + st.queued;
  };
  while (arrived() < 4 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(arrived(), 4u);
  gate.open();
  for (std::thread* t : {&ta, &tb, &tc, &td}) t->join();
  EXPECT_EQ(a, story.continuation(3, 150));
  EXPECT_EQ(b, story.continuation(10, 120));
  EXPECT_EQ(joining, story.continuation(90, 100));
  EXPECT_EQ(early, story.continuation(40, 5));
}

// A streaming client that leaves while two others generate: its slot is free within one step (/metrics
// says so), and the others' texts are unchanged.
TEST(ServerBatching, DisconnectFreesTheSlotWithinOneStep) {
  const Story& story = Story::get();
  runtime::Batcher fresh(*model().forward);
  GatedGenerator gate(fresh);
  Running s(ServerOptions{}, &gate);
  std::string a, b;
  std::thread ta([&] { a = complete(s, story_request(3, 120)); });
  std::thread tb([&] { b = complete(s, story_request(30, 100, /*stream=*/true)); });
  std::atomic<bool> left{false};
  std::atomic<int> chunks{0};
  std::thread leaver([&] {
    auto c = s.client();
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = story_request(20, 150, /*stream=*/true).dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
      ++chunks;
      return false;  // closes the connection
    };
    c.send(req);
    left = true;
  });
  // Step by step until the leaving client has had its first text and gone.
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!left && std::chrono::steady_clock::now() < deadline) {
    const uint64_t n = gate.steps();
    gate.allow(1);
    ASSERT_TRUE(gate.wait_steps(n + 1));
    std::this_thread::sleep_for(20ms);  // the token's text reaches the client
  }
  leaver.join();
  ASSERT_GE(chunks.load(), 1);
  const uint64_t steps = gate.steps();
  gate.allow(1);  // the step that may have begun before the client left
  while (metric(s, "wgllm_slots_active") != 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(metric(s, "wgllm_slots_active"), 2);
  EXPECT_LE(gate.steps(), steps + 1);
  gate.open();
  ta.join();
  tb.join();
  EXPECT_EQ(a, story.continuation(3, 120));
  EXPECT_EQ(b, story.continuation(30, 100));
  EXPECT_EQ(metric(s, "wgllm_slots_active"), 0);
}

// OpenAI's presence and frequency penalties reach the sampler: a greedy completion with them is the
// reference's greedy continuation with the penalties applied as defined (a token seen n > 0 times among the
// last repeat_last_n tokens, the prompt's included, loses presence_penalty + n * frequency_penalty).
TEST(Server, PresenceAndFrequencyPenaltiesApplyAsDefined) {
  const Story& story = Story::get();
  const std::vector<int32_t> prompt = story.prompt(10);
  constexpr size_t kNew = 40, kWindow = 16;
  constexpr double kPresence = 1.5, kFrequency = 0.75;
  cpu::ReferenceModel ref(*model().file);
  std::vector<int32_t> seq = prompt, ids;
  std::vector<double> logits = ref.forward(prompt).back();
  while (ids.size() < kNew) {
    std::map<int32_t, int> seen;
    for (size_t i = seq.size() - std::min(seq.size(), kWindow); i < seq.size(); ++i) ++seen[seq[i]];
    for (const auto& [id, n] : seen) logits[static_cast<size_t>(id)] -= kPresence + n * kFrequency;
    const auto id = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (model().tok->is_eog(id)) break;
    ids.push_back(id);
    seq.push_back(id);
    logits = ref.step(id);
  }
  const std::string expected = text_of(ids, /*strip_leading_space=*/false);
  ASSERT_NE(expected, story.continuation(10, ids.size())) << "the penalties change nothing here";
  Running s;
  auto c = s.client();
  json r = post(c, "/v1/completions",
                {{"prompt", prompt},
                 {"temperature", 0},
                 {"max_tokens", kNew},
                 {"presence_penalty", kPresence},
                 {"frequency_penalty", kFrequency},
                 {"repeat_last_n", kWindow}},
                200);
  EXPECT_EQ(r["choices"][0]["text"], expected);
}

// A device, model and Batcher of the test's own, which it may destroy and make again.
struct OwnDevice {
  std::unique_ptr<gpu::Device> device;
  std::unique_ptr<runtime::Forward> forward;
  std::unique_ptr<runtime::Batcher> batcher;
  runtime::Generator& open() {
    batcher.reset();
    forward.reset();
    device = gpu::open_device();
    forward = std::make_unique<runtime::Forward>(*device, *model().file,
                                                 runtime::ForwardOptions{.n_ctx = 256, .n_seq = 2});
    batcher = std::make_unique<runtime::Batcher>(*forward);
    return *batcher;
  }
};

// Blocks a thread at a point until the test lets it go on; tells whether it got there.
class Latch {
 public:
  void arrive_and_wait() {
    std::unique_lock lock(mutex_);
    arrived_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
  }
  bool wait_arrived(std::chrono::milliseconds timeout = 30s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return arrived_; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool arrived_ = false, released_ = false;
};

// Opens a latch when it goes out of scope. Declared after the server it gates, so that a failed assertion
// cannot leave the server's scheduler waiting in it while the server's destructor waits for the scheduler.
struct ReleaseOnExit {
  Latch& latch;
  ~ReleaseOnExit() { latch.release(); }
};

// The GPU device destroyed mid-generation, as a driver reset would: the streaming request in flight ends
// with an error event naming the loss, /health and /metrics say degraded while the device and model are
// made again, a request that arrives meanwhile waits and is then served, and the texts are llama2.c's
// story again.
TEST(ServerFaults, DeviceLossFailsTheRequestInFlightAndTheServerRecovers) {
  const Story& story = Story::get();
  OwnDevice own;
  GatedGenerator gate(own.open());
  gpu::Device* lost = own.device.get();
  Latch recovering;
  Running s(ServerOptions{}, &gate, std::nullopt, [&]() -> runtime::Generator& {
    recovering.arrive_and_wait();
    return own.open();
  });
  ReleaseOnExit release_recovering{recovering};
  std::string streamed;
  std::thread client([&] {
    auto c = s.client();
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = story_request(3, 100, /*stream=*/true).dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      streamed.append(data, n);
      return true;
    };
    auto res = c.send(req);
    EXPECT_TRUE(res && res->status == 200);
  });
  gate.allow(3);
  ASSERT_TRUE(gate.wait_steps(3));
  lost->simulate_loss();  // the scheduler waits in the gate, outside the device
  gate.open();
  ASSERT_TRUE(recovering.wait_arrived());

  auto c = s.client();
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  json h = json::parse(health->body);
  EXPECT_EQ(h["status"], "degraded");
  EXPECT_NE(h["reason"].get<std::string>().find("GPU device lost"), std::string::npos) << health->body;
  EXPECT_EQ(metric(s, "wgllm_degraded"), 1);
  client.join();
  EXPECT_NE(streamed.find("\"error\""), std::string::npos) << streamed;
  EXPECT_NE(streamed.find("GPU device lost"), std::string::npos) << streamed;
  EXPECT_TRUE(streamed.ends_with("data: [DONE]\n\n")) << streamed;
  EXPECT_EQ(reply_text(streamed.substr(0, streamed.find("data: {\"error\""))), story.continuation(3, 3))
      << "the text of the steps before the loss";

  std::string waiting;
  std::thread late([&] { waiting = complete(s, story_request(5, 60)); });
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (s.server().stats().queued == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  recovering.release();
  late.join();
  EXPECT_EQ(waiting, story.continuation(5, 60));
  EXPECT_EQ(complete(s, story_request(40, 30, /*stream=*/true)), story.continuation(40, 30));
  health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200) << health->body;
  EXPECT_EQ(metric(s, "wgllm_degraded"), 0);
  EXPECT_EQ(metric(s, "wgllm_recoveries_total"), 1);
}

// Steps that always fail, as on a device that is gone.
class BrokenGenerator : public GatedGenerator {
 public:
  using GatedGenerator::GatedGenerator;
  std::vector<Sampled> step() override { fail_runtime("GPU device lost: unplugged"); }
};

// When the device cannot be made again at once: queued requests end with 503, new ones get 503 at once,
// /health says why, also while the next attempt (a second later) runs; that one works and the server
// generates again.
TEST(ServerFaults, FailedRecoveryRefusesRequestsUntilARetryWorks) {
  runtime::Batcher fresh(*model().forward);
  BrokenGenerator broken(fresh);
  std::atomic<int> attempts{0};
  Latch first_attempt, retry;
  Running s(ServerOptions{}, &broken, std::nullopt, [&]() -> runtime::Generator& {
    const int attempt = ++attempts;
    if (attempt == 1) {
      first_attempt.arrive_and_wait();
      fail_runtime("no adapter found");
    }
    if (attempt == 2) retry.arrive_and_wait();  // until the checks below have run
    return fresh;
  });
  ReleaseOnExit release_first{first_attempt}, release_retry{retry};
  std::string failed;
  std::thread first([&] {
    failed =
        expect_error(s.client().Post("/v1/completions", story_request(3, 5).dump(), "application/json"), 500);
  });
  ASSERT_TRUE(first_attempt.wait_arrived());
  first.join();
  EXPECT_NE(failed.find("GPU device lost: unplugged"), std::string::npos) << failed;
  // Queued while the first attempt runs: refused when it fails.
  std::string queued;
  std::thread waiting([&] {
    queued =
        expect_error(s.client().Post("/v1/completions", story_request(3, 5).dump(), "application/json"), 503);
  });
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (s.server().stats().queued == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  first_attempt.release();
  waiting.join();
  EXPECT_NE(queued.find("no adapter found"), std::string::npos) << queued;
  // Until the retry works: refused at once, and /health says why, before the retry and while it runs.
  auto c = s.client();
  for (int phase = 0; phase < 2; ++phase) {
    if (phase == 1) {
      ASSERT_TRUE(retry.wait_arrived());
    }
    EXPECT_NE(expect_error(c.Post("/v1/completions", story_request(3, 5).dump(), "application/json"), 503)
                  .find("no adapter found"),
              std::string::npos)
        << "phase " << phase;
    auto health = c.Get("/health");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 503);
    EXPECT_NE(health->body.find("no adapter found"), std::string::npos) << "phase " << phase << health->body;
  }
  retry.release();
  while (metric(s, "wgllm_recoveries_total") != 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(complete(s, story_request(3, 20)), Story::get().continuation(3, 20));
  EXPECT_EQ(c.Get("/health")->status, 200);
}

// A generator that breaks for good while idle, as a mesh whose stage died between requests.
class BreakingGenerator : public GatedGenerator {
 public:
  using GatedGenerator::GatedGenerator;
  std::optional<std::string> broken() const override {
    if (!broken_) return std::nullopt;
    return "the mesh lost a stage: stage 1 (rank 1 on test) is gone";
  }
  void lose_a_stage() { broken_ = true; }

 private:
  std::atomic<bool> broken_{false};
};

// Without a way to make the generator again, a broken one leaves the server up and degraded: /health says
// why before any request fails, and requests get 503 with that reason.
TEST(ServerFaults, BrokenGeneratorIsReportedAndRequestsGet503) {
  runtime::Batcher fresh(*model().forward);
  BreakingGenerator generator(fresh);
  generator.open();
  Running s(ServerOptions{}, &generator);
  EXPECT_EQ(complete(s, story_request(3, 5)), Story::get().continuation(3, 5));
  generator.lose_a_stage();

  auto c = s.client();
  auto health = c.Get("/health");
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       health && health->status == 200 && std::chrono::steady_clock::now() < deadline;
       health = c.Get("/health"))
    std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  const json h = json::parse(health->body);
  EXPECT_EQ(h["status"], "degraded");
  EXPECT_NE(h["reason"].get<std::string>().find("the mesh lost a stage: stage 1"), std::string::npos)
      << health->body;
  EXPECT_EQ(metric(s, "wgllm_degraded"), 1);

  for (bool stream : {false, true}) {
    auto res = c.Post("/v1/completions", story_request(3, 5, stream).dump(), "application/json");
    const std::string message = expect_error(res, 503);
    EXPECT_NE(message.find("the mesh lost a stage: stage 1 (rank 1 on test) is gone"), std::string::npos)
        << message;
    EXPECT_EQ(json::parse(res->body)["error"]["type"], "server_error");
  }
  EXPECT_EQ(c.Get("/health")->status, 503);
}

// `wgllm serve` as a user starts it: a port that is taken is a clear error and exit code 1.
TEST(ServeCommand, PortInUseIsAClearError) {
  Running s;
  const std::string port = std::to_string(s.port());
  test::Process p = test::run_wgllm({"serve", "--port", port});
  EXPECT_EQ(p.exit_code, 1) << p.err;
  EXPECT_NE(p.err.find("cannot bind to 127.0.0.1:" + port), std::string::npos) << p.err;
  p = test::run_wgllm({"serve", "--port", "70000"});
  EXPECT_EQ(p.exit_code, 2) << p.err;
}

}  // namespace
}  // namespace wgllm::server
