// GPU time of the sampler (sample.wgsl's reduce and merge dispatches, kernels/sample.hpp) by GPU timestamps
// (gpu::Device profiling: each dispatch in a pass of its own): per vocabulary, rows per pass and mode
// (greedy as `wgllm bench` samples; top-k 40, llama.cpp's default chain; top-k off, 256 candidates with
// top-p 0.95), the median of --reps runs of each dispatch. Every configuration's ids are checked against
// the CPU's argmax or top-k set first, so that a miscompiled kernel can't report a fast time.
//   sample_bench [--vocab 128256,32000] [--rows 1,8] [--reps 20]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "gpu/device.hpp"
#include "kernels/sample.hpp"
#include "runtime/step_params.hpp"

namespace {

using namespace wgllm;

struct Options {
  std::vector<uint32_t> vocabs = {128256, 32000};
  std::vector<uint32_t> rows = {1, 8};
  uint32_t reps = 20;
};

std::vector<uint32_t> numbers(const std::string& list) {
  std::vector<uint32_t> v;
  size_t at = 0;
  while (at <= list.size()) {
    const size_t comma = std::min(list.find(',', at), list.size());
    const std::string item = list.substr(at, comma - at);
    char* end = nullptr;
    const unsigned long n = std::strtoul(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || n == 0)
      fail_input("'" + list + "' is not a list of positive numbers");
    v.push_back(static_cast<uint32_t>(n));
    at = comma + 1;
  }
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) fail_input("usage: sample_bench [--vocab 128256,32000] [--rows 1,8] [--reps 20]");
    const std::string v = argv[++i];
    if (a == "--vocab")
      o.vocabs = numbers(v);
    else if (a == "--rows")
      o.rows = numbers(v);
    else if (a == "--reps")
      o.reps = numbers(v).at(0);
    else
      fail_input("unknown option " + a);
  }
  return o;
}

template <typename T>
std::span<const uint8_t> bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

struct Mode {
  const char* name;
  runtime::SamplingParams params;
};

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t.at(t.size() / 2);
}

void run(gpu::Device& dev, const Options& o) {
  const Mode modes[] = {{"greedy", {.temperature = 0}},
                        {"top-k 40", {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f}},
                        {"top-k off", {.temperature = 0.8f, .top_k = 0, .top_p = 0.95f, .min_p = 0.f}}};
  std::printf("| vocab | parts | rows | mode | reduce µs | merge µs | total µs | logits GB/s |\n");
  std::printf("|---:|---:|---:|---|---:|---:|---:|---:|\n");
  std::mt19937_64 rng(1234);
  for (const uint32_t vocab : o.vocabs) {
    const kernels::SampleKernels s = kernels::sample_kernels(vocab, runtime::kPenaltyHistory);
    for (const uint32_t n : o.rows) {
      std::normal_distribution<float> dist(0.f, 2.f);
      std::vector<float> logits(size_t(n) * vocab);
      for (float& x : logits) x = dist(rng);
      gpu::Buffer logits_buf = dev.buffer(logits.size() * 4, gpu::kStorage, "logits");
      dev.write(logits_buf, 0, bytes_of(logits));
      const std::vector<uint32_t> history(size_t(n) * (runtime::kPenaltyHistory + 1), 0);
      gpu::Buffer history_buf = dev.buffer(history.size() * 4, gpu::kStorage, "history");
      dev.write(history_buf, 0, bytes_of(history));
      gpu::Buffer sampled = dev.buffer(n * 4, gpu::kStorage, "sampled");
      gpu::Buffer partials = dev.buffer(s.partials_bytes(n), gpu::kStorage, "partials");
      gpu::Buffer rows_buf = dev.buffer(n * sizeof(runtime::GpuRow), gpu::kStorage, "rows");
      const gpu::Kernel reduce = dev.kernel("sample", s.reduce), merge = dev.kernel("sample", s.merge);
      const gpu::BufferSlice rb[] = {{rows_buf}, {logits_buf}, {history_buf}, {partials}};
      const gpu::BufferSlice mb[] = {{rows_buf}, {partials}, {history_buf}, {sampled}};
      const gpu::BindGroup reduce_group = dev.bind(reduce, rb), merge_group = dev.bind(merge, mb);

      for (const Mode& mode : modes) {
        std::vector<runtime::GpuRow> rows(n);
        for (uint32_t i = 0; i < n; ++i) rows[i] = runtime::gpu_row(mode.params, i, i, i);
        dev.write(rows_buf, 0, bytes_of(rows));
        dev.dispatch(reduce, reduce_group, n, s.parts);
        dev.dispatch(merge, merge_group, n);
        gpu::ReadTicket t = dev.read(sampled, 0, n * 4);
        dev.submit();
        std::vector<uint8_t> got_bytes = dev.wait(t);
        std::vector<uint32_t> got(n);
        std::memcpy(got.data(), got_bytes.data(), n * 4);
        const uint32_t k =
            std::min(mode.params.top_k > 0 ? uint32_t(mode.params.top_k) : kernels::kSampleCandidates, vocab);
        for (uint32_t i = 0; i < n; ++i) {
          const float* row = logits.data() + size_t(i) * vocab;
          std::vector<uint32_t> ids(vocab);
          std::iota(ids.begin(), ids.end(), 0u);
          std::stable_sort(ids.begin(), ids.end(), [&](uint32_t a, uint32_t b) { return row[a] > row[b]; });
          const size_t keep = mode.params.temperature <= 0 ? 1 : k;
          if (std::find(ids.begin(), ids.begin() + keep, got[i]) == ids.begin() + keep)
            fail_runtime(std::string(mode.name) + ": row " + std::to_string(i) + " sampled " +
                         std::to_string(got[i]) + ", not among the CPU's " + std::to_string(keep) +
                         " largest");
        }

        dev.set_profiling(true);
        for (uint32_t r = 0; r < o.reps; ++r) {
          dev.dispatch(reduce, reduce_group, n, s.parts);
          dev.dispatch(merge, merge_group, n);
        }
        dev.submit();
        std::vector<double> reduce_t, merge_t;
        const std::vector<gpu::Device::KernelTime> times = dev.profile();
        dev.set_profiling(false);
        for (size_t i = 0; i < times.size(); ++i) (i % 2 ? merge_t : reduce_t).push_back(times[i].seconds);
        const double a = median(reduce_t), b = median(merge_t);
        std::printf("| %u | %u | %u | %s | %.1f | %.1f | %.1f | %.1f |\n", vocab, s.parts, n, mode.name,
                    a * 1e6, b * 1e6, (a + b) * 1e6, double(logits.size()) * 4 / a / 1e9);
        std::fflush(stdout);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    auto dev = gpu::open_device();
    if (!dev->set_profiling(true)) fail_runtime("the adapter has no timestamp queries");
    dev->set_profiling(false);
    run(*dev, o);
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "sample_bench: %s\n", e.what());
    return e.kind() == ErrorKind::BadInput ? 2 : 1;
  }
}
