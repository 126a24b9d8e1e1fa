// What the rope_kv, attention and attention_prefill kernel tests share: a case's heads, random inputs, and
// the float64 reference of one token's causal attention.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernel_harness.hpp"

namespace wgllm::kernels_test {

inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Heads {
  uint32_t n_heads, n_kv, head_dim;
  uint32_t q_dim() const { return n_heads * head_dim; }
  uint32_t kv_dim() const { return n_kv * head_dim; }
  std::string name() const {
    return "heads " + std::to_string(n_heads) + " kv " + std::to_string(n_kv) + " head_dim " +
           std::to_string(head_dim);
  }
  gpu::KernelDefines defines() const {
    return {{"N_HEADS", u32(n_heads)}, {"N_KV", u32(n_kv)}, {"HEAD_DIM", u32(head_dim)}};
  }
};

inline std::vector<float> random_vector(size_t n, std::mt19937_64& rng, float scale = 1.f) {
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::vector<float> slice(const std::vector<float>& v, size_t begin, size_t n) {
  return {v.begin() + begin, v.begin() + begin + n};
}

// Causal attention of one token's q [n_heads * head_dim] over the cache rows first_row + start..pos
// (caches [rows, n_kv * head_dim]), in float64: [n_heads * head_dim].
inline std::vector<double> attention_reference(const Heads& h, const std::vector<float>& q,
                                               const std::vector<float>& k_cache,
                                               const std::vector<float>& v_cache, size_t first_row,
                                               uint32_t start, uint32_t pos) {
  const uint32_t kv_dim = h.kv_dim(), group = h.n_heads / h.n_kv;
  const double scale = 1.0 / std::sqrt(double(h.head_dim));
  std::vector<double> want(h.q_dim());
  for (uint32_t head = 0; head < h.n_heads; ++head) {
    const size_t kv = size_t(head / group) * h.head_dim, qh = size_t(head) * h.head_dim;
    std::vector<double> p(pos + 1 - start);  // [positions start..pos]
    double max = -INFINITY, sum = 0;
    for (uint32_t t = start; t <= pos; ++t) {
      double s = 0;
      for (uint32_t e = 0; e < h.head_dim; ++e)
        s += double(q[qh + e]) * k_cache[(first_row + t) * kv_dim + kv + e];
      p[t - start] = s * scale;
      max = std::max(max, p[t - start]);
    }
    for (double& x : p) sum += x = std::exp(x - max);
    for (uint32_t e = 0; e < h.head_dim; ++e) {
      double acc = 0;
      for (uint32_t t = start; t <= pos; ++t)
        acc += p[t - start] * v_cache[(first_row + t) * kv_dim + kv + e];
      want[qh + e] = acc / sum;
    }
  }
  return want;
}

// The first position a token at `pos` attends to, as attention_keys.wgsl defines it.
inline uint32_t first_key(uint32_t pos, uint32_t window, uint32_t chunk) {
  return chunk ? pos - pos % chunk : window && pos >= window ? pos - window + 1 : 0;
}

}  // namespace wgllm::kernels_test
