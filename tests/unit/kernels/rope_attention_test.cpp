// rope_kv.wgsl, attention.wgsl and attention_prefill.wgsl against float64 CPU references, over passes of
// several tokens of different slots and positions: RoPE of each token's q in place and of its k into the KV
// cache row of its (slot, position) (v copied), nothing else written; causal attention of each token over
// its slot's positions 0..pos with GQA, never reading rows after pos or of other slots, and independent of
// the other tokens of the pass (bit for bit).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "kernel_harness.hpp"
#include "kernels/attention.hpp"
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
    dispatch("rope_kv", d, b, n, h.n_heads + 2 * h.n_kv);
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

// Causal attention of one token's q [n_heads * head_dim] over the cache rows first_row + start..pos
// (caches [rows, n_kv * head_dim]), in float64: [n_heads * head_dim].
std::vector<double> attention_reference(const Heads& h, const std::vector<float>& q,
                                        const std::vector<float>& k_cache, const std::vector<float>& v_cache,
                                        size_t first_row, uint32_t start, uint32_t pos) {
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
uint32_t first_key(uint32_t pos, uint32_t window, uint32_t chunk) {
  return chunk ? pos - pos % chunk : window && pos >= window ? pos - window + 1 : 0;
}

class Attention : public KernelVariantTest {
 protected:
  // One pass over tokens at `positions`, token i in slot i % kSlots; then each token alone, and the pass with
  // one query head per workgroup, which must give the same bits. span > 0: split-sequence attention over
  // spans of `span` keys, then the merge. window > 0: a token at pos attends to positions
  // max(0, pos - window + 1)..pos only (WINDOW). chunk > 0: to positions pos - pos % chunk..pos only (CHUNK).
  void check(const Heads& h, uint32_t ctx, const std::vector<uint32_t>& positions, uint32_t span = 0,
             uint32_t window = 0, uint32_t chunk = 0) {
    SCOPED_TRACE(h.name() + " ctx " + std::to_string(ctx) + " span " + std::to_string(span) + " window " +
                 std::to_string(window) + " chunk " + std::to_string(chunk));
    constexpr uint32_t kSlots = 2;
    auto rng = test::rng(600 + h.n_heads * 100 + h.n_kv * 10 + h.head_dim);
    const uint32_t kv_dim = h.kv_dim();
    const uint32_t row_len = h.q_dim() + 2 * kv_dim;
    gpu::KernelDefines d = h.defines();
    d["CTX"] = u32(ctx);
    d["SCALE"] = f32(1.0 / std::sqrt(double(h.head_dim)));
    const uint32_t heads = kernels::attention_heads_per_workgroup(h.n_heads, h.n_kv, h.head_dim);
    d["HEADS"] = u32(heads);
    if (window) d["WINDOW"] = u32(window);
    if (chunk) d["CHUNK"] = u32(chunk);
    d = variant(d);
    const auto n = static_cast<uint32_t>(positions.size());
    std::vector<runtime::GpuToken> tokens(n);
    for (uint32_t i = 0; i < n; ++i) tokens[i] = {i % kSlots, positions[i], 0, 0};
    // Each slot's rows 0..(its largest position) hold data; later rows are NaN, so that reading one would
    // poison the output.
    std::vector<float> k_cache(size_t(kSlots) * ctx * kv_dim, kNaN),
        v_cache(size_t(kSlots) * ctx * kv_dim, kNaN);  // [slots * ctx, kv_dim]
    for (uint32_t slot = 0; slot < kSlots; ++slot) {
      uint32_t filled = 0;
      for (const auto& t : tokens)
        if (t.slot == slot) filled = std::max(filled, t.pos + 1);
      const size_t first = size_t(slot) * ctx * kv_dim;
      std::vector<float> k = random_vector(size_t(filled) * kv_dim, rng, 1.5f),
                         v = random_vector(size_t(filled) * kv_dim, rng);
      std::copy(k.begin(), k.end(), k_cache.begin() + first);
      std::copy(v.begin(), v.end(), v_cache.begin() + first);
    }
    std::vector<float> qkv = random_vector(size_t(n) * row_len, rng, 1.5f);  // [tokens, q | k | v]
    gpu::Buffer k_buf = upload(k_cache, "k cache"), v_buf = upload(v_cache, "v cache");
    gpu::Buffer qkv_buf = upload(qkv, "qkv");
    // `per_group` query heads per workgroup (HEADS).
    auto run = [&](const std::vector<runtime::GpuToken>& pass, gpu::Buffer q, uint32_t per_group) {
      std::vector<float> out_init(pass.size() * h.q_dim() + 2, kNaN);  // [tokens, q_dim] + 2 sentinels
      gpu::Buffer out = upload(out_init, "out");
      const auto m = static_cast<uint32_t>(pass.size());
      gpu::Buffer pass_buf = upload(pass, "tokens");
      gpu::KernelDefines dh = d;
      dh["HEADS"] = u32(per_group);
      if (span == 0) {
        dispatch("attention", dh, {{pass_buf}, {q}, {k_buf}, {v_buf}, {out}}, m, h.n_heads / per_group);
      } else {
        // Partials start NaN: a merge reading a span that was not written poisons the output.
        const uint32_t spans = (ctx + span - 1) / span;
        gpu::Buffer part =
            upload(std::vector<float>(size_t(m) * h.n_heads * spans * (h.head_dim + 2), kNaN), "partials");
        gpu::KernelDefines split = dh;
        split["SPANS"] = u32(spans);
        split["SPAN"] = u32(span);
        dispatch("attention", split, {{pass_buf}, {q}, {k_buf}, {v_buf}, {out}, {part}}, m,
                 h.n_heads / per_group * spans);
        split["MERGE"] = "1";
        dispatch("attention", split, {{pass_buf}, {part}, {out}}, m, h.n_heads);
      }
      std::vector<float> got = download<float>(out, out_init.size());
      EXPECT_EQ(bits_of(slice(got, pass.size() * h.q_dim(), 2)),
                bits_of(slice(out_init, pass.size() * h.q_dim(), 2)))
          << "written past the tokens' rows";
      return got;
    };
    const std::vector<float> got = run(tokens, qkv_buf, heads);
    // One query head per workgroup (the runtime's choice while a decode pass has few spans): the same bits.
    if (heads > 1) {
      EXPECT_EQ(bits_of(run(tokens, qkv_buf, 1)), bits_of(got)) << "HEADS 1 against " << heads;
    }

    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t pos = positions[i];
      SCOPED_TRACE("token " + std::to_string(i) + ": slot " + std::to_string(tokens[i].slot) + " pos " +
                   std::to_string(pos));
      const size_t first_row = size_t(tokens[i].slot) * ctx;
      const uint32_t start = first_key(pos, window, chunk);
      const std::vector<double> want = attention_reference(h, slice(qkv, size_t(i) * row_len, h.q_dim()),
                                                           k_cache, v_cache, first_row, start, pos);
      const std::vector<float> row = slice(got, size_t(i) * h.q_dim(), h.q_dim());
      EXPECT_LT(test::relative_error(row, want), 1e-5);
      // Alone in a pass, the token's output has the same bits.
      const std::vector<float> alone =
          run({tokens[i]}, upload(slice(qkv, size_t(i) * row_len, row_len), "qkv"), heads);
      EXPECT_EQ(bits_of(slice(alone, 0, h.q_dim())), bits_of(row))
          << "depends on the other tokens of the pass";
    }
  }
};

