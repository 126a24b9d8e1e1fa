// `wgllm serve`: the OpenAI-compatible server (src/server/, docs/server.md). Log lines go to stderr.
#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "cli/commands.hpp"
#include "cli/mesh_flags.hpp"
#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "runtime/batcher.hpp"
#include "runtime/forward.hpp"
#include "server/server.hpp"
#include "tokenizer/chat_template.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::cli {

namespace {

struct ServeFlags {
  std::string model;
  server::ServerOptions server;
  uint32_t parallel = 1;
  uint32_t ctx_size = 0;
  KernelFlags kernels;
  gpu::DeviceOptions device;
  MeshFlags mesh;
};

// Fault injection for tests (docs/reliability.md, "Device loss"): WGLLM_FAULT_DEVICE_LOSS=N destroys the
// GPU device at the start of the N-th generation step, as a driver reset or a removed GPU would; once.
uint64_t fault_step_from_environment() {
  const char* v = std::getenv("WGLLM_FAULT_DEVICE_LOSS");
  if (!v || !*v) return 0;
  char* end = nullptr;
  const uint64_t n = std::strtoull(v, &end, 10);
  if (*end != '\0' || n == 0)
    fail_input(std::string("WGLLM_FAULT_DEVICE_LOSS must be a step number, got ") + v);
  std::fprintf(stderr, "wgllm: WGLLM_FAULT_DEVICE_LOSS: the GPU device will be destroyed at step %llu\n",
               static_cast<unsigned long long>(n));
  return n;
}

class LoseDeviceAtStep final : public runtime::Generator {
 public:
  // `steps_left` outlives this generator, so that a generator made again after the loss counts on (at 0).
  LoseDeviceAtStep(runtime::Generator& inner, gpu::Device& device, uint64_t& steps_left)
      : inner_(inner), device_(device), steps_left_(steps_left) {}
  uint32_t slots() const override { return inner_.slots(); }
  uint32_t context_size() const override { return inner_.context_size(); }
  uint32_t vocab_size() const override { return inner_.vocab_size(); }
  std::optional<Started> start(std::span<const int32_t> prompt,
                               const runtime::SamplingParams& sampling) override {
    return inner_.start(prompt, sampling);
  }
  void finish(uint32_t slot) override { inner_.finish(slot); }
  bool busy() const override { return inner_.busy(); }
  std::vector<Sampled> step() override {
    if (steps_left_ > 0 && --steps_left_ == 0) device_.simulate_loss();
    return inner_.step();
  }

