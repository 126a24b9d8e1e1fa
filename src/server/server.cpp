#include "server/server.hpp"

#include <arpa/inet.h>
#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/error.hpp"
#include "server/api_error.hpp"
#include "server/openai_request.hpp"
#include "server/page_assets.hpp"
#include "server/peer_watch.hpp"

namespace wgllm::server {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// How often a waiting request looks at its client when no step wakes it (queued, or between slow steps).
constexpr auto kPollInterval = 100ms;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void send_json(httplib::Response& res, const json& body, int status = 200) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  send_json(res, e.to_json(), e.status);
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint32_t random_u32() {
  static std::mutex mutex;
  static std::mt19937 rng{std::random_device{}()};
  std::lock_guard lock(mutex);
  return rng();
}

std::string random_id(const char* prefix) {
  static const char* hex = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 6; ++i) {
    uint32_t r = random_u32();
    for (int k = 0; k < 4; ++k) id += hex[(r >> (4 * k)) & 15];
  }
  return id;
}

// Compares without an early exit, so that response times do not reveal how much of a key was right.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() != b.size();
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

const char* mime_type(std::string_view name) {
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

// One response's identity and shape: chat ("chat.completion") or text ("text_completion").
struct Reply {
  bool chat;
  std::string id;
  int64_t created;
  std::string model;

  json envelope(const char* chat_object, const char* text_object) const {
    return {{"id", id}, {"object", chat ? chat_object : text_object}, {"created", created}, {"model", model}};
  }
  json final_body(const std::string& text, FinishReason finish, const Usage& usage) const {
    json j = envelope("chat.completion", "text_completion");
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", to_string(finish)}};
    if (chat)
      choice["message"] = {{"role", "assistant"}, {"content", text}};
    else
      choice["text"] = text;
    j["choices"] = json::array({choice});
    j["usage"] = usage_json(usage);
    return j;
  }
  // A streamed chunk: new text (chat: a delta, first with the role), or the finish reason.
  json chunk(const std::string* text, bool first, const FinishReason* finish, bool include_usage) const {
    json j = envelope("chat.completion.chunk", "text_completion");
    json choice = {{"index", 0},
                   {"logprobs", nullptr},
                   {"finish_reason", finish ? json(to_string(*finish)) : json(nullptr)}};
    if (chat) {
      json delta = json::object();
      if (first) delta["role"] = "assistant";
      if (text) delta["content"] = *text;
      choice["delta"] = delta;
    } else {
      choice["text"] = text ? *text : std::string();
    }
    j["choices"] = json::array({choice});
    if (include_usage) j["usage"] = nullptr;
    return j;
  }
  json usage_chunk(const Usage& usage) const {
    json j = envelope("chat.completion.chunk", "text_completion");
    j["choices"] = json::array();
    j["usage"] = usage_json(usage);
    return j;
  }
};

std::string sse(const json& j) {
  return "data: " + dump(j) + "\n\n";
}

ApiError job_error(const Job::Progress& p) {
  if (p.error_status == 400) return ApiError(400, "invalid_request_error", p.error);
  if (p.error_status == 503) return ApiError(503, "server_error", p.error);
  return ApiError(500, "server_error", p.error);
}

// "localhost", "127.0.0.1" (any of 127/8), "::1"; case-insensitive.
bool is_loopback(std::string host) {
  for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (host == "localhost" || host.ends_with(".localhost") || host == "::1") return true;
  in_addr v4{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

// The host name of a Host header: without the port, IPv6 literals without their brackets.
std::string host_name(const std::string& header) {
  if (header.starts_with('[')) return header.substr(1, header.find(']') - 1);
  return header.substr(0, header.find(':'));
}

// Browsers send these content types across origins without asking the server first (no CORS preflight),
// so any web page a user visits could make a local server generate; a JSON body needs the preflight, which
// this server never grants. Returns the request's type when it is one of them.
const char* cross_origin_type(const httplib::Request& req) {
  const std::string type = req.get_header_value("Content-Type");
  for (const char* simple : {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
    if (type.rfind(simple, 0) == 0) return simple;
  return nullptr;
}

ApiError unsupported_type(const char* type) {
  return ApiError(
      415, "invalid_request_error",
      std::string("a ") + type + " body is not accepted; send JSON with \"Content-Type: application/json\"");
}

// The route a path belongs to, for 405 and for the request counters; empty when there is none.
std::string route_of(const std::string& path) {
  for (const char* r : {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"})
    if (path == r) return r;
  if (path.rfind("/v1/models/", 0) == 0 && path.size() > 11) return "/v1/models/{id}";
  if (path == "/") return "/";
  for (const PageAsset& a : page_assets())
    if (path.size() == a.name.size() + 1 && path.substr(1) == a.name) return "/{page}";
  return {};
}

const char* allowed_methods(const std::string& route) {
  if (route == "/v1/chat/completions" || route == "/v1/completions") return "POST";
  return "GET, HEAD";
}

}  // namespace

Server::Server(runtime::Generator& generator, const tokenizer::Tokenizer& tokenizer,
               const std::optional<std::string>& chat_template, ServerOptions options, Recover recover)
    : tokenizer_(tokenizer),
      prompts_(tokenizer, chat_template),
      options_(std::move(options)),
      scheduler_(generator, tokenizer, options_.queue_limit, std::move(recover)),
      http_(std::make_unique<httplib::Server>()),
      created_(unix_time()) {
  // A connection holds a thread while it waits for its tokens: enough threads for every slot, a full
  // queue and the quick routes beside them.
  size_t threads = std::min<size_t>(size_t(generator.slots()) + options_.queue_limit + 16, 1024);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(options_.max_body_bytes);
  // cpp-httplib's default also sets SO_REUSEPORT, which lets a second server bind the same port and take
  // half of the connections; a taken port must be an error instead.
  http_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  routes();
}

Server::~Server() {
  stop();
}

int Server::bind() {
  int port = options_.port;
  if (port == 0) {
    port = http_->bind_to_any_port(options_.host);
    if (port < 0) fail_runtime("cannot bind to " + options_.host + " on any port");
  } else if (!http_->bind_to_port(options_.host, port)) {
    fail_runtime("cannot bind to " + options_.host + ":" + std::to_string(port) +
                 " (is another server using the port?)");
  }
  return port;
}

void Server::serve() {
  http_->listen_after_bind();
}

void Server::stop() {
  scheduler_.stop();  // waiting requests end (503) instead of holding their threads
  http_->stop();
}

void Server::count(const std::string& route, int status) {
  std::lock_guard lock(counts_mutex_);
  ++responses_[{route.empty() ? "other" : route, status}];
}

std::string Server::metrics() const {
  SchedulerStats s = scheduler_.stats();
  std::ostringstream o;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n'
      << name << ' ' << value << '\n';
  };
  o << "# HELP wgllm_http_responses_total HTTP responses by route and status.\n"
       "# TYPE wgllm_http_responses_total counter\n";
  {
    std::lock_guard lock(counts_mutex_);
    for (const auto& [key, n] : responses_)
      o << "wgllm_http_responses_total{route=\"" << key.first << "\",status=\"" << key.second << "\"} " << n
        << '\n';
  }
  metric("wgllm_requests_finished_total", "counter", "Generation requests that ran to their end.",
         s.requests_finished);
  metric("wgllm_prompt_tokens_total", "counter", "Prompt tokens of the requests that started.",
         s.prompt_tokens);
  metric("wgllm_prompt_tokens_cached_total", "counter", "Prompt tokens whose KV cache was reused.",
         s.cached_tokens);
  metric("wgllm_generated_tokens_total", "counter", "Tokens sampled for requests.", s.generated_tokens);
  metric("wgllm_steps_total", "counter", "Generation steps (one submit each, all running sequences).",
         s.steps);
  metric("wgllm_step_seconds_total", "counter",
         "Seconds inside generation steps (recording, submitting, waiting for the GPU).", s.step_seconds);
  metric("wgllm_generated_tokens_per_second", "gauge",
         "Generated tokens per second of stepping, all sequences together, over the last 10 s.",
         s.tokens_per_second);
  metric("wgllm_queue_depth", "gauge", "Requests waiting for a slot.", s.queued);
  metric("wgllm_slots_active", "gauge", "Slots generating for a request.", s.active);
  metric("wgllm_slots", "gauge", "Sequences that can generate at once (--parallel).", s.slots);
  metric("wgllm_context_size", "gauge", "Positions per sequence (--ctx-size).", scheduler_.context_size());
  metric("wgllm_degraded", "gauge", "1 while generation has failed and is not working again (see /health).",
         s.degraded ? 1 : 0);
  metric("wgllm_recoveries_total", "counter",
         "Times the generator (GPU device, weights, KV cache) was made again after a failure.", s.recoveries);
  return o.str();
}

void Server::routes() {
  httplib::Server& h = *http_;
  auto guarded = [this](httplib::Server::Handler fn) {
    return [fn](const httplib::Request& req, httplib::Response& res) {
      try {
        fn(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::BadInput)
          send_error(res, ApiError(400, "invalid_request_error", e.what()));
        else
          send_error(res, ApiError(500, "server_error", e.what()));
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, "server_error", e.what()));
      }
    };
  };

  h.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    // DNS rebinding: a web page whose host name resolves to 127.0.0.1 would be same-origin with a
    // loopback server. Such a server answers only requests addressed to a loopback name.
    if (is_loopback(options_.host) && !is_loopback(host_name(req.get_header_value("Host")))) {
      send_error(res, ApiError(403, "invalid_request_error",
                               "this server listens on " + options_.host +
                                   " and answers only requests for localhost or a loopback address (Host: " +
                                   req.get_header_value("Host") + "); start it with --host to serve others"));
      return httplib::Server::HandlerResponse::Handled;
    }
    bool protected_route = req.path.rfind("/v1/", 0) == 0 || req.path == "/metrics";
    if (options_.api_key.empty() || !protected_route) return httplib::Server::HandlerResponse::Unhandled;
    std::string auth = req.get_header_value("Authorization");
    const std::string scheme = "Bearer ";
    if (auth.rfind(scheme, 0) == 0 && same_secret(auth.substr(scheme.size()), options_.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res,
               ApiError(401, "invalid_request_error",
                        auth.empty() ? "this server needs an API key: send \"Authorization: Bearer <key>\""
                                     : "the API key in the Authorization header is not this server's",
                        "", "invalid_api_key"));
    res.set_header("WWW-Authenticate", "Bearer");
    return httplib::Server::HandlerResponse::Handled;
  });

  // Responses that httplib made itself (no route, body too large, unparsable request) get error objects.
  h.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                  httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string route = route_of(req.path);
    if (res.status == 404 && !route.empty()) {
      res.set_header("Allow", allowed_methods(route));
      send_error(res,
                 ApiError(405, "invalid_request_error",
                          req.method + " is not allowed on " + req.path + "; use " + allowed_methods(route)));
    } else if (res.status == 404) {
      send_error(res, ApiError(404, "invalid_request_error", "no route " + req.path, "", "not_found"));
    } else if (const char* type = cross_origin_type(req); type && req.method == "POST") {
      // cpp-httplib parses form and multipart bodies itself and fails on some (a form over 8 KiB whatever
      // --max-body says, a malformed multipart body) before the handler could refuse them.
      send_error(res, unsupported_type(type));
    } else if (res.status == 413) {
      send_error(res, ApiError(413, "invalid_request_error",
                               "the request body is larger than this server's limit of " +
                                   std::to_string(options_.max_body_bytes) + " bytes (--max-body)"));
    } else {
      send_error(res, ApiError(res.status, "invalid_request_error",
                               "the request was not understood (HTTP " + std::to_string(res.status) + ")"));
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  h.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "server_error", what));
  });
  h.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    count(route_of(req.path), res.status);
  });

  h.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    SchedulerStats s = scheduler_.stats();
    json body = {{"status", s.degraded ? "degraded" : "ok"},
                 {"slots", s.slots},
                 {"slots_active", s.active},
                 {"queued", s.queued}};
    if (s.degraded) body["reason"] = s.degraded_reason;
    send_json(res, body, s.degraded ? 503 : 200);
  });
  h.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics(), "text/plain; version=0.0.4; charset=utf-8");
  });

  auto model_json = [this] {
    return json{{"id", options_.model_id},
                {"object", "model"},
                {"created", created_},
                {"owned_by", "wgllm"},
                {"meta",
                 {{"context_size", scheduler_.context_size()},
                  {"n_vocab", tokenizer_.n_vocab()},
                  {"chat_template", prompts_.template_name()}}}};
  };
  h.Get("/v1/models", guarded([model_json](const httplib::Request&, httplib::Response& res) {
          send_json(res, {{"object", "list"}, {"data", json::array({model_json()})}});
        }));
  h.Get(R"(/v1/models/(.+))",
        guarded([this, model_json](const httplib::Request& req, httplib::Response& res) {
          if (req.matches[1] != options_.model_id)
            throw ApiError(404, "invalid_request_error",
                           "the model '" + std::string(req.matches[1]) +
                               "' does not exist; this server serves '" + options_.model_id + "'",
                           "model", "model_not_found");
          send_json(res, model_json());
        }));

  for (bool chat : {true, false}) {
    h.Post(chat ? "/v1/chat/completions" : "/v1/completions",
           guarded([this, chat](const httplib::Request& req, httplib::Response& res) {
             generate(req, res, chat);
           }));
  }

  for (const PageAsset& a : page_assets()) {
    std::string path = a.name == "index.html" ? "/" : "/" + std::string(a.name);
    h.Get(path, [a](const httplib::Request&, httplib::Response& res) {
      // The page runs only its own script and talks only to this server; nothing the model writes can
      // run as code even if it reached the DOM.
      res.set_header("Content-Security-Policy",
                     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                     "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_header("Referrer-Policy", "no-referrer");
      res.set_header("Cache-Control", "no-cache");
      res.set_content(std::string(a.content), mime_type(a.name));
    });
  }

  // The in-browser page and the models it may load (CONTRACTS.md), with the cross-origin isolation headers
  // a page needs for SharedArrayBuffer (threads).
  const httplib::Headers isolated = {{"Cross-Origin-Opener-Policy", "same-origin"},
                                     {"Cross-Origin-Embedder-Policy", "require-corp"}};
  if (std::filesystem::is_directory(options_.web_dir)) {
    for (const char* path : {"/local", "/local/"})
      h.Get(path, [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/local/chat/"); });
    h.set_file_extension_and_mimetype_mapping("wasm", "application/wasm");
    h.set_mount_point("/local", options_.web_dir, isolated);
  }
  if (!options_.models_dir.empty()) {
    h.Get(R"(/models/([^/]+\.gguf))", [this, isolated](const httplib::Request& req, httplib::Response& res) {
      const std::string name = req.matches[1];
      const std::filesystem::path file = std::filesystem::path(options_.models_dir) / name;
      std::error_code ec;
      if (name.starts_with('.') || !std::filesystem::is_regular_file(file, ec)) {
        send_error(res, ApiError(404, "invalid_request_error", "no model file " + name + " in --models-dir",
                                 "", "not_found"));
        return;
      }
      for (const auto& [key, value] : isolated) res.set_header(key, value);
      auto in = std::make_shared<std::ifstream>(file, std::ios::binary);
      res.set_content_provider(std::filesystem::file_size(file), "application/octet-stream",
                               [in](size_t offset, size_t length, httplib::DataSink& sink) {
                                 std::vector<char> buf(std::min<size_t>(length, 1 << 20));
                                 in->seekg(static_cast<std::streamoff>(offset));
                                 in->read(buf.data(), static_cast<std::streamsize>(buf.size()));
                                 return in->gcount() > 0 &&
                                        sink.write(buf.data(), static_cast<size_t>(in->gcount()));
                               });
    });
  }
}

void Server::generate(const httplib::Request& req, httplib::Response& res, bool chat) {
  if (const char* type = cross_origin_type(req)) throw unsupported_type(type);
  GenerationRequest r = chat ? parse_chat_request(req.body) : parse_completion_request(req.body);
  if (!r.model.empty() && r.model != options_.model_id)
    throw ApiError(
        404, "invalid_request_error",
        "the model '" + r.model + "' does not exist; this server serves '" + options_.model_id + "'", "model",
        "model_not_found");
  const char* param = chat ? "messages" : "prompt";
  JobSpec spec;
  if (chat) {
    spec.prompt = prompts_.chat(r.messages);
    spec.strip_leading_space = true;  // the reply is a text of its own, decoded as if alone
  } else if (r.prompt_ids) {
    spec.prompt = *r.prompt_ids;
    for (int32_t id : spec.prompt)
      if (id >= tokenizer_.n_vocab())
        bad_request("'prompt' holds the token id " + std::to_string(id) + ", outside the vocabulary of " +
                        std::to_string(tokenizer_.n_vocab()) + " tokens",
                    "prompt");
  } else {
    spec.prompt = prompts_.completion(r.prompt);
    spec.strip_leading_space = r.prompt.empty();
  }
  if (spec.prompt.empty()) bad_request("the prompt is empty and the vocabulary adds no BOS token", param);
  const uint32_t ctx = scheduler_.context_size();
  if (spec.prompt.size() >= ctx)
    bad_request("the prompt is " + std::to_string(spec.prompt.size()) +
                    " tokens long, but the context holds " + std::to_string(ctx) +
                    " tokens per sequence (--ctx-size) and the reply needs at least one",
                param);
  spec.sampling = r.sampling;
  spec.sampling.seed = r.seed ? *r.seed : random_u32();
  spec.max_tokens = r.max_tokens.value_or(UINT64_MAX);
  spec.stop = r.stop;

  auto job = std::make_shared<Job>(std::move(spec));
  auto watch = std::make_shared<PeerWatch>(req);
  // The scheduler polls the client's socket between steps, so a departed client costs at most one step.
  // The socket stays open until the job is cancelled: by `guard` here, or by the stream's releaser.
  job->watch([watch] { return watch->gone(); });
  struct CancelOnExit {
    std::shared_ptr<Job> job;
    ~CancelOnExit() {
      if (job) job->cancel();
    }
  } guard{job};
  scheduler_.submit(job);
  Reply reply{chat, random_id(chat ? "chatcmpl-" : "cmpl-"), unix_time(), options_.model_id};

  // Wait for a slot here, so that a prompt the generator refuses still gets its own status code.
  std::string text;
  Job::Progress p;
  auto wait = [&](auto until) {
    while (!until()) {
      if (watch->gone()) {
        job->cancel();
        return false;
      }
      p = job->take(kPollInterval);
      text += p.text;
    }
    return true;
  };
  if (!wait([&] { return p.started || p.finish; })) return;
  if (p.finish == FinishReason::Error) throw job_error(p);
  if (!r.stream) {
    if (!wait([&] { return p.finish.has_value(); })) return;
    if (*p.finish == FinishReason::Error) throw job_error(p);
    send_json(res, reply.final_body(text, *p.finish, p.usage));
    return;
  }

  struct Stream {
    std::shared_ptr<Job> job;
    std::shared_ptr<PeerWatch> watch;
    Reply reply;
    bool include_usage;
    std::string text;  // not yet sent
    Job::Progress last;
    bool first = true;

    // Writes what has come, or waits for it; false when the client is gone.
    bool pump(httplib::DataSink& sink) {
      for (;;) {
        std::string out;
        if (first || !text.empty()) {
          // Chat's first chunk carries the role, with whatever text there is (possibly none).
          if (reply.chat || !text.empty()) out += sse(reply.chunk(&text, first, nullptr, include_usage));
          text.clear();
          first = false;
        }
        if (last.finish) {
          if (*last.finish == FinishReason::Error) {
            out += sse(job_error(last).to_json());
          } else {
            out += sse(reply.chunk(nullptr, false, &*last.finish, include_usage));
            if (include_usage) out += sse(reply.usage_chunk(last.usage));
          }
          out += "data: [DONE]\n\n";
          if (!sink.write(out.data(), out.size())) return false;
          sink.done();
          return true;
        }
        if (!out.empty()) return sink.write(out.data(), out.size());
        if (watch->gone()) return false;
        last = job->take(kPollInterval);
        text += last.text;
      }
    }
  };
  auto stream = std::make_shared<Stream>(Stream{job, watch, reply, r.include_usage, text, p});
  guard.job = nullptr;  // the stream's releaser cancels it
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [stream](size_t, httplib::DataSink& sink) {
        if (stream->pump(sink)) return true;
        stream->job->cancel();
        return false;
      },
      // Also when the connection failed before the first chunk; after a normal end it changes nothing.
      [stream](bool) { stream->job->cancel(); });
}

}  // namespace wgllm::server