TEST_P(Attention, OneKvHeadPerQueryHead) {
  SCOPED_TRACE(test::seed_note());
  check({4, 4, 8}, 320, {0, 1, 300, 5});
}

TEST_P(Attention, GqaGroupsOfTwoAndFour) {
  SCOPED_TRACE(test::seed_note());
  check({4, 2, 64}, 600, {0, 1, 300, 256, 520});
  check({8, 2, 80}, 320, {0, 1, 300});
}

// A workgroup serves the query heads of one kv head (up to 4 of them, 2 of 256 elements:
// kernels/attention.hpp): groups of 3 (Llama 3.2 3B's 24 / 8), 8 (two workgroups per kv head) and 12
// (three), unsplit and split.
TEST_P(Attention, GqaGroupsSharedByWorkgroups) {
  SCOPED_TRACE(test::seed_note());
  EXPECT_EQ(kernels::attention_heads_per_workgroup(24, 8, 128), 3u);
  EXPECT_EQ(kernels::attention_heads_per_workgroup(16, 2, 64), 4u);
  EXPECT_EQ(kernels::attention_heads_per_workgroup(12, 1, 16), 4u);
  EXPECT_EQ(kernels::attention_heads_per_workgroup(10, 2, 64), 1u);   // a group of 5
  EXPECT_EQ(kernels::attention_heads_per_workgroup(16, 2, 256), 2u);  // wide heads: 2 fit 16 KiB
  EXPECT_EQ(kernels::attention_heads_per_workgroup(12, 4, 256), 1u);
  const std::vector<uint32_t> positions = {0, 1, 130, 255, 256, 300, 520};
  for (const Heads& h : {Heads{6, 2, 32}, Heads{16, 2, 16}, Heads{12, 1, 16}, Heads{10, 2, 8}}) {
    check(h, 600, positions);
    check(h, 600, positions, 128);
  }
  // Heads of 256 elements: workgroups of 256, two heads each.
  check({8, 2, 256}, 600, positions);
  check({8, 2, 256}, 600, positions, 256);
}

