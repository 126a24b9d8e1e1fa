// The mesh over MPI: rank r runs stage r. Start-up is collective and every decision that could differ
// between ranks is made from what every rank gathered (the reports, the plan), so that a failure to start
// ends every rank the same way: rank 0 names the failing stage and host, every rank exits non-zero, and
// MPI is finalized in order (nothing is left for mpirun to kill).
#include <chrono>
#include <cstdio>
#include <deque>

#include "core/error.hpp"
#include "mesh/backoff.hpp"
#include "mesh/device_memory.hpp"
#include "mesh/mesh_internal.hpp"
#include "mesh/mpi/transport.hpp"
#include "mesh/stage_runner.hpp"

namespace wgllm::mesh::detail {

namespace {

using Clock = std::chrono::steady_clock;

// What a rank tells the others at start: how it fared, and its device.
struct Report {
  std::string status = "ok";  // "ok", or the failure's kind: "input" (exit 2), "runtime" (exit 1)
  std::string message;
  std::string device, backend;
  uint64_t memory = 0;
  uint64_t fingerprint = 0;
  int adapter = -1;  // the adapter number it took (`wgllm devices`), -1: the best one

  std::vector<uint8_t> bytes() const {
    const std::string s = status + '\0' + message + '\0' + device + '\0' + backend + '\0' +
                          std::to_string(memory) + '\0' + std::to_string(fingerprint) + '\0' +
                          std::to_string(adapter);
    return {s.begin(), s.end()};
  }
  static Report from(const std::vector<uint8_t>& b) {
    std::vector<std::string> f(1);
    for (uint8_t c : b)
      if (c)
        f.back().push_back(char(c));
      else
        f.emplace_back();
    if (f.size() != 7) fail_runtime("mesh: a malformed start-up report from another rank");
    return {f[0], f[1], f[2], f[3], std::stoull(f[4]), std::stoull(f[5]), std::stoi(f[6])};
  }
  static Report failed(const Error& e) {
    Report r;
    r.status = e.kind() == ErrorKind::BadInput ? "input" : "runtime";
    r.message = e.what();
    return r;
  }
};

class MpiMesh final : public Mesh, private Stages {
 public:
  explicit MpiMesh(const MeshOptions& options) { start(options); }

  ~MpiMesh() override {
    if (driver() && !failed_ && !done_ && !transport_.fault()) try {
        shutdown();
      } catch (const std::exception&) {
        // The transport ends the job when it is destroyed without an orderly end.
      }
  }

  bool driver() const override { return transport_.rank() == 0; }
  Pipeline& pipeline() override { return *pipeline_; }
  uint32_t stages() const override { return static_cast<uint32_t>(transport_.size()); }
  int serve_stage() override;
  void shutdown() override;
  std::string traffic() const override;

 private:
  void start(const MeshOptions& options);
  // Every rank knows the same failures: rank 0 throws the first, the others leave quietly with its code.
  bool check(const std::vector<Report>& reports, const char* doing);
  std::vector<Report> gather(const Report& mine);

  uint32_t count() const override { return stages(); }
  void push(Pass pass) override {
    local([&] { runner_->run(std::move(pass)); });
  }
  std::optional<Result> poll() override;
  std::optional<std::string> fault() const override { return transport_.fault(); }
  template <typename F>
  void local(F&& f);

