#include "mesh/mesh.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>

#include "core/error.hpp"
#include "mesh/backoff.hpp"
#include "mesh/device_memory.hpp"
#include "mesh/mesh_internal.hpp"
#include "mesh/stage_runner.hpp"

namespace wgllm::mesh {

namespace detail {

ModelSizes sizes_for(const gguf::GgufFile& file, const model::LlamaConfig& config,
                     const runtime::ForwardOptions& options) {
  // Forward's own defaults for the sizes left at 0.
  const uint32_t n_ctx = options.n_ctx ? options.n_ctx : std::min<uint32_t>(config.context_length, 4096);
  return model_sizes(file, config, n_ctx, std::max<uint32_t>(1, options.n_seq));
}

runtime::ForwardOptions stage_options(const runtime::ForwardOptions& options, const Stage& stage) {
  runtime::ForwardOptions o = options;
  o.first_layer = stage.first_layer;
  o.last_layer = stage.last_layer;
  return o;
}

void print_ready(size_t stages, double seconds) {
  std::fprintf(stderr, "mesh: %zu %s ready in %.2f s\n", stages, stages == 1 ? "stage" : "stages", seconds);
  std::fflush(stderr);
}

}  // namespace detail

namespace {

// --devices: every stage on a local adapter, the passes handed from one to the next in this process.
class LocalMesh final : public Mesh, private Stages {
 public:
  explicit LocalMesh(const MeshOptions& options) {
    const auto t0 = std::chrono::steady_clock::now();
    file_ = gguf::GgufFile::open(options.model_path);
    const model::LlamaConfig config = model::LlamaConfig::from_gguf(*file_, runtime::Forward::kFeatures);
    std::map<int, int> uses;  // stages per adapter: they share its memory
    for (int a : options.devices) ++uses[a];
    std::vector<Peer> peers;
    for (int a : options.devices) {
      gpu::DeviceOptions o = options.device;
      o.adapter = a;
      devices_.push_back(gpu::open_device(o));
      const gpu::AdapterInfo& info = devices_.back()->info();
      peers.push_back({"adapter " + std::to_string(a), info.device, info.backend,
                       device_memory_bytes(info) / uint64_t(uses[a])});
    }
    const std::vector<Stage> plan =
        plan_stages(detail::sizes_for(*file_, config, options.forward), peers, options.split);
    std::fputs(describe_plan(plan, peers, options.model_path, config).c_str(), stderr);
    for (size_t i = 0; i < plan.size(); ++i) {
      names_.push_back("stage " + std::to_string(i) + " (" + peers[i].where + ")");
      try {
        runners_.push_back(std::make_unique<StageRunner>(*devices_[i], *file_,
                                                         detail::stage_options(options.forward, plan[i])));
      } catch (const Error& e) {
        throw Error(e.kind(), "mesh: " + names_[i] + ": " + e.what());
      }
    }
    PipelineOptions po = options.pipeline;
    po.spin_us = spin_us_for(devices_[0]->info().adapter_type);
    pipeline_ = std::make_unique<Pipeline>(static_cast<Stages&>(*this), runners_[0]->forward(), po);
    detail::print_ready(plan.size(),
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

  ~LocalMesh() override {
    if (!fault_) try {
        shutdown();
      } catch (const std::exception&) {
        // Ending anyway: the passes on their way are dropped with the devices.
      }
  }

  bool driver() const override { return true; }
  Pipeline& pipeline() override { return *pipeline_; }
  uint32_t stages() const override { return static_cast<uint32_t>(runners_.size()); }
  int serve_stage() override { fail_runtime("mesh: the one process of --devices drives its stages"); }
  void shutdown() override { pipeline_->drain(); }

 private:
  uint32_t count() const override { return stages(); }
  void push(Pass pass) override {
    guarded(0, [&] { runners_[0]->run(std::move(pass)); });
  }
  std::optional<Result> poll() override {
    for (size_t k = 0; k < runners_.size(); ++k)
      guarded(k, [&] {
        while (std::optional<StageRunner::Output> out = runners_[k]->poll()) {
          if (Pass* next = std::get_if<Pass>(&*out))
            guarded(k + 1, [&] { runners_[k + 1]->run(std::move(*next)); });
          else
            results_.push_back(std::move(std::get<Result>(*out)));
        }
      });
    if (results_.empty()) return std::nullopt;
    Result r = std::move(results_.front());
    results_.pop_front();
    return r;
  }
  std::optional<std::string> fault() const override { return fault_; }
  // A stage's failure names the stage; the mesh is then broken for good.
  template <typename F>
  void guarded(size_t stage, F&& f) {
    try {
      f();
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.starts_with("mesh: stage ")) throw;  // a later stage's, named there
      fault_ = names_[stage] + " failed: " + what;
      throw Error(e.kind(), "mesh: " + names_[stage] + ": " + what);
    }
  }

  std::unique_ptr<gguf::GgufFile> file_;
  std::vector<std::unique_ptr<gpu::Device>> devices_;
  std::vector<std::unique_ptr<StageRunner>> runners_;
  std::vector<std::string> names_;
  std::unique_ptr<Pipeline> pipeline_;
  std::deque<Result> results_;
  std::optional<std::string> fault_;
};

}  // namespace

std::unique_ptr<Mesh> Mesh::start(const MeshOptions& options) {
  if (options.mpi && !options.devices.empty()) fail_input("--mesh and --devices exclude each other");
  if (!options.mpi) {
    if (options.devices.empty()) fail_input("a mesh needs --mesh or --devices");
    return std::make_unique<LocalMesh>(options);
  }
#if WGLLM_MESH
  return detail::start_mpi(options);
#else
  fail_input(
      "--mesh: this wgllm was built without MPI (cmake -DWGLLM_MESH=OFF); --devices 0,1 still splits a model "
      "over this machine's adapters");
#endif
}

std::vector<int> parse_devices(const std::string& text) {
  std::vector<int> out;
  size_t at = 0;
  for (;;) {
    const size_t comma = text.find(',', at);
    const std::string item = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    if (item.empty() || item.size() > 4 || item.find_first_not_of("0123456789") != std::string::npos)
      fail_input("--devices " + text + ": expected adapter numbers of `wgllm devices` like 0,1, got '" +
                 item + "'");
    out.push_back(std::stoi(item));
    if (comma == std::string::npos) return out;
    at = comma + 1;
  }
}

int adapter_for_local_rank(std::span<const gpu::AdapterReport> adapters, gpu::Backend backend,
                           int local_rank) {
  // open_device numbers the adapters of the backends it may use, Vulkan's before OpenGL ES's, as
  // list_adapters lists them; without a backend asked for it opens a Vulkan GPU before an OpenGL one.
  std::vector<std::string> backends;
  if (backend != gpu::Backend::OpenGL) backends.push_back("vulkan");
  if (backend != gpu::Backend::Vulkan) backends.push_back("opengles");
  for (const std::string& b : backends) {
    std::vector<int> gpus;
    int number = 0;
    for (const gpu::AdapterReport& a : adapters) {
      if (std::find(backends.begin(), backends.end(), a.info.backend) == backends.end()) continue;
      if (a.info.backend == b &&
          (a.info.adapter_type == "discrete GPU" || a.info.adapter_type == "integrated GPU"))
        gpus.push_back(number);
      ++number;
    }
    if (gpus.size() >= 2) return gpus[size_t(local_rank) % gpus.size()];
    if (!gpus.empty()) return -1;
  }
  return -1;
}

uint64_t tensor_table_fingerprint(const gguf::GgufFile& file) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  auto mix = [&](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 0x100000001b3ull;
  };
  for (const gguf::TensorInfo& t : file.tensors()) {
    mix(t.name.data(), t.name.size() + 1);
    const auto type = static_cast<uint32_t>(t.type);
    mix(&type, sizeof type);
    for (uint64_t d : t.dims) mix(&d, sizeof d);
    mix(&t.offset, sizeof t.offset);
  }
  return h;
}

}  // namespace wgllm::mesh