// Software renderers run a workgroup as SIMD groups of 8 or 16 invocations, one group after another between
// barriers: from position 8 on, keys land in later groups, which see a reduction's result only if the shader
// compiler keeps its reads on the right side of the barriers (Mesa 22.3's GLSL compiler, under the OpenGL ES
// backend, did not).
TEST_P(Attention, EveryPositionFrom8To40) {
  SCOPED_TRACE(test::seed_note());
  std::vector<uint32_t> positions(33);
  std::iota(positions.begin(), positions.end(), 8u);
  check({4, 2, 64}, 48, positions);
  check({4, 4, 8}, 48, positions);
}

// Split-sequence attention: positions on both sides of the span boundaries, spans of one tile and of two.
TEST_P(Attention, SplitOverSpans) {
  SCOPED_TRACE(test::seed_note());
  const std::vector<uint32_t> positions = {0, 1, 255, 256, 257, 300, 511, 512, 600, 1000};
  check({4, 2, 64}, 1024, positions, 256);
  check({4, 4, 8}, 1024, positions, 256);
  check({8, 2, 80}, 1030, positions, 512);
}

// Positions 8..40 of the split kernel (one span) and 248..280 (two): the reductions of EveryPositionFrom8To40
// and the merge under the software renderers' SIMD groups.
TEST_P(Attention, SplitEveryPositionAroundTheFirstBoundary) {
  SCOPED_TRACE(test::seed_note());
  std::vector<uint32_t> positions(33);
  std::iota(positions.begin(), positions.end(), 8u);
  check({4, 2, 64}, 300, positions, 256);
  std::iota(positions.begin(), positions.end(), 248u);
  check({4, 2, 64}, 300, positions, 256);
}

