// `wgllm bench`: llama-bench's tests (pp = prompt processing, tg = generation) on a GGUF file or on a
// synthetic model of a published shape, with achieved GB/s beside tok/s and the copy-kernel ceiling measured
// in the same run. Flags as llama-bench's (CONTRACTS.md).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "model/synthetic.hpp"
#include "runtime/bandwidth.hpp"
#include "runtime/batcher.hpp"
#include "runtime/forward.hpp"
#include "runtime/session.hpp"

namespace wgllm::cli {

namespace {

struct BenchFlags {
  std::string model;
  std::string synthetic;
  std::string write_gguf;
  int n_prompt = 512;
  int n_gen = 128;
  int depth = 0;
  int reps = 5;
  std::string output = "md";
  KernelFlags kernels;
  bool prefill_gemv = false;
  std::vector<uint32_t> parallel;  // aggregate decode tests: sequences at once
  gpu::DeviceOptions device;
};

struct Result {
  std::string test;
  std::vector<double> tok_s;
  double bytes_per_token = 0;  // tg only
  double mean() const { return std::accumulate(tok_s.begin(), tok_s.end(), 0.0) / tok_s.size(); }
  double stddev() const {
    double m = mean(), s = 0;
    for (double v : tok_s) s += (v - m) * (v - m);
    return tok_s.size() > 1 ? std::sqrt(s / (tok_s.size() - 1)) : 0.0;
  }
};

using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

std::vector<int32_t> random_tokens(size_t n, uint32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
  return ids;
}

// Greedy sampling: the benchmark measures the engine, and llama-bench samples nothing either.
runtime::SamplingParams bench_sampling() {
  runtime::SamplingParams s;
  s.temperature = 0;
  return s;
}

double run_pp(runtime::Forward& fwd, int depth, int n_prompt, uint64_t seed) {
  runtime::Session session(fwd, bench_sampling());
  if (depth > 0) session.id_of(session.prefill(random_tokens(depth, fwd.config().n_vocab, seed)));
  auto prompt = random_tokens(n_prompt, fwd.config().n_vocab, seed + 1);
  auto t0 = clock_type::now();
  session.id_of(session.prefill(prompt));
  return n_prompt / since(t0);
}

double run_tg(runtime::Forward& fwd, int depth, int n_gen, uint64_t seed) {
  runtime::Session session(fwd, bench_sampling());
  session.id_of(session.prefill(random_tokens(std::max(1, depth), fwd.config().n_vocab, seed)));
  auto t0 = clock_type::now();
  gpu::ReadTicket pending = session.step();
  for (int i = 1; i < n_gen; ++i) {
    gpu::ReadTicket next = session.step();  // run ahead: step i is queued before step i-1 is read
    session.id_of(pending);
    pending = next;
  }
  session.id_of(pending);
  return n_gen / since(t0);
}

// `np` sequences of runtime::Batcher (the server's continuous batching), each started from its own 8-token
// prompt and stepped until all of them decode.
struct DecodingBatch {
  runtime::Batcher batcher;
  std::vector<uint32_t> slots;
  DecodingBatch(runtime::Forward& fwd, uint32_t np, uint64_t seed) : batcher(fwd) {
    for (uint32_t i = 0; i < np; ++i) {
      auto started = batcher.start(random_tokens(8, fwd.config().n_vocab, seed + i), bench_sampling());
      if (!started) fail_runtime("no free KV-cache slot for sequence " + std::to_string(i));
      slots.push_back(started->slot);
    }
    std::vector<bool> decoding(fwd.n_seq(), false);
    for (uint32_t ready = 0; ready < np;)
      for (const auto& s : batcher.step())
        if (!decoding[s.slot]) decoding[s.slot] = true, ++ready;
  }
  ~DecodingBatch() {
    for (uint32_t slot : slots) batcher.finish(slot);
  }
};

// Aggregate decode speed of `np` sequences at once: once all have sampled their first token, `n_gen` steps
// each advance every sequence by one token.
double run_parallel(runtime::Forward& fwd, uint32_t np, int n_gen, uint64_t seed) {
  DecodingBatch batch(fwd, np, seed);
  auto t0 = clock_type::now();
  size_t tokens = 0;
  for (int i = 0; i < n_gen; ++i) tokens += batch.batcher.step().size();
  return tokens / since(t0);
}

// The GPU time of one pass (a decode step, or a prompt's pass) by kernel class, and its first and last
// dispatches in order (the embedding and the first layer; the LM head and the sampler): what each kind of
// dispatch costs.
struct PassProfile {
  std::string title;                                                // empty: not profiled
  uint32_t size = 0;                                                // the pass's tokens (sequences)
  std::vector<std::pair<std::string, double>> by_kernel, sequence;  // seconds
  double total = 0;