 private:
  runtime::Generator& inner_;
  gpu::Device& device_;
  uint64_t& steps_left_;
};

int serve(ServeFlags& f) {
  // SIGINT/SIGTERM go to one watcher thread (every thread started below inherits the block), which stops
  // the server cleanly; a client that goes away mid-write must not kill the process with SIGPIPE.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::string model_path = f.model.empty() ? default_model_path() : f.model;
  // After the signal mask: MPI's threads start here and must not take SIGTERM from the watcher.
  std::unique_ptr<mesh::Mesh> mesh;
  if (f.mesh.enabled()) {
    runtime::ForwardOptions fo;
    fo.n_ctx = f.ctx_size;
    fo.n_seq = f.parallel;
    f.kernels.apply(fo);
    mesh = start_mesh(f.mesh, model_path, fo, f.device);
    if (!mesh->driver()) return serve_stage(*mesh);
  }
  auto file = gguf::GgufFile::open(model_path);
  auto tok = tokenizer::Tokenizer::from_gguf(*file);
  std::optional<std::string> chat_template = tokenizer::chat_template_from_gguf(*file);
  if (f.server.model_id.empty()) f.server.model_id = std::filesystem::path(model_path).stem().string();

  std::unique_ptr<gpu::Device> device;
  std::unique_ptr<runtime::Forward> forward;
  std::unique_ptr<runtime::Batcher> batcher;
  std::unique_ptr<LoseDeviceAtStep> faulty;
  uint64_t fault_step = fault_step_from_environment();
  // Also after a failed step (the device lost, say): the scheduler drops everything of the old device and
  // asks for all of it again.
  auto open_generator = [&]() -> runtime::Generator& {
    faulty.reset();
    batcher.reset();
    forward.reset();
    device.reset();
    device = gpu::open_device(f.device);
    runtime::ForwardOptions fo = forward_options(*device, f.ctx_size, f.kernels);
    fo.n_seq = f.parallel;  // --ctx-size is per sequence (CONTRACTS.md): the KV cache holds parallel x n_ctx
    forward = std::make_unique<runtime::Forward>(*device, *file, fo);
    batcher = std::make_unique<runtime::Batcher>(*forward);
    if (fault_step == 0) return *batcher;
    faulty = std::make_unique<LoseDeviceAtStep>(*batcher, *device, fault_step);
    return *faulty;
  };
  runtime::Generator& generator =
      mesh ? static_cast<runtime::Generator&>(mesh->pipeline()) : open_generator();
  server::Recover recover;
  if (!mesh) recover = open_generator;

  server::Server server(generator, *tok, chat_template, f.server, recover);
  int port = server.bind();
  if (!chat_template)
    std::fprintf(stderr, "wgllm: warning: %s has no chat template; chat requests use ChatML\n",
                 model_path.c_str());
  const std::string on = mesh ? std::to_string(mesh->stages()) + " pipeline stages"
                              : device->info().device + " (" + device->info().backend + ")";
  std::fprintf(stderr, "wgllm: serving %s as \"%s\" on %s: %u slots x %u positions\n", model_path.c_str(),
               f.server.model_id.c_str(), on.c_str(), generator.slots(), generator.context_size());
  std::fprintf(stderr, "wgllm: listening on http://%s:%d/\n", f.server.host.c_str(), port);
  std::fflush(stderr);

  std::atomic<bool> done{false};
  std::thread watcher([&] {
    timespec tick{0, 200'000'000};
    while (!done) {
      int sig = sigtimedwait(&stop_signals, nullptr, &tick);
      if (sig == SIGINT || sig == SIGTERM) {
        std::fprintf(stderr, "wgllm: stopping (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        server.stop();
        return;
      }
    }
  });
  server.serve();
  done = true;
  watcher.join();
  if (mesh) mesh->shutdown();
  std::fprintf(stderr, "wgllm: stopped\n");
  return 0;
}

}  // namespace

Action add_serve(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  app.add_option("-m,--model", f->model, "GGUF model file (default: the built-in stories260K)")
      ->check(CLI::ExistingFile);
  app.add_option("--host", f->server.host, "address to listen on (0.0.0.0: every interface)")
      ->capture_default_str();
  app.add_option("--port", f->server.port, "port (0: any free one, printed on stderr)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--parallel", f->parallel, "sequences generated at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("-c,--ctx-size", f->ctx_size,
                 "context of each sequence in tokens (default: the model's, at most 4096)");
  app.add_option("--alias", f->server.model_id,
                 "the model id clients name (default: the file name without .gguf)");
  app.add_option("--api-key", f->server.api_key,
                 "require \"Authorization: Bearer KEY\" on /v1/* and /metrics");
  app.add_option("--queue", f->server.queue_limit, "requests that may wait for a free slot; more get 429")
      ->capture_default_str();
  app.add_option("--max-body", f->server.max_body_bytes, "largest request body in bytes; larger get 413")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t(1024), uint64_t(1) << 32));
  f->server.web_dir = std::string(WGLLM_SOURCE_DIR) + "/build-web";
  app.add_option("--web-dir", f->server.web_dir,
                 "the in-browser page to serve at /local/ (`make web`'s output)")
      ->capture_default_str();
  app.add_option("--models-dir", f->server.models_dir,
                 "serve the .gguf files in this folder at /models/NAME.gguf")
      ->check(CLI::ExistingDirectory);
  add_device_flags(app, f->device, f->kernels);
  add_mesh_flags(app, f->mesh);
  return [f] { return serve(*f); };
}

}  // namespace wgllm::cli