// Sliding windows (WINDOW): every position 0..40 with windows of 6 and 1 (only itself), unsplit; split over
// spans of 256 with windows whose start lies in the span before the token's (two spans merged), in its own
// span (one span, not the first) and of exactly one span; positions past the window at each boundary.
TEST_P(Attention, SlidingWindow) {
  SCOPED_TRACE(test::seed_note());
  std::vector<uint32_t> positions(41);
  std::iota(positions.begin(), positions.end(), 0u);
  check({4, 2, 64}, 48, positions, 0, 6);
  check({4, 4, 8}, 48, {0, 1, 2, 17, 40}, 0, 1);
  const std::vector<uint32_t> split = {0, 5, 99, 100, 101, 255, 256, 300, 355, 356, 400, 511, 512, 767, 900};
  check({4, 2, 64}, 1024, split, 256, 100);
  check({4, 2, 64}, 1024, split, 256, 256);
  check({8, 2, 80}, 1030, split, 512, 300);
  check({4, 2, 64}, 1024, split, 0, 100);
}

// Llama 4's chunked attention (CHUNK): every position 0..40 in chunks of 8 (the fixture's) and of 1,
// unsplit; split over spans of 256 with chunks of 100 (a chunk's start in the span before the token's:
// two spans merged; or in its own span, not the first), of 256 (each chunk one whole span) and of 300,
// at positions on both sides of the chunk and span boundaries.
TEST_P(Attention, Chunked) {
  SCOPED_TRACE(test::seed_note());
  std::vector<uint32_t> positions(41);
  std::iota(positions.begin(), positions.end(), 0u);
  check({4, 2, 64}, 48, positions, 0, 0, 8);
  check({4, 4, 8}, 48, {0, 1, 2, 17, 40}, 0, 0, 1);
  const std::vector<uint32_t> split = {0,   5,   99,  100, 101, 199, 200, 255,
                                       256, 257, 300, 301, 511, 512, 600, 900};
  check({4, 2, 64}, 1024, split, 256, 0, 100);
  check({4, 2, 64}, 1024, split, 256, 0, 256);
  check({8, 2, 80}, 1030, split, 512, 0, 300);
  check({4, 2, 64}, 1024, split, 0, 0, 100);
}