  PassProfile() = default;
  PassProfile(const std::vector<gpu::Device::KernelTime>& times, std::string what, uint32_t n)
      : title(std::move(what)), size(n) {
    std::map<std::string, double> by_label;
    for (size_t i = 0; i < times.size(); ++i) {
      if (i < 16 || i + 3 >= times.size()) sequence.push_back({times[i].label, times[i].seconds});
      by_label[times[i].label] += times[i].seconds;
      total += times[i].seconds;
    }
    by_kernel.assign(by_label.begin(), by_label.end());
    std::sort(by_kernel.begin(), by_kernel.end(), [](auto& a, auto& b) { return a.second > b.second; });
  }
  nlohmann::json by_kernel_json() const {
    nlohmann::json b = nlohmann::json::object();
    for (const auto& [label, sec] : by_kernel) b[label] = sec * 1e6;
    return b;
  }
  nlohmann::json sequence_json() const {
    nlohmann::json seq = nlohmann::json::array();
    for (const auto& [label, sec] : sequence) seq.push_back({label, sec * 1e6});
    return seq;
  }
  void print_markdown() const {
    if (title.empty()) return;
    std::printf("\nGPU time of %s by kernel (each dispatch timed in its own pass): %.1f us\n\n",
                title.c_str(), total * 1e6);
    std::printf("| kernel | us | share |\n| --- | ---: | ---: |\n");
    for (const auto& [label, sec] : by_kernel)
      std::printf("| %s | %.1f | %.0f%% |\n", label.c_str(), sec * 1e6, 100 * sec / total);
  }
};

int bench(const BenchFlags& f) {
  std::string path = f.model;
  std::string model_name;
  std::filesystem::path temp;
  if (!f.synthetic.empty()) {
    auto [shape, type] = model::parse_synthetic(f.synthetic);
    model_name = shape.name + " " + std::string(gguf::type_name(type)) + " (synthetic)";
    auto t0 = clock_type::now();
    gguf::GgufWriter w = model::synthetic_model(shape, type, 1234);
    if (!f.write_gguf.empty()) {
      path = f.write_gguf;
    } else {
      temp = std::filesystem::temp_directory_path() / ("wgllm-bench-" + std::to_string(getpid()) + ".gguf");
      path = temp.string();
    }
    w.write(path);
    std::fprintf(stderr, "generated %s in %.1f s -> %s\n", model_name.c_str(), since(t0), path.c_str());
  } else if (path.empty()) {
    path = default_model_path();
  }
  struct Cleanup {
    std::filesystem::path p;
    ~Cleanup() {
      std::error_code ec;
      if (!p.empty()) std::filesystem::remove(p, ec);
    }
  } cleanup{temp};

  auto file = gguf::GgufFile::open(path);
  if (model_name.empty()) model_name = std::filesystem::path(path).filename().string();
  auto device = gpu::open_device(f.device);
  runtime::ForwardOptions fo;
  fo.n_ctx = static_cast<uint32_t>(f.depth + std::max(f.n_prompt, f.n_gen) + 2);
  if (!f.parallel.empty()) {
    // Each sequence: its prompt, the tokens it samples while the others' prompts run, then n_gen.
    const uint32_t most = *std::max_element(f.parallel.begin(), f.parallel.end());
    fo.n_seq = most;
    fo.n_ctx = std::max<uint32_t>(fo.n_ctx, 8 + most + f.n_gen + 2);
  }
  f.kernels.apply(fo);
  fo.prefill_matmul = !f.prefill_gemv;
  auto t_load = clock_type::now();
  runtime::Forward fwd(*device, *file, fo);
  double load_s = since(t_load);
  // The ceiling: 1 GiB copies on a GPU; on a CPU adapter (software Vulkan, tests) 64 MiB, which measures its
  // memory as well and takes a second, not minutes.
  const uint64_t copy_bytes = device->info().adapter_type == "CPU" ? 64ull << 20 : 1ull << 30;
  double copy_gbps = runtime::copy_bandwidth_gbps(*device, copy_bytes, 5);

  std::vector<Result> results;
  if (f.n_prompt > 0) {
    Result r{"pp" + std::to_string(f.n_prompt) + (f.depth ? " @ d" + std::to_string(f.depth) : ""), {}, 0};
    run_pp(fwd, f.depth, f.n_prompt, 1);  // warm-up
    for (int i = 0; i < f.reps; ++i) r.tok_s.push_back(run_pp(fwd, f.depth, f.n_prompt, 10 + i));
    results.push_back(r);
  }
  if (f.n_gen > 0) {
    Result r{"tg" + std::to_string(f.n_gen) + (f.depth ? " @ d" + std::to_string(f.depth) : ""), {}, 0};
    // Mean bytes per token over the generated positions.
    uint32_t mid = static_cast<uint32_t>(std::max(1, f.depth) + f.n_gen / 2);
    r.bytes_per_token = static_cast<double>(fwd.bytes_per_token(mid));
    run_tg(fwd, f.depth, std::min(f.n_gen, 16), 2);  // warm-up
    for (int i = 0; i < f.reps; ++i) r.tok_s.push_back(run_tg(fwd, f.depth, f.n_gen, 20 + i));
    results.push_back(r);
  }

  for (uint32_t np : f.parallel) {
    if (f.n_gen == 0) break;
    Result r{"tg" + std::to_string(f.n_gen) + " x" + std::to_string(np) + " (aggregate)", {}, 0};
    run_parallel(fwd, np, std::min(f.n_gen, 8), 30);  // warm-up: the widths' pipelines
    for (int i = 0; i < f.reps; ++i) r.tok_s.push_back(run_parallel(fwd, np, f.n_gen, 40 + 100 * i));
    results.push_back(r);
  }

  // The prompt's last pass with every dispatch timed (one pass holds up to max_batch tokens: the whole
  // prompt at the default sizes); one decode step, where the GPU time of a token goes; with --parallel,
  // also one step of the widest batch (every sequence decoding). By kernel class.
  PassProfile prompt, single, batched;
  if (f.n_prompt > 0 && device->set_profiling(true)) {
    runtime::Session session(fwd, bench_sampling());
    if (f.depth > 0) {
      device->set_profiling(false);
      session.id_of(session.prefill(random_tokens(f.depth, fwd.config().n_vocab, 4)));
      device->set_profiling(true);
    }
    session.id_of(session.prefill(random_tokens(f.n_prompt, fwd.config().n_vocab, 5)));
    const uint32_t last = (f.n_prompt - 1) % fwd.max_batch() + 1;
    prompt = PassProfile(device->profile(),
                         last == uint32_t(f.n_prompt) ? "one pp" + std::to_string(f.n_prompt) + " pass"
                                                      : "the last pass of pp" + std::to_string(f.n_prompt) +
                                                            " (" + std::to_string(last) + " tokens)",
                         last);
    device->set_profiling(false);
  }
  if (f.n_gen > 0 && device->set_profiling(true)) {
    {
      runtime::Session session(fwd, bench_sampling());
      session.id_of(session.prefill(random_tokens(std::max(1, f.depth), fwd.config().n_vocab, 3)));
      session.id_of(session.step());
      single = PassProfile(device->profile(), "one decode step of 1 sequence", 1);
    }
    if (!f.parallel.empty()) {
      const uint32_t np = *std::max_element(f.parallel.begin(), f.parallel.end());
      DecodingBatch batch(fwd, np, 50);
      batch.batcher.step();
      batched = PassProfile(device->profile(), "one decode step of " + std::to_string(np) + " sequences", np);
    }
    device->set_profiling(false);
  }
  const auto& info = device->info();
  std::string backend = info.backend + " (" + info.device + ")";
  if (f.output == "json") {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : results) {
      double gbps = r.bytes_per_token * r.mean() / 1e9;
      out.push_back({{"model", model_name},
                     {"model_bytes", fwd.weight_bytes()},
                     {"backend", backend},
                     {"test", r.test},
                     {"n_prompt", f.n_prompt},
                     {"n_gen", f.n_gen},
                     {"depth", f.depth},
                     {"avg_ts", r.mean()},
                     {"stddev_ts", r.stddev()},
                     {"samples_ts", r.tok_s},
                     {"achieved_gbps", r.bytes_per_token > 0 ? gbps : 0.0},
                     {"copy_gbps", copy_gbps},
                     {"pct_of_copy", r.bytes_per_token > 0 ? 100 * gbps / copy_gbps : 0.0},
                     {"load_s", load_s}});
    }
    nlohmann::json doc = {{"results", out},
                          {"gpu_us_per_token_by_kernel", single.by_kernel_json()},
                          {"gpu_us_of_dispatches", single.sequence_json()}};
    if (!prompt.title.empty()) {
      doc["prompt_pass"] = {{"tokens", prompt.size},
                            {"gpu_us_by_kernel", prompt.by_kernel_json()},
                            {"gpu_us_of_dispatches", prompt.sequence_json()}};
    }
    if (!batched.title.empty()) {
      doc["parallel_step"] = {{"sequences", batched.size},
                              {"gpu_us_by_kernel", batched.by_kernel_json()},
                              {"gpu_us_of_dispatches", batched.sequence_json()}};
    }
    std::printf("%s\n", doc.dump(2).c_str());
  } else {
    std::printf("| model | size | backend | test | t/s | GB/s | %% of copy (%.0f GB/s) |\n", copy_gbps);
    std::printf("| --- | ---: | --- | --- | ---: | ---: | ---: |\n");
    for (const auto& r : results) {
      double gbps = r.bytes_per_token * r.mean() / 1e9;
      double mib = fwd.weight_bytes() / 1048576.0;
      std::string size = mib >= 1024 ? std::to_string(mib / 1024).substr(0, 5) + " GiB"
                                     : std::to_string(mib).substr(0, 6) + " MiB";
      std::printf("| %s | %s | %s | %s | %.2f ± %.2f | %s | %s |\n", model_name.c_str(), size.c_str(),
                  backend.c_str(), r.test.c_str(), r.mean(), r.stddev(),
                  r.bytes_per_token > 0 ? std::to_string(static_cast<int>(gbps)).c_str() : "",
                  r.bytes_per_token > 0
                      ? (std::to_string(static_cast<int>(100 * gbps / copy_gbps)) + "%").c_str()
                      : "");
    }
    prompt.print_markdown();
    single.print_markdown();
    batched.print_markdown();
  }
  return 0;
}

}  // namespace

