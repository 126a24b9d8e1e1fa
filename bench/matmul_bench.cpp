// GPU time of matmul.wgsl (and quantize_act.wgsl) on the prefill GEMMs of the Llama-3-8B and Llama-3.2-1B
// shapes (as the forward pass runs them: q|k|v and gate|up stacked, one product each), by GPU timestamps
// (gpu::Device profiling): per shape, weight type, path (int8 / f32) and tile, the median of several runs
// after a warm-up, in T multiply-adds/s and % of the H100's measured peak (docs/perf.md, "Prefill GEMM").
// Each configuration is also checked against a float64 CPU product on sampled outputs, so a miscompiled
// kernel can't report a fast time.
//   matmul_bench [--m 512] [--reps 10] [--models 8b,1b] [--types q4_0,q8_0] [--paths int8,f32] [--sweep]
//                [--warmup-ms 500]
// Without --sweep only the tile matmul_tile() chooses runs; with it, every candidate tile that fits. Exits 1
// if any configuration fails its check. The model "tiny" (one small product) is make test's smoke test.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "gguf/tensor_type.hpp"
#include "gpu/device.hpp"
#include "kernels/matmul.hpp"
#include "quant/codec.hpp"
#include "quant/gpu_layout.hpp"
#include "runtime/gpu_weights.hpp"

namespace {

using namespace wgllm;
using gguf::TensorType;
using kernels::MatmulTile;
using runtime::weight_defines;

// Measured peaks of the H100 through this Dawn (../shared/webgpu/DAWN.md): multiply-adds per second.
constexpr double kInt8Peak = 63.6e12;  // dot4I8Packed: 4 int8 multiply-adds per instruction
constexpr double kF32Peak = 31.75e12;  // f32 FMA (63.5 TFLOP/s)

struct Gemm {
  const char* name;
  uint32_t n, k;  // N rows of W, K columns
};
struct Model {
  const char* name;
  uint32_t layers;
  std::vector<Gemm> gemms;
};

const std::vector<Model> kModels = {
    {"8b", 32, {{"q|k|v", 6144, 4096}, {"o", 4096, 4096}, {"gate|up", 28672, 4096}, {"down", 4096, 14336}}},
    {"1b", 16, {{"q|k|v", 3072, 2048}, {"o", 2048, 2048}, {"gate|up", 16384, 2048}, {"down", 2048, 8192}}},
    {"tiny", 1, {{"o", 64, 256}}},
};

// Weights of a published model's spread (uniform in +-0.05), quantized as llama.cpp would: the planes and
// scales the kernel reads look like a real file's. (A fast generator: 180M values per type.)
std::vector<uint8_t> random_matrix(TensorType type, uint32_t rows, uint32_t cols, uint64_t& state) {
  std::vector<float> w(size_t(rows) * cols);
  for (float& v : w) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    v = (float(state >> 40) / float(1 << 24) - 0.5f) * 0.1f;
  }
  return quant::quantize_rows(type, w.data(), rows, cols);
}

template <typename T>
std::span<const uint8_t> bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