// attention_prefill.wgsl over passes of one slot's tokens (a prompt's chunks) at `positions`: every token
// against the float64 reference; the same bits with every block size the adapter fits (unless
// !every_block: each size is another pipeline, ~10 s of lavapipe's compiler), with the pass cut in
// two at each of `cuts` (other blocks, other neighbours in them) and with each token alone. Three slots
// hold data; cache rows past each slot's last written position are NaN, so that reading one poisons the
// output.
void check_prefill(const Heads& h, uint32_t ctx, const std::vector<uint32_t>& positions,
                   const std::vector<uint32_t>& cuts, uint32_t window = 0, uint32_t chunk = 0,
                   bool every_block = true) {
  SCOPED_TRACE(h.name() + " ctx " + std::to_string(ctx) + " window " + std::to_string(window) + " chunk " +
               std::to_string(chunk));
  const uint32_t limit = device().limits().max_compute_workgroup_storage_size;
  const uint32_t rows = kernels::attention_prefill_rows(h.head_dim, limit);
  ASSERT_NE(rows, 0u) << "the kernel does not fit " << limit << " bytes of workgroup memory";
  constexpr uint32_t kSlots = 3, kSlot = 1;
  auto rng = test::rng(700 + h.n_heads * 100 + h.n_kv * 10 + h.head_dim);
  const uint32_t kv_dim = h.kv_dim(), row_len = h.q_dim() + 2 * kv_dim, group = h.n_heads / h.n_kv;
  gpu::KernelDefines d = h.defines();
  d["CTX"] = u32(ctx);
  d["SCALE"] = f32(1.0 / std::sqrt(double(h.head_dim)));
  d["HALVES"] = u32(kernels::attention_prefill_halves(h.head_dim));
  if (window) d["WINDOW"] = u32(window);
  if (chunk) d["CHUNK"] = u32(chunk);
  const uint32_t filled = *std::max_element(positions.begin(), positions.end()) + 1;
  std::vector<float> k_cache(size_t(kSlots) * ctx * kv_dim, kNaN),
      v_cache = k_cache;  // [slots * ctx, kv_dim]
  for (uint32_t slot = 0; slot < kSlots; ++slot) {
    const size_t first = size_t(slot) * ctx * kv_dim;
    const std::vector<float> k = random_vector(size_t(filled) * kv_dim, rng, 1.5f),
                             v = random_vector(size_t(filled) * kv_dim, rng);
    std::copy(k.begin(), k.end(), k_cache.begin() + first);
    std::copy(v.begin(), v.end(), v_cache.begin() + first);
  }
  const auto n = static_cast<uint32_t>(positions.size());
  const std::vector<float> qkv = random_vector(size_t(n) * row_len, rng, 1.5f);  // [tokens, q | k | v]
  gpu::Buffer k_buf = upload(k_cache, "k cache"), v_buf = upload(v_cache, "v cache");
  // Tokens first..first + count - 1 of the pass, as a pass of their own, in blocks of `block` rows.
  auto run = [&](uint32_t first, uint32_t count, uint32_t block) {
    gpu::KernelDefines db = d;
    db["ROWS"] = u32(block);
    std::vector<runtime::GpuToken> pass;
    for (uint32_t i = first; i < first + count; ++i) pass.push_back({kSlot, positions[i], 0, 0});
    std::vector<float> out_init(size_t(count) * h.q_dim() + 2, kNaN);  // [tokens, q_dim] + 2 sentinels
    gpu::Buffer out = upload(out_init, "out");
    dispatch("attention_prefill", db,
             {{upload(pass, "tokens")},
              {upload_batch(count)},
              {upload(slice(qkv, size_t(first) * row_len, size_t(count) * row_len), "qkv")},
              {k_buf},
              {v_buf},
              {out}},
             (count * group + block - 1) / block, h.n_kv);
    std::vector<float> got = download<float>(out, out_init.size());
    EXPECT_EQ(bits_of(slice(got, size_t(count) * h.q_dim(), 2)),
              bits_of(slice(out_init, size_t(count) * h.q_dim(), 2)))
        << "written past the tokens' rows";
    got.resize(size_t(count) * h.q_dim());
    return got;
  };
  const std::vector<float> got = run(0, n, rows);
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t pos = positions[i];
    SCOPED_TRACE("token " + std::to_string(i) + " at " + std::to_string(pos));
    const std::vector<double> want =
        attention_reference(h, slice(qkv, size_t(i) * row_len, h.q_dim()), k_cache, v_cache,
                            size_t(kSlot) * ctx, first_key(pos, window, chunk), pos);
    EXPECT_LT(test::relative_error(slice(got, size_t(i) * h.q_dim(), h.q_dim()), want), 1e-5);
  }
  for (uint32_t block : {16u, 32u, 64u}) {
    if (every_block && block != rows && kernels::attention_prefill_bytes(h.head_dim, block) <= limit) {
      EXPECT_EQ(bits_of(run(0, n, block)), bits_of(got)) << "blocks of " << block << " rows against " << rows;
    }
  }
  for (uint32_t cut : cuts) {
    SCOPED_TRACE("the pass cut before token " + std::to_string(cut));
    std::vector<float> halves = run(0, cut, rows);
    const std::vector<float> rest = run(cut, n - cut, rows);
    halves.insert(halves.end(), rest.begin(), rest.end());
    EXPECT_EQ(bits_of(halves), bits_of(got)) << "depends on the other tokens of the pass";
  }
  for (uint32_t i : {0u, n / 2, n - 1}) {
    EXPECT_EQ(bits_of(run(i, 1, rows)), bits_of(slice(got, size_t(i) * h.q_dim(), h.q_dim())))
        << "token " << i << " alone";
  }
}

std::vector<uint32_t> positions_from(uint32_t first, uint32_t count) {
  std::vector<uint32_t> p(count);
  std::iota(p.begin(), p.end(), first);
  return p;
}