Action add_bench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  auto* m = app.add_option("-m,--model", f->model, "GGUF model file")->check(CLI::ExistingFile);
  app.add_option("--synthetic", f->synthetic,
                 "random weights of a published shape, SHAPE:TYPE (llama-3.2-1b, llama-3.2-3b, llama-3-8b, "
                 "llama-2-7b, llama-3-70b, tiny; f32, f16, q8_0, q4_0)")
      ->excludes(m);
  app.add_option("--write-gguf", f->write_gguf,
                 "with --synthetic: also keep the generated model in this file");
  app.add_option("-p,--n-prompt", f->n_prompt, "prompt tokens (pp test; 0 = skip)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("-n,--n-gen", f->n_gen, "generated tokens (tg test; 0 = skip)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("-d,--n-depth", f->depth, "tokens already in the context")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("-r,--repetitions", f->reps, "repetitions of each test")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("-o,--output", f->output, "md or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"md", "json"}));
  app.add_flag("--prefill-gemv", f->prefill_gemv,
               "prefill with the batched GEMV instead of the tiled GEMM (for comparisons)");
  app.add_option("--parallel", f->parallel,
                 "also decode N sequences at once (continuous batching), a comma-separated list: aggregate "
                 "generated tok/s of each")
      ->delimiter(',')
      ->check(CLI::Range(1u, 256u));
  add_device_flags(app, f->device, f->kernels);
  return [f] { return bench(*f); };
}

}  // namespace wgllm::cli