  Transport transport_;  // first: destroyed last, after the device and the pipeline
  std::unique_ptr<gguf::GgufFile> file_;
  std::unique_ptr<gpu::Device> device_;
  std::unique_ptr<StageRunner> runner_;
  std::unique_ptr<Pipeline> pipeline_;
  std::deque<Result> results_;  // a one-stage mesh's own
  uint64_t passes_sent_ = 0, tokens_sent_ = 0, bytes_sent_ = 0, results_received_ = 0, bytes_received_ = 0;
  int failed_ = 0;        // the exit code of a start that failed
  unsigned spin_us_ = 0;  // Backoff's, for this rank's adapter
  bool done_ = false;
};

std::vector<Report> MpiMesh::gather(const Report& mine) {
  std::vector<Report> out;
  for (const std::vector<uint8_t>& b : transport_.all_gather(mine.bytes())) out.push_back(Report::from(b));
  return out;
}

bool MpiMesh::check(const std::vector<Report>& reports, const char* doing) {
  for (size_t r = 0; r < reports.size(); ++r) {
    if (reports[r].status == "ok") continue;
    const ErrorKind kind = reports[r].status == "input" ? ErrorKind::BadInput : ErrorKind::Runtime;
    transport_.finished();  // every rank stops here: an orderly end
    if (driver())
      throw Error(kind,
                  "mesh: " + transport_.name(static_cast<int>(r)) + " " + doing + ": " + reports[r].message);
    failed_ = kind == ErrorKind::BadInput ? 2 : 1;
    return false;
  }
  return true;
}

void MpiMesh::start(const MeshOptions& options) {
  const auto t0 = Clock::now();
  const int rank = transport_.rank();
  std::optional<model::LlamaConfig> config;
  Report mine;
  try {
    file_ = gguf::GgufFile::open(options.model_path);
    config = model::LlamaConfig::from_gguf(*file_, runtime::Forward::kFeatures);
    gpu::DeviceOptions o = options.device;
    if (o.adapter < 0)
      o.adapter = adapter_for_local_rank(gpu::list_adapters(), o.backend, Transport::local_rank());
    device_ = gpu::open_device(o);
    spin_us_ = spin_us_for(device_->info().adapter_type);
    mine.device = device_->info().device;
    mine.backend = device_->info().backend;
    mine.memory = device_memory_bytes(device_->info());
    mine.fingerprint = tensor_table_fingerprint(*file_);
    mine.adapter = o.adapter;
  } catch (const Error& e) {
    mine = Report::failed(e);
  }
  std::vector<Report> reports = gather(mine);
  if (!check(reports, "cannot start")) return;
  for (size_t r = 1; r < reports.size(); ++r)
    if (reports[r].fingerprint != reports[0].fingerprint)
      reports[r] = Report::failed(Error(
          ErrorKind::BadInput, options.model_path + " is not the same model file as rank 0's (their tensor "
                                                    "tables differ): every rank needs the same file"));
  if (!check(reports, "cannot start")) return;

  std::vector<Peer> peers;
  for (size_t r = 0; r < reports.size(); ++r)
    peers.push_back({"rank " + std::to_string(r) + " on " + transport_.host(static_cast<int>(r)) +
                         (reports[r].adapter >= 0 ? ", adapter " + std::to_string(reports[r].adapter) : ""),
                     reports[r].device, reports[r].backend, reports[r].memory});
  std::vector<Stage> plan;
  try {
    plan = plan_stages(sizes_for(*file_, *config, options.forward), peers, options.split);
  } catch (const Error& e) {
    transport_.finished();  // every rank computed the same plan and failed the same way
    if (driver()) throw;
    failed_ = 2;
    return;
  }
  if (driver()) std::fputs(describe_plan(plan, peers, options.model_path, *config).c_str(), stderr);

  mine = Report{};
  try {
    runner_ = std::make_unique<StageRunner>(*device_, *file_, stage_options(options.forward, plan[rank]));
  } catch (const Error& e) {
    mine = Report::failed(e);
  }
  if (!check(gather(mine), "failed to load its layers")) return;
  if (driver()) {
    PipelineOptions po = options.pipeline;
    po.spin_us = spin_us_;
    pipeline_ = std::make_unique<Pipeline>(static_cast<Stages&>(*this), runner_->forward(), po);
    print_ready(plan.size(), std::chrono::duration<double>(Clock::now() - t0).count());
  }
}

template <typename F>
void MpiMesh::local(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    // Rank 0's own stage failed: the same path as a lost rank (the job ends, or the server degrades).
    transport_.set_fault(transport_.name(0) + " failed: " + e.what());
    transport_.check();
  }
}

std::optional<Result> MpiMesh::poll() {
  transport_.progress();
  local([&] {
    while (std::optional<StageRunner::Output> out = runner_->poll()) {
      if (Pass* next = std::get_if<Pass>(&*out)) {
        std::vector<uint8_t> bytes = encode(*next);
        ++passes_sent_;
        tokens_sent_ += next->tokens.size();
        bytes_sent_ += bytes.size();
        transport_.send(1, Transport::kPass, std::move(bytes));
      } else {
        results_.push_back(std::move(std::get<Result>(*out)));
      }
    }
  });
  if (!results_.empty()) {
    Result r = std::move(results_.front());
    results_.pop_front();
    return r;
  }
  const int last = transport_.size() - 1;
  if (last > 0)
    if (std::optional<std::vector<uint8_t>> bytes = transport_.poll(last, Transport::kResult)) {
      ++results_received_;
      bytes_received_ += bytes->size();
      return decode_result(*bytes, transport_.name(last));
    }
  return std::nullopt;
}

std::string MpiMesh::traffic() const {
  if (transport_.size() < 2) return {};
  char line[256];
  std::snprintf(
      line, sizeof line,
      "mesh traffic: %llu passes of %llu tokens to stage 1, %llu bytes (%.1f per token); %llu results "
      "back to rank 0, %llu bytes (%.1f per result)",
      static_cast<unsigned long long>(passes_sent_), static_cast<unsigned long long>(tokens_sent_),
      static_cast<unsigned long long>(bytes_sent_),
      tokens_sent_ ? double(bytes_sent_) / double(tokens_sent_) : 0.0,
      static_cast<unsigned long long>(results_received_), static_cast<unsigned long long>(bytes_received_),
      results_received_ ? double(bytes_received_) / double(results_received_) : 0.0);
  return line;
}

int MpiMesh::serve_stage() {
  if (failed_) return failed_;
  if (driver()) fail_runtime("mesh: rank 0 drives the stages");
  const int rank = transport_.rank();
  const bool last = rank + 1 == transport_.size();
  Backoff backoff(spin_us_);
  try {
    for (bool ending = false;;) {
      bool moved = false;
      transport_.progress();
      while (!ending)
        if (std::optional<std::vector<uint8_t>> bytes = transport_.poll(rank - 1, Transport::kPass)) {
          moved = true;
          Pass pass = decode_pass(*bytes, transport_.name(rank - 1));
          if (pass.kind == Pass::kShutdown) {
            ending = true;
            transport_.closing();
          } else {
            runner_->run(std::move(pass));
          }
        } else {
          break;
        }
      while (std::optional<StageRunner::Output> out = runner_->poll()) {
        moved = true;
        if (Pass* next = std::get_if<Pass>(&*out))
          transport_.send(rank + 1, Transport::kPass, encode(*next));
        else
          transport_.send(0, Transport::kResult, encode(std::get<Result>(*out)));
      }
      if (ending && runner_->pending() == 0) break;
      if (moved)
        backoff.reset();
      else
        backoff.idle();
    }
    // The end goes on after every pass this stage ran; the last stage confirms it to rank 0.
    if (last) {
      Result end;
      end.kind = Result::kShutdown;
      transport_.send(0, Transport::kResult, encode(end));
    } else {
      Pass end;
      end.kind = Pass::kShutdown;
      transport_.send(rank + 1, Transport::kPass, encode(end));
    }
    while (!transport_.progress()) backoff.idle();
  } catch (const Error& e) {
    std::fprintf(stderr, "wgllm: %s: %s\n", transport_.name(rank).c_str(), e.what());
    std::fflush(stderr);
    transport_.report_error(e.what());
    return 1;  // the transport ends this process with status 1 (no orderly end)
  }
  transport_.finished();
  return 0;
}

void MpiMesh::shutdown() {
  if (done_ || failed_) return;
  if (!driver()) fail_runtime("mesh: only rank 0 shuts the mesh down");
  pipeline_->drain();
  transport_.closing();
  const int last = transport_.size() - 1;
  if (last > 0) {
    Pass end;
    end.kind = Pass::kShutdown;
    transport_.send(1, Transport::kPass, encode(end));
    const auto t0 = Clock::now();
    Backoff backoff;
    for (bool confirmed = false; !confirmed;) {
      transport_.progress();
      if (std::optional<std::vector<uint8_t>> bytes = transport_.poll(last, Transport::kResult))
        confirmed = decode_result(*bytes, transport_.name(last)).kind == Result::kShutdown;
      else if (std::chrono::duration<double>(Clock::now() - t0).count() > 30)
        fail_runtime("mesh: the stages did not confirm the shutdown within 30 s");
      else
        backoff.idle();
    }
    while (!transport_.progress()) backoff.idle();
  }
  done_ = true;
  transport_.finished();
}

}  // namespace

std::unique_ptr<Mesh> start_mpi(const MeshOptions& options) {
  return std::make_unique<MpiMesh>(options);
}

}  // namespace wgllm::mesh::detail