struct Options {
  uint32_t m = 512, reps = 10, warmup_ms = 500;
  std::vector<std::string> models = {"8b", "1b"};
  std::vector<TensorType> types = {TensorType::Q4_0, TensorType::Q8_0};
  std::vector<bool> int8_paths = {true, false};
  bool sweep = false;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

TensorType parse_type(const std::string& name) {
  for (uint32_t raw = 0; raw < 64; ++raw) {
    const auto t = gguf::type_traits(raw);
    if (t && t->name == name) return static_cast<TensorType>(raw);
  }
  fail_input("unknown type " + name);
}

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o), dev_(gpu::open_device()), rng_(1234) {
    if (!dev_->set_profiling(true)) fail_runtime("the adapter has no timestamp queries");
    dev_->set_profiling(false);
    std::printf("adapter: %s (%s), workgroup storage %u B\n", dev_->info().device.c_str(),
                dev_->info().backend.c_str(), dev_->limits().max_compute_workgroup_storage_size);
  }

  void run() {
    for (const Model& model : kModels) {
      if (std::find(o_.models.begin(), o_.models.end(), model.name) == o_.models.end()) continue;
      for (TensorType type : o_.types) {
        std::map<bool, double> layer_seconds;  // per path
        double layer_macs = 0;
        for (const Gemm& g : model.gemms) {
          for (const auto& [int8, best] : measure(model, g, type)) layer_seconds[int8] += best;
          layer_macs += double(o_.m) * g.n * g.k;
        }
        for (const auto& [int8, sec] : layer_seconds) {
          const double peak = int8 ? kInt8Peak : kF32Peak;
          summary_.push_back(
              std::string(model.name) + " " + std::string(gguf::type_name(type)) +
              (int8 ? " int8" : " f32 ") + ": layer GEMMs " + fmt(sec * 1e6, "%.0f") + " us for " +
              std::to_string(o_.m) + " tokens = " + fmt(layer_macs / sec / 1e12, "%.1f") + " T MAC/s (" +
              fmt(100 * layer_macs / sec / peak, "%.0f") +
              "% of peak); GEMMs alone: " + fmt(o_.m / (sec * model.layers), "%.0f") + " tok/s");
        }
      }
    }
    std::printf("\nsummary (best tile per shape; quantize_act not included):\n");
    for (const std::string& s : summary_) std::printf("  %s\n", s.c_str());
    if (wrong_ > 0) fail_runtime(std::to_string(wrong_) + " configurations failed their float64 check");
  }

 private:
  static std::string fmt(double v, const char* f) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
  }

  std::vector<uint8_t> fetch(gpu::Buffer b, uint64_t size) {
    const gpu::ReadTicket t = dev_->read(b, 0, size);
    dev_->submit();
    return dev_->wait(t);
  }

  // Median GPU seconds of `reps` dispatches of one kernel. The SM clock drops within seconds of GPU idle
  // (weight generation, pipeline compilation, read-backs) and takes a while to come back: in the first H100
  // run a 50 ms warm-up left most configurations at a fraction of full clock (the same quantize_act took
  // 12 us in the first configuration and 30 us later). So the kernel first runs back to back for half a
  // second of wall time (--warmup-ms).
  double time_kernel(gpu::Kernel k, gpu::BindGroup bg, uint32_t gx, uint32_t gy, gpu::Buffer sync) {
    const auto start = std::chrono::steady_clock::now();
    for (uint32_t batch = 1;
         std::chrono::steady_clock::now() - start < std::chrono::milliseconds(o_.warmup_ms);
         batch = std::min(2 * batch, 256u)) {
      for (uint32_t i = 0; i < batch; ++i) dev_->dispatch(k, bg, gx, gy);
      fetch(sync, 4);
    }
    return median_time(k, bg, gx, gy);
  }

  double median_time(gpu::Kernel k, gpu::BindGroup bg, uint32_t gx, uint32_t gy) {
    dev_->set_profiling(true);
    for (uint32_t i = 0; i < o_.reps; ++i) dev_->dispatch(k, bg, gx, gy);
    dev_->submit();
    std::vector<double> t;
    for (const auto& kt : dev_->profile()) t.push_back(kt.seconds);
    dev_->set_profiling(false);
    std::sort(t.begin(), t.end());
    return t.at(t.size() / 2);
  }

  // A fixed kernel (quantize_act over 512 x 4096) timed right after each measurement: when it is slower
  // than at the start, the clock was down for that figure too.
  double canary() {
    if (!canary_.kernel.id) {
      constexpr uint32_t kTokens = 512, kCols = 4096;
      const kernels::KernelDispatch d = kernels::quantize_act_dispatch(kCols, kTokens);
      canary_.kernel = dev_->kernel("quantize_act", d.defines);
      std::vector<float> x(size_t(kTokens) * kCols, 0.5f);
      gpu::Buffer xb = dev_->buffer(x.size() * 4, gpu::kStorage, "canary x");
      dev_->write(xb, 0, bytes_of(x));
      const uint32_t batch_words[4] = {kTokens, 0, 0, 0};
      gpu::Buffer batch = dev_->buffer(16, gpu::kUniform, "canary batch");
      dev_->write(batch, 0, {reinterpret_cast<const uint8_t*>(batch_words), 16});
      const gpu::BufferSlice s[] = {
          {xb},
          {dev_->buffer(kernels::act_codes_bytes(kTokens, kCols), gpu::kStorage, "canary xq")},
          {dev_->buffer(kernels::act_scales_bytes(kTokens, kCols), gpu::kStorage, "canary xs")},
          {batch}};
      canary_.bind = dev_->bind(canary_.kernel, s);
      canary_.gy = d.groups_y;
    }
    return median_time(canary_.kernel, canary_.bind, 1, canary_.gy);
  }

  // One shape and type: on each path, every candidate tile (or the chosen one); returns the best times.
  std::map<bool, double> measure(const Model& model, const Gemm& g, TensorType type) {
    const uint32_t m = o_.m;
    const std::vector<uint8_t> gguf_bytes = random_matrix(type, g.n, g.k, state_);
    const quant::GpuLayout packed = quant::repack(type, gguf_bytes.data(), g.n, g.k);
    gpu::Buffer wq = dev_->buffer(packed.quants.size() * 4, gpu::kStorage, "w");
    dev_->write(wq, 0, bytes_of(packed.quants));
    gpu::Buffer ws;
    if (!packed.scales.empty()) {
      ws = dev_->buffer(packed.scales.size() * 4, gpu::kStorage, "scales");
      dev_->write(ws, 0, bytes_of(packed.scales));
    }
    std::normal_distribution<float> dist(0.f, 1.f);
    std::vector<float> x(size_t(m) * g.k);  // [m, k]
    for (float& v : x) v = dist(rng_);
    gpu::Buffer xb = dev_->buffer(x.size() * 4, gpu::kStorage, "x");
    dev_->write(xb, 0, bytes_of(x));
    gpu::Buffer y = dev_->buffer(uint64_t(m) * g.n * 4, gpu::kStorage, "y");
    const uint32_t batch_words[4] = {m, 0, 0, 0};
    gpu::Buffer batch = dev_->buffer(16, gpu::kUniform, "batch");
    dev_->write(batch, 0, {reinterpret_cast<const uint8_t*>(batch_words), 16});

    std::map<bool, double> best_by_path;
    for (const bool int8 : o_.int8_paths) {
      if (int8 && !kernels::matmul_int8_supported(weight_defines(type), g.k)) continue;
      best_by_path[int8] = measure_path(model, g, type, int8, gguf_bytes, wq, ws, x, xb, y, batch);
    }
    return best_by_path;
  }

  double measure_path(const Model& model, const Gemm& g, TensorType type, bool int8,
                      const std::vector<uint8_t>& gguf_bytes, gpu::Buffer wq, gpu::Buffer ws,
                      const std::vector<float>& x, gpu::Buffer xb, gpu::Buffer y, gpu::Buffer batch) {
    const uint32_t m = o_.m;
    // The activations the product sees: x, or quantize_act's d * q (read back).
    std::vector<float> x_used = x;
    gpu::Buffer xq, xs;
    if (int8) {
      xq = dev_->buffer(kernels::act_codes_bytes(m, g.k), gpu::kStorage, "xq");
      xs = dev_->buffer(kernels::act_scales_bytes(m, g.k), gpu::kStorage, "xs");
      const kernels::KernelDispatch qd = kernels::quantize_act_dispatch(g.k, m);
      const gpu::Kernel qk = dev_->kernel("quantize_act", qd.defines);
      const gpu::BufferSlice qs[] = {{xb}, {xq}, {xs}, {batch}};
      const gpu::BindGroup qbg = dev_->bind(qk, qs);
      const double qt = time_kernel(qk, qbg, qd.groups_x, qd.groups_y, xs);
      std::printf(
          "%s %-8s K=%-5u quantize_act %8.1f us (%.0f GB/s)\n", model.name, g.name, g.k, qt * 1e6,
          (double(m) * g.k * 4 + kernels::act_codes_bytes(m, g.k) + kernels::act_scales_bytes(m, g.k)) / qt /
              1e9);
      const std::vector<uint8_t> qb = fetch(xq, kernels::act_codes_bytes(m, g.k));
      const std::vector<uint8_t> sb = fetch(xs, kernels::act_scales_bytes(m, g.k));
      for (size_t e = 0; e < x_used.size(); ++e) {
        float d;
        std::memcpy(&d, sb.data() + (e / 32) * 16, 4);
        x_used[e] = d * float(static_cast<int8_t>(qb[e]));
      }
    }

    kernels::MatmulShape shape;
    shape.weight = weight_defines(type);
    shape.rows = g.n;
    shape.cols = g.k;
    shape.max_tokens = m;
    shape.int8 = int8;
    const uint32_t limit = dev_->limits().max_compute_workgroup_storage_size;
    std::vector<MatmulTile> tiles = {kernels::matmul_tile(shape, limit)};
    if (o_.sweep) {
      const std::vector<MatmulTile> more =
          int8 ? std::vector<MatmulTile>{{128, 128, 8, 8, 2}, {128, 128, 8, 8, 1}, {64, 128, 8, 8, 2},
                                         {64, 128, 8, 8, 4},  {128, 64, 8, 8, 2},  {64, 128, 4, 8, 2},
                                         {128, 64, 8, 4, 2},  {64, 64, 4, 4, 2},   {64, 64, 8, 8, 2},
                                         {128, 64, 8, 4, 4},  {128, 32, 8, 4, 2},  {128, 32, 8, 4, 4},
                                         {64, 64, 8, 4, 2},   {128, 64, 8, 4, 1}}
               : std::vector<MatmulTile>{{128, 128, 8, 8, 1},
                                         {64, 128, 8, 8, 1},
                                         {128, 64, 8, 8, 1},
                                         {64, 64, 4, 4, 1},
                                         {64, 64, 8, 8, 1}};
      for (const MatmulTile& t : more)
        if (std::find(tiles.begin(), tiles.end(), t) == tiles.end() &&
            kernels::matmul_workgroup_bytes(t, int8) <= limit)
          tiles.push_back(t);
    }

    // Sampled outputs for the check: (token, row) pairs and their f64 products.
    std::vector<std::pair<uint32_t, uint32_t>> samples;
    std::vector<double> want;
    {
      std::uniform_int_distribution<uint32_t> ut(0, m - 1), ur(0, g.n - 1);
      std::vector<float> row(g.k);
      const uint64_t rb = quant::row_bytes(type, g.k);
      for (int i = 0; i < 48; ++i) {
        const uint32_t t = ut(rng_), r = ur(rng_);
        quant::dequantize_row(type, gguf_bytes.data() + r * rb, row.data(), g.k);
        double acc = 0;
        for (uint32_t c = 0; c < g.k; ++c) acc += double(row[c]) * x_used[size_t(t) * g.k + c];
        samples.push_back({t, r});
        want.push_back(acc);
      }
    }

    double best = INFINITY;
    const double macs = double(m) * g.n * g.k;
    const double peak = int8 ? kInt8Peak : kF32Peak;
    for (const MatmulTile& t : tiles) {
      const kernels::KernelDispatch d = kernels::matmul_dispatch(shape, t);
      const gpu::Kernel k = dev_->kernel("matmul", d.defines);
      std::vector<gpu::BufferSlice> s = {{wq}};
      if (ws) s.push_back({ws});
      s.push_back({int8 ? xq : xb});
      s.push_back({y});
      s.push_back({batch});
      if (int8) s.push_back({xs});
      const gpu::BindGroup bg = dev_->bind(k, s);
      const double sec = time_kernel(k, bg, d.groups_x, d.groups_y, y);
      const double canary_us = canary() * 1e6;
      const std::vector<uint8_t> yb = fetch(y, uint64_t(m) * g.n * 4);
      double num = 0, den = 0;
      for (size_t i = 0; i < samples.size(); ++i) {
        float got;
        std::memcpy(&got, yb.data() + (size_t(samples[i].first) * g.n + samples[i].second) * 4, 4);
        num += (got - want[i]) * (got - want[i]);
        den += want[i] * want[i];
      }
      const double err = std::sqrt(num / den);
      const bool right = err <= (int8 ? 1e-5 : 1e-4);
      std::printf(
          "%s %-8s N=%-6u K=%-5u %-5s %s tile %3ux%-3u %ux%u kc %u  %8.1f us  %5.1f T MAC/s  %3.0f%%  err "
          "%.1e  canary %.1f us%s\n",
          model.name, g.name, g.n, g.k, std::string(gguf::type_name(type)).c_str(), int8 ? "int8" : "f32 ",
          t.bm, t.bn, t.tm, t.tn, t.kc, sec * 1e6, macs / sec / 1e12, 100 * macs / sec / peak, err, canary_us,
          right ? "" : "  WRONG");
      std::fflush(stdout);
      if (right)
        best = std::min(best, sec);
      else
        ++wrong_;
    }
    return best;
  }

  Options o_;
  std::unique_ptr<gpu::Device> dev_;
  std::mt19937_64 rng_;
  uint64_t state_ = 1;
  std::vector<std::string> summary_;
  uint32_t wrong_ = 0;  // configurations that failed their check
  struct {
    gpu::Kernel kernel;
    gpu::BindGroup bind;
    uint32_t gy = 0;
  } canary_;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) wgllm::fail_input(a + " needs a value");
        return argv[++i];
      };
      auto count = [&](uint32_t min) {
        const std::string v = value();
        char* end = nullptr;
        const unsigned long n = std::strtoul(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || v[0] == '-' || n < min || n > 1u << 20)
          wgllm::fail_input(a + " takes a whole number from " + std::to_string(min) + " to 1048576, not '" +
                            v + "'");
        return static_cast<uint32_t>(n);
      };
      if (a == "--m") {
        o.m = count(1);
      } else if (a == "--reps") {
        o.reps = count(1);
      } else if (a == "--warmup-ms") {
        o.warmup_ms = count(0);
      } else if (a == "--models") {
        o.models = split(value());
        for (const std::string& name : o.models)
          if (std::none_of(kModels.begin(), kModels.end(), [&](const Model& m) { return name == m.name; }))
            wgllm::fail_input("unknown model '" + name + "' (8b, 1b or tiny)");
      } else if (a == "--types") {
        o.types.clear();
        for (const std::string& t : split(value())) o.types.push_back(parse_type(t));
      } else if (a == "--paths") {
        o.int8_paths.clear();
        for (const std::string& p : split(value())) {
          if (p != "int8" && p != "f32") wgllm::fail_input("unknown path '" + p + "' (int8 or f32)");
          o.int8_paths.push_back(p == "int8");
        }
      } else if (a == "--sweep") {
        o.sweep = true;
      } else {
        wgllm::fail_input("unknown argument " + a);
      }
    }
    Bench(o).run();
  } catch (const wgllm::Error& e) {
    std::fprintf(stderr, "matmul_bench: %s\n", e.what());
    return e.kind() == wgllm::ErrorKind::BadInput ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "matmul_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
