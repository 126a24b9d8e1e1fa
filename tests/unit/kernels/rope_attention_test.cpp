// rope_kv.wgsl and attention.wgsl against float64 CPU references: RoPE of q in place and of k into the KV
// cache row of the position (v copied), nothing else written; causal attention over positions 0..pos with
// GQA, never reading the cache rows after pos.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernel_harness.hpp"
#include "model/llama.hpp"

namespace wgllm::kernels_test {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

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

std::vector<float> random_vector(size_t n, std::mt19937_64& rng, float scale = 1.f) {
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<float> slice(const std::vector<float>& v, size_t begin, size_t n) {
  return {v.begin() + begin, v.begin() + begin + n};
}

// GGUF's llama RoPE of every head of `x` [n_heads * head_dim] at `pos`, in float64; pairs past rope_dim
// are returned unchanged.
std::vector<double> rope_reference(const std::vector<float>& x, uint32_t head_dim, uint32_t rope_dim,
                                   const std::vector<float>& inv_freq, uint32_t pos) {
  std::vector<double> out(x.begin(), x.end());
  for (size_t e = 0; e < x.size(); e += 2) {
    const uint32_t j = (e % head_dim) / 2;
    if (2 * j >= rope_dim) continue;
    const double theta = pos * double(inv_freq[j]);
    out[e] = x[e] * std::cos(theta) - x[e + 1] * std::sin(theta);
    out[e + 1] = x[e] * std::sin(theta) + x[e + 1] * std::cos(theta);
  }
  return out;
}

// Bit patterns of the dims that RoPE leaves alone (past rope_dim in each head).
std::vector<uint32_t> unrotated_bits(const std::vector<float>& x, uint32_t head_dim, uint32_t rope_dim) {
  std::vector<uint32_t> out, bits = bits_of(x);
  for (size_t e = 0; e < x.size(); ++e)
    if (e % head_dim >= rope_dim) out.push_back(bits[e]);
  return out;
}

class RopeKv : public KernelVariantTest {
 protected:
  void check(const Heads& h, uint32_t rope_dim, float freq_base, const std::vector<uint32_t>& positions) {
    SCOPED_TRACE(h.name() + " rope_dim " + std::to_string(rope_dim) + " base " + f32(freq_base));
    auto rng = test::rng(500 + h.head_dim + rope_dim);
    model::LlamaConfig config;
    config.head_dim = h.head_dim;
    config.rope_dim = rope_dim;
    config.rope_freq_base = freq_base;
    const std::vector<float> inv_freq = model::rope_inv_freq(config, {});  // [rope_dim / 2]

    uint32_t ctx = 0;
    for (uint32_t p : positions) ctx = std::max(ctx, p + 3);
    // The caches start random: every row but the position's must keep its bits.
    std::vector<float> k_cache = random_vector(size_t(ctx) * h.kv_dim(), rng);  // [ctx, kv_dim]
    std::vector<float> v_cache = random_vector(size_t(ctx) * h.kv_dim(), rng);  // [ctx, kv_dim]
    gpu::Buffer k_cache_buf = upload(k_cache, "k cache"), v_cache_buf = upload(v_cache, "v cache");
    // The (cos, sin) table the runtime builds: [ctx, rope_dim / 2, 2], computed in double. NaN past the
    // end: the pairs left alone must not read it.
    std::vector<float> table(size_t(ctx) * inv_freq.size() * 2);
    for (size_t p = 0; p < ctx; ++p)
      for (size_t j = 0; j < inv_freq.size(); ++j) {
        table[(p * inv_freq.size() + j) * 2] = static_cast<float>(std::cos(double(p) * inv_freq[j]));
        table[(p * inv_freq.size() + j) * 2 + 1] = static_cast<float>(std::sin(double(p) * inv_freq[j]));
      }
    table.resize(table.size() + 8, kNaN);
    gpu::Buffer inv_freq_buf = upload(table, "rope table");
    gpu::KernelDefines d = h.defines();
    d["ROPE_DIM"] = u32(rope_dim);
    d = variant(d);
    const uint32_t threads = (h.n_heads + h.n_kv) * h.head_dim / 2 + h.kv_dim() / 2;

    for (uint32_t pos : positions) {
      SCOPED_TRACE("pos " + std::to_string(pos));
      std::vector<float> q = random_vector(h.q_dim(), rng), k = random_vector(h.kv_dim(), rng),
                         v = random_vector(h.kv_dim(), rng);
      runtime::StepParams step;
      step.pos = pos;
      step.n_ctx = ctx;
      // One buffer [q | k | v], as the runtime's projections write it.
      std::vector<float> qkv = q;
      qkv.insert(qkv.end(), k.begin(), k.end());
      qkv.insert(qkv.end(), v.begin(), v.end());
      gpu::Buffer qkv_buf = upload(qkv, "qkv");
      dispatch("rope_kv", d, {{upload_step(step)}, {inv_freq_buf}, {qkv_buf}, {k_cache_buf}, {v_cache_buf}},
               (threads + 63) / 64);
      std::vector<float> qkv_got = download<float>(qkv_buf, qkv.size());
      std::vector<float> q_got(qkv_got.begin(), qkv_got.begin() + q.size());
      EXPECT_EQ(bits_of(std::vector<float>(qkv_got.begin() + q.size(), qkv_got.end())),
                bits_of(std::vector<float>(qkv.begin() + q.size(), qkv.end())))
          << "k and v inputs must stay as they were";
      std::vector<float> k_got = download<float>(k_cache_buf, k_cache.size());
      std::vector<float> v_got = download<float>(v_cache_buf, v_cache.size());

      // The table's cos/sin are the double values rounded to f32: the error no longer grows with pos.
      const double tolerance = 2e-6;
      const size_t row = size_t(pos) * h.kv_dim();
      const std::vector<float> k_row = slice(k_got, row, h.kv_dim());
      EXPECT_LT(test::relative_error(q_got, rope_reference(q, h.head_dim, rope_dim, inv_freq, pos)),
                tolerance)
          << "q";
      EXPECT_LT(test::relative_error(k_row, rope_reference(k, h.head_dim, rope_dim, inv_freq, pos)),
                tolerance)
          << "k";
      if (pos == 0) {
        EXPECT_EQ(bits_of(q_got), bits_of(q)) << "angle 0 must leave q as it was";
        EXPECT_EQ(bits_of(k_row), bits_of(k)) << "angle 0 must store k as it was";
      }
      EXPECT_EQ(unrotated_bits(q_got, h.head_dim, rope_dim), unrotated_bits(q, h.head_dim, rope_dim));
      EXPECT_EQ(unrotated_bits(k_row, h.head_dim, rope_dim), unrotated_bits(k, h.head_dim, rope_dim));
      EXPECT_EQ(bits_of(slice(v_got, row, h.kv_dim())), bits_of(v)) << "v row";

      // Only row `pos` of each cache may change.
      std::copy(k_row.begin(), k_row.end(), k_cache.begin() + row);
      std::copy(v.begin(), v.end(), v_cache.begin() + row);
      EXPECT_EQ(bits_of(k_got), bits_of(k_cache)) << "k cache rows other than pos written";
      EXPECT_EQ(bits_of(v_got), bits_of(v_cache)) << "v cache rows other than pos written";
    }
  }
};

TEST_P(RopeKv, FullRotation) {
  SCOPED_TRACE(test::seed_note());
  check({4, 4, 8}, 8, 10000.f, {0, 1, 7, 1000});
}

TEST_P(RopeKv, PartialRotationWithGqa) {
  SCOPED_TRACE(test::seed_note());
  check({8, 2, 64}, 32, 10000.f, {0, 1, 300, 1000});
  check({6, 3, 80}, 80, 500000.f, {3, 1000});
}

class Attention : public KernelVariantTest {
 protected:
  void check(const Heads& h, uint32_t ctx, const std::vector<uint32_t>& positions) {
    SCOPED_TRACE(h.name() + " ctx " + std::to_string(ctx));
    auto rng = test::rng(600 + h.n_heads * 100 + h.n_kv * 10 + h.head_dim);
    const uint32_t kv_dim = h.kv_dim(), group = h.n_heads / h.n_kv;
    const double scale = 1.0 / std::sqrt(double(h.head_dim));
    gpu::KernelDefines d = h.defines();
    d["CTX"] = u32(ctx);
    d["SCALE"] = f32(scale);
    d = variant(d);
    for (uint32_t pos : positions) {
      SCOPED_TRACE("pos " + std::to_string(pos));
      // Rows 0..pos hold data; later rows are NaN, so that reading one would poison the output.
      std::vector<float> k_cache(size_t(ctx) * kv_dim, kNaN),
          v_cache(size_t(ctx) * kv_dim, kNaN);  // [ctx, kv_dim]
      std::vector<float> filled = random_vector(size_t(pos + 1) * kv_dim, rng, 1.5f);
      std::copy(filled.begin(), filled.end(), k_cache.begin());
      filled = random_vector(size_t(pos + 1) * kv_dim, rng);
      std::copy(filled.begin(), filled.end(), v_cache.begin());
      std::vector<float> q = random_vector(h.q_dim(), rng, 1.5f);  // [n_heads * head_dim]
      std::vector<float> out_init(h.q_dim() + 2, kNaN);            // [q_dim + 2 sentinels]

      runtime::StepParams step;
      step.pos = pos;
      step.n_ctx = ctx;
      gpu::Buffer scores = device().buffer(size_t(h.n_heads) * ctx * 4, gpu::kStorage, "scores");
      gpu::Buffer out = upload(out_init, "out");
      dispatch("attention", d,
               {{upload_step(step)},
                {upload(q, "q")},
                {upload(k_cache, "k cache")},
                {upload(v_cache, "v cache")},
                {scores},
                {out}},
               h.n_heads);
      std::vector<float> got = download<float>(out, out_init.size());

      std::vector<double> want(h.q_dim());  // [n_heads * head_dim]
      for (uint32_t head = 0; head < h.n_heads; ++head) {
        const size_t kv = size_t(head / group) * h.head_dim, qh = size_t(head) * h.head_dim;
        std::vector<double> p(pos + 1);
        double max = -INFINITY, sum = 0;
        for (uint32_t t = 0; t <= pos; ++t) {
          double s = 0;
          for (uint32_t i = 0; i < h.head_dim; ++i) s += double(q[qh + i]) * k_cache[t * kv_dim + kv + i];
          p[t] = s * scale;
          max = std::max(max, p[t]);
        }
        for (double& x : p) sum += x = std::exp(x - max);
        for (uint32_t i = 0; i < h.head_dim; ++i) {
          double acc = 0;
          for (uint32_t t = 0; t <= pos; ++t) acc += p[t] * v_cache[t * kv_dim + kv + i];
          want[qh + i] = acc / sum;
        }
      }
      EXPECT_LT(test::relative_error(slice(got, 0, h.q_dim()), want), 1e-5);
      EXPECT_EQ(bits_of(slice(got, h.q_dim(), 2)), bits_of(slice(out_init, h.q_dim(), 2)))
          << "written past q_dim";
    }
  }
};

TEST_P(Attention, OneKvHeadPerQueryHead) {
  SCOPED_TRACE(test::seed_note());
  check({4, 4, 8}, 320, {0, 1, 300});
}

TEST_P(Attention, GqaGroupsOfTwoAndFour) {
  SCOPED_TRACE(test::seed_note());
  check({4, 2, 64}, 320, {0, 1, 300});
  check({8, 2, 80}, 320, {0, 1, 300});
}

WGLLM_KERNEL_VARIANTS(RopeKv);
WGLLM_KERNEL_VARIANTS(Attention);

}  // namespace
}  // namespace wgllm::kernels_test