// A prompt of 100 tokens in one pass (GQA groups of 4: blocks of 16 tokens, the last one partial; tiles of
// 32 keys) and its continuation at positions 100..170 after it (the keys before the pass are the cache's).
TEST(PrefillAttention, PromptChunks) {
  SCOPED_TRACE(test::seed_note());
  check_prefill({8, 2, 64}, 256, positions_from(0, 100), {1, 37, 64});
  check_prefill({8, 2, 64}, 256, positions_from(100, 71), {16, 50});
}

// Groups that do not divide a block's 64 rows (3: a token's heads in two blocks), one kv head per query
// head (64 tokens per block), heads of 32, 96 (three chunks) and 128 elements; a context that is not a
// multiple of the tile.
TEST(PrefillAttention, GroupsAndHeadSizes) {
  SCOPED_TRACE(test::seed_note());
  check_prefill({6, 2, 32}, 200, positions_from(30, 90), {21, 22, 43});
  check_prefill({4, 4, 128}, 150, positions_from(0, 140), {64, 65});
  check_prefill({4, 1, 96}, 100, positions_from(2, 97), {33});
}

// Positions out of order and with gaps (a pass need not be a contiguous chunk): the block's keys span
// from its smallest position to its largest.
TEST(PrefillAttention, PositionsInAnyOrder) {
  SCOPED_TRACE(test::seed_note());
  check_prefill({8, 2, 64}, 320, {3, 250, 64, 65, 0, 128, 31, 32, 33, 300, 7, 8, 9, 10, 11, 12, 13, 14},
                {5, 16});
}

// Sliding windows and Llama 4's chunks: rows whose keys start inside the block's first tile, tiles that
// hold none of a row's keys (before its window), windows of one key.
TEST(PrefillAttention, SlidingWindowsAndChunks) {
  SCOPED_TRACE(test::seed_note());
  check_prefill({8, 2, 64}, 256, positions_from(0, 120), {40}, 6, 0, false);
  check_prefill({8, 2, 64}, 256, positions_from(50, 100), {17}, 40, 0, false);
  check_prefill({4, 4, 32}, 128, positions_from(0, 70), {}, 1, 0, false);
  check_prefill({8, 2, 64}, 256, positions_from(0, 120), {40}, 0, 8, false);
  check_prefill({8, 2, 64}, 256, positions_from(20, 100), {17}, 0, 33, false);
}

// The largest block that fits the adapter's workgroup memory (the H100's 49152 bytes, lavapipe's 32768),
// none within WebGPU's guaranteed 16384 for heads of 128 elements, and none for heads the kernel does not
// take (attention.wgsl runs those passes).
TEST(PrefillAttention, BlockSizeFollowsTheWorkgroupMemory) {
  for (uint32_t limit : {16384u, 32768u, 49152u}) {
    for (uint32_t head_dim : {32u, 64u, 96u, 128u}) {
      SCOPED_TRACE("head_dim " + std::to_string(head_dim) + ", " + std::to_string(limit) + " bytes");
      const uint32_t rows = kernels::attention_prefill_rows(head_dim, limit);
      if (rows) {
        EXPECT_LE(kernels::attention_prefill_bytes(head_dim, rows), limit);
      }
      if (rows < 64) {
        EXPECT_GT(kernels::attention_prefill_bytes(head_dim, rows ? 2 * rows : 16), limit);
      }
    }
  }
  EXPECT_EQ(kernels::attention_prefill_rows(64, 49152), 64u);
  EXPECT_EQ(kernels::attention_prefill_rows(128, 49152), 32u);
  EXPECT_EQ(kernels::attention_prefill_rows(128, 16384), 0u);
  EXPECT_EQ(kernels::attention_prefill_rows(80, 49152), 0u);   // not a multiple of 32
  EXPECT_EQ(kernels::attention_prefill_rows(256, 49152), 0u);  // outputs past the register budget
}

WGLLM_KERNEL_VARIANTS(RopeKv);
WGLLM_KERNEL_VARIANTS(Attention);

}  // namespace
}  // namespace wgllm::kernels_test
