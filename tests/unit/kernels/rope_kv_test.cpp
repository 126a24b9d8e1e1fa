// rope_kv.wgsl against a float64 CPU reference, over passes of several tokens of different slots and
// positions: RoPE of each token's q in place and of its k into the KV cache row of its (slot, position) (v
// copied), nothing else written; with biases, NEOX pairs, q/k norms and no rotation.
#include "kernels/rope_kv.hpp"
#include "attention_fixtures.hpp"
#include "model/llama.hpp"

namespace wgllm::kernels_test {
namespace {

// RoPE of every head of `x` [n_heads * head_dim] at `pos`, in float64: GGUF's llama pairs (2j, 2j + 1) or
// NEOX's (j, j + rope_dim / 2); dims past rope_dim are returned unchanged.
template <typename T>
std::vector<double> rope_reference(const std::vector<T>& x, uint32_t head_dim, uint32_t rope_dim,
                                   const std::vector<float>& inv_freq, uint32_t pos, bool neox = false) {
  std::vector<double> out(x.begin(), x.end());
  for (size_t h = 0; h < x.size(); h += head_dim)
    for (uint32_t j = 0; j < rope_dim / 2; ++j) {
      const size_t a = h + (neox ? j : 2 * j), b = h + (neox ? j + rope_dim / 2 : 2 * j + 1);
      const double theta = pos * double(inv_freq[j]);
      out[a] = x[a] * std::cos(theta) - x[b] * std::sin(theta);
      out[b] = x[a] * std::sin(theta) + x[b] * std::cos(theta);
    }
  return out;
}

// Each head of `x` RMS-normalised (eps inside the root) and scaled by `w` [head_dim], in float64; `w` empty:
// `x` as it is.
std::vector<double> head_norm(const std::vector<float>& x, uint32_t head_dim, const std::vector<float>& w,
                              double eps) {
  std::vector<double> out(x.begin(), x.end());
  if (w.empty()) return out;
  for (size_t h = 0; h < x.size(); h += head_dim) {
    double ss = 0;
    for (uint32_t e = 0; e < head_dim; ++e) ss += out[h + e] * out[h + e];
    const double scale = 1.0 / std::sqrt(ss / head_dim + eps);
    for (uint32_t e = 0; e < head_dim; ++e) out[h + e] *= scale * w[e];
  }
  return out;
}

// Each head of `x` RMS-normalised without weights (eps inside the root), in place.
void weightless_norm(std::vector<double>& x, uint32_t head_dim, double eps) {
  for (size_t h = 0; h < x.size(); h += head_dim) {
    double ss = 0;
    for (uint32_t e = 0; e < head_dim; ++e) ss += x[h + e] * x[h + e];
    const double scale = 1.0 / std::sqrt(ss / head_dim + eps);
    for (uint32_t e = 0; e < head_dim; ++e) x[h + e] *= scale;
  }
}

// Bit patterns of the dims that RoPE leaves alone (past rope_dim in each head).
std::vector<uint32_t> unrotated_bits(const std::vector<float>& x, uint32_t head_dim, uint32_t rope_dim) {
  std::vector<uint32_t> out, bits = bits_of(x);
  for (size_t e = 0; e < x.size(); ++e)
    if (e % head_dim >= rope_dim) out.push_back(bits[e]);
  return out;
}

// What rope_kv does beyond plain llama's RoPE.
struct RopeOptions {
  bool bias = false;     // BIAS: q/k/v biases added first
  bool neox = false;     // NEOX: pairs (j, j + rope_dim / 2)
  bool qk_norm = false;  // QK_NORM: each q and k head RMS-normalised with weights before the rotation
  bool l2_norm = false;  // L2_NORM: each q and k head RMS-normalised without weights after the rotation
  bool no_rope = false;  // NO_ROPE: no rotation; q times a factor of its position (attention temperature)
};

// x + b elementwise in f32, as the kernel adds a bias (b empty: x).
std::vector<float> plus(const std::vector<float>& x, const std::vector<float>& b) {
  std::vector<float> out = x;
  for (size_t i = 0; i < b.size(); ++i) out[i] += b[i];
  return out;
}

class RopeKv : public KernelVariantTest {
 protected:
  void check(const Heads& h, uint32_t rope_dim, float freq_base, const std::vector<uint32_t>& positions,
             const RopeOptions& o = {}) {
    SCOPED_TRACE(h.name() + " rope_dim " + std::to_string(rope_dim) + " base " + f32(freq_base) +
                 (o.bias ? " bias" : "") + (o.neox ? " neox" : "") + (o.qk_norm ? " qk_norm" : "") +
                 (o.l2_norm ? " l2_norm" : "") + (o.no_rope ? " no_rope" : ""));
    auto rng = test::rng(500 + h.head_dim + rope_dim);
    model::LlamaConfig config;
    config.head_dim = h.head_dim;
    config.rope_dim = rope_dim;
    config.rope_freq_base = freq_base;
    const std::vector<float> inv_freq = model::rope_inv_freq(config, {});  // [rope_dim / 2]

    // One pass: token i at positions[i] of slot i % kSlots.
    constexpr uint32_t kSlots = 3;
    uint32_t ctx = 0;
    for (uint32_t p : positions) ctx = std::max(ctx, p + 3);
    const auto n = static_cast<uint32_t>(positions.size());
    std::vector<runtime::GpuToken> tokens(n);
    for (uint32_t i = 0; i < n; ++i) tokens[i] = {i % kSlots, positions[i], 0, 0};
    // The caches start random: every row but the tokens' must keep its bits.
    std::vector<float> k_cache =
        random_vector(size_t(kSlots) * ctx * h.kv_dim(), rng);  // [slots * ctx, kv_dim]
    std::vector<float> v_cache =
        random_vector(size_t(kSlots) * ctx * h.kv_dim(), rng);  // [slots * ctx, kv_dim]
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
    // NO_ROPE reads q's factor of each position, [ctx], in place of the table: random in [0.5, 2).
    std::vector<float> q_scale(ctx);
    std::uniform_real_distribution<float> factor(0.5f, 2.0f);
    for (float& f : q_scale) f = factor(rng);
    gpu::Buffer inv_freq_buf = o.no_rope ? upload(q_scale, "q scale") : upload(table, "rope table");
    gpu::KernelDefines d = h.defines();
    d["ROPE_DIM"] = u32(rope_dim);
    d["CTX"] = u32(ctx);
    // One buffer of rows [q | k | v], as the runtime's projections write it.
    const uint32_t row_len = h.q_dim() + 2 * h.kv_dim();
    std::vector<float> qkv = random_vector(size_t(n) * row_len, rng);  // [tokens, q | k | v]
    gpu::Buffer qkv_buf = upload(qkv, "qkv");
    std::vector<gpu::BufferSlice> b = {
        {upload(tokens, "tokens")}, {inv_freq_buf}, {qkv_buf}, {k_cache_buf}, {v_cache_buf}};
    std::vector<float> bias;            // [q | k | v]
    std::vector<float> q_norm, k_norm;  // [head_dim] each, near 1
    std::vector<float> extra;           // the kernel's: bias, then q_norm | k_norm
    constexpr double kEps = 1e-6;
    if (o.bias) {
      bias = random_vector(row_len, rng, 0.5f);
      d["BIAS"] = "1";
      extra = bias;
    }
    if (o.qk_norm) {
      q_norm = plus(std::vector<float>(h.head_dim, 1.0f), random_vector(h.head_dim, rng, 0.3f));
      k_norm = plus(std::vector<float>(h.head_dim, 1.0f), random_vector(h.head_dim, rng, 0.3f));
      d["QK_NORM"] = "1";
      d["EPS"] = f32(kEps);
      extra.insert(extra.end(), q_norm.begin(), q_norm.end());
      extra.insert(extra.end(), k_norm.begin(), k_norm.end());
    }
    if (!extra.empty()) b.push_back({upload(extra, "extra")});
    if (o.neox) d["NEOX"] = "1";
    if (o.l2_norm) {
      d["L2_NORM"] = "1";
      d["EPS"] = f32(kEps);
    }
    if (o.no_rope) d["NO_ROPE"] = "1";
    d = variant(d);
    const uint32_t groups = kernels::set_rope_kv_layout(d, h.n_heads, h.n_kv, h.head_dim);
    dispatch("rope_kv", d, b, n, groups);
    std::vector<float> qkv_got = download<float>(qkv_buf, qkv.size());
    std::vector<float> k_got = download<float>(k_cache_buf, k_cache.size());
    std::vector<float> v_got = download<float>(v_cache_buf, v_cache.size());

    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t pos = positions[i];
      SCOPED_TRACE("token " + std::to_string(i) + ": slot " + std::to_string(tokens[i].slot) + " pos " +
                   std::to_string(pos));
      // The inputs as the kernel sees them: the projections' outputs plus the biases.
      const std::vector<float> row_in = plus(slice(qkv, size_t(i) * row_len, row_len), bias);
      const std::vector<float> q = slice(row_in, 0, h.q_dim());
      const std::vector<float> k = slice(row_in, h.q_dim(), h.kv_dim());
      const std::vector<float> v = slice(row_in, h.q_dim() + h.kv_dim(), h.kv_dim());
      const std::vector<float> q_got = slice(qkv_got, size_t(i) * row_len, h.q_dim());
      EXPECT_EQ(bits_of(slice(qkv_got, size_t(i) * row_len + h.q_dim(), 2 * h.kv_dim())),
                bits_of(slice(qkv, size_t(i) * row_len + h.q_dim(), 2 * h.kv_dim())))
          << "k and v inputs must stay as they were";

      // The table's cos/sin are the double values rounded to f32: the error no longer grows with pos.
      const double tolerance = 2e-6;
      const size_t row = (size_t(tokens[i].slot) * ctx + pos) * h.kv_dim();
      const std::vector<float> k_row = slice(k_got, row, h.kv_dim());
      auto q_want = head_norm(q, h.head_dim, q_norm, kEps), k_want = head_norm(k, h.head_dim, k_norm, kEps);
      if (o.no_rope) {
        for (double& e : q_want) e *= q_scale[pos];
      } else {
        q_want = rope_reference(q_want, h.head_dim, rope_dim, inv_freq, pos, o.neox);
        k_want = rope_reference(k_want, h.head_dim, rope_dim, inv_freq, pos, o.neox);
      }
      if (o.l2_norm) {
        weightless_norm(q_want, h.head_dim, kEps);
        weightless_norm(k_want, h.head_dim, kEps);
      }
      EXPECT_LT(test::relative_error(q_got, q_want), tolerance) << "q";
      EXPECT_LT(test::relative_error(k_row, k_want), tolerance) << "k";
      if (o.no_rope && !o.qk_norm && !o.l2_norm) {  // one f32 product per q element; k as it came
        std::vector<float> q_scaled = q;
        for (float& e : q_scaled) e *= q_scale[pos];
        EXPECT_EQ(bits_of(q_got), bits_of(q_scaled)) << "q times its factor";
        EXPECT_EQ(bits_of(k_row), bits_of(k)) << "k unrotated";
      }
      if (!o.qk_norm && !o.l2_norm && !o.no_rope) {  // nothing but the rotation changes a value
        if (pos == 0) {
          EXPECT_EQ(bits_of(q_got), bits_of(q)) << "angle 0 must leave q as it was";
          EXPECT_EQ(bits_of(k_row), bits_of(k)) << "angle 0 must store k as it was";
        }
        EXPECT_EQ(unrotated_bits(q_got, h.head_dim, rope_dim), unrotated_bits(q, h.head_dim, rope_dim));
        EXPECT_EQ(unrotated_bits(k_row, h.head_dim, rope_dim), unrotated_bits(k, h.head_dim, rope_dim));
      }
      EXPECT_EQ(bits_of(slice(v_got, row, h.kv_dim())), bits_of(v)) << "v row";
      std::copy(k_row.begin(), k_row.end(), k_cache.begin() + row);
      std::copy(v.begin(), v.end(), v_cache.begin() + row);
    }
    // Only the tokens' rows may change.
    EXPECT_EQ(bits_of(k_got), bits_of(k_cache)) << "k cache rows of no token written";
    EXPECT_EQ(bits_of(v_got), bits_of(v_cache)) << "v cache rows of no token written";
  }
};

TEST_P(RopeKv, FullRotation) {
  SCOPED_TRACE(test::seed_note());
  check({4, 4, 8}, 8, 10000.f, {0, 1, 7, 1000, 2});
}

TEST_P(RopeKv, PartialRotationWithGqa) {
  SCOPED_TRACE(test::seed_note());
  check({8, 2, 64}, 32, 10000.f, {0, 1, 300, 1000});
  check({6, 3, 80}, 80, 500000.f, {3, 1000, 4});
}

// Qwen2's q/k/v biases, added before the rotation (k, v into the cache with theirs); a head of 256 dims
// takes two rounds of the workgroup's 64 invocations.
// Qwen's pairing (j, j + rope_dim / 2), over whole heads and over the leading 32 of 64 dims.
TEST_P(RopeKv, NeoxPairs) {
  SCOPED_TRACE(test::seed_note());
  check({4, 2, 16}, 16, 1000000.f, {0, 1, 27, 500}, {.neox = true});
  check({8, 2, 64}, 32, 10000.f, {0, 1, 300, 1000}, {.neox = true});
  check({4, 2, 16}, 16, 1000000.f, {3, 40}, {.bias = true, .neox = true});
}

// Qwen3's per-head q/k RMSNorm before NEOX RoPE: heads of 24 (the fixture's), of 128 over 64 rotated
// dims, of 256 (four rounds of the workgroup per head), with and without biases.
TEST_P(RopeKv, QkNorm) {
  SCOPED_TRACE(test::seed_note());
  check({4, 2, 24}, 24, 1000000.f, {0, 1, 27, 500}, {.neox = true, .qk_norm = true});
  check({4, 1, 128}, 64, 10000.f, {0, 2, 700}, {.neox = true, .qk_norm = true});
  check({2, 2, 256}, 256, 10000.f, {1, 90}, {.bias = true, .neox = true, .qk_norm = true});
  check({4, 2, 16}, 16, 10000.f, {0, 33}, {.qk_norm = true});
}

// Llama 4's RoPE layers: the heads RMS-normalised without weights after the rotation (heads of 16, the
// fixture's, and of 128 over 64 rotated dims; 256: four rounds of the workgroup), also with biases, with
// NEOX pairs and after qwen3's weighted norm (two reductions in a row).
TEST_P(RopeKv, L2NormAfterRotation) {
  SCOPED_TRACE(test::seed_note());
  check({4, 2, 16}, 16, 500000.f, {0, 1, 9, 500}, {.l2_norm = true});
  check({4, 1, 128}, 64, 10000.f, {0, 2, 700}, {.l2_norm = true});
  check({2, 2, 256}, 256, 10000.f, {1, 90}, {.bias = true, .l2_norm = true});
  check({4, 2, 24}, 24, 1000000.f, {0, 27}, {.neox = true, .qk_norm = true, .l2_norm = true});
}

// Llama 4's NoPE layers: no rotation, q times its position's factor (bit for bit: one product), k into
// the cache as it came; with biases, and with weighted q/k norm.
TEST_P(RopeKv, NoRopeScalesQ) {
  SCOPED_TRACE(test::seed_note());
  check({4, 2, 16}, 16, 500000.f, {0, 1, 9, 39}, {.no_rope = true});
  check({2, 1, 256}, 256, 10000.f, {0, 5, 90}, {.no_rope = true});
  check({4, 2, 16}, 16, 500000.f, {3, 40}, {.bias = true, .no_rope = true});
  check({4, 2, 24}, 24, 500000.f, {3, 40}, {.qk_norm = true, .no_rope = true});
}

TEST_P(RopeKv, Biases) {
  SCOPED_TRACE(test::seed_note());
  check({4, 2, 16}, 16, 1000000.f, {0, 1, 27, 500}, {.bias = true});
  check({2, 1, 256}, 192, 10000.f, {0, 5, 900}, {.bias = true});
}

WGLLM_KERNEL_VARIANTS(RopeKv);

}  // namespace
}  // namespace wgllm::kernels_test
