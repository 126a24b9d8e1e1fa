// rms_norm.wgsl and silu_mul.wgsl against float64 CPU references, over several rows (tokens) per dispatch,
// on sizes that are not multiples of the workgroup size, with NaN sentinels after the rows that must stay
// untouched; rms_norm also gathering the rows named by a pass's logits rows.
#include <cmath>
#include <limits>

#include "kernel_harness.hpp"

namespace wgllm::kernels_test {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The first n values of `v` and the bit patterns of the rest, which must equal `sentinels`.
void expect_tail_untouched(const std::vector<float>& v, size_t n, const std::vector<float>& sentinels) {
  std::vector<uint32_t> got = bits_of(std::vector<float>(v.begin() + n, v.end()));
  EXPECT_EQ(got, bits_of(sentinels)) << "written past N";
}

class RmsNorm : public KernelVariantTest {
 protected:
  // Three rows of x ~ N(0, scale), weight ~ N(1, 0.2); out has 2 sentinels after the rows. With `gather`,
  // out row r is the norm of x row gather[r].
  void check(uint32_t n, double eps, float scale, std::mt19937_64& rng, std::vector<uint32_t> gather = {}) {
    SCOPED_TRACE("N " + std::to_string(n) + " EPS " + f32(eps) + " x scale " + f32(scale));
    constexpr uint32_t kRows = 3;
    std::normal_distribution<float> dist(0.f, 1.f);
    std::vector<float> x(size_t(kRows) * n), weight(n);  // [rows, N], [N]
    for (float& v : x) v = dist(rng) * scale;
    for (float& v : weight) v = 1.f + 0.2f * dist(rng);
    const auto out_rows = static_cast<uint32_t>(gather.empty() ? kRows : gather.size());
    const std::vector<float> sentinels(2, kNaN);
    std::vector<float> out_init(size_t(out_rows) * n, kNaN);
    out_init.insert(out_init.end(), sentinels.begin(), sentinels.end());
    gpu::Buffer out = upload(out_init, "out");
    gpu::KernelDefines d = {{"N", u32(n)}, {"EPS", f32(eps)}};
    std::vector<gpu::BufferSlice> slices = {{upload(x, "x")}, {upload(weight, "weight")}, {out}};
    if (!gather.empty()) {
      d["GATHER"] = "1";
      std::vector<runtime::GpuRow> rows(gather.size());
      for (size_t r = 0; r < gather.size(); ++r) rows[r].token = gather[r];
      slices.push_back({upload(rows, "rows")});
    }
    dispatch("rms_norm", variant(d), slices, out_rows);
    std::vector<float> got = download<float>(out, out_init.size());

    for (uint32_t r = 0; r < out_rows; ++r) {
      const uint32_t src = gather.empty() ? r : gather[r];
      SCOPED_TRACE("row " + std::to_string(r) + " of x row " + std::to_string(src));
      double sum_sq = 0;
      for (uint32_t i = 0; i < n; ++i) sum_sq += double(x[size_t(src) * n + i]) * x[size_t(src) * n + i];
      const double inv = 1.0 / std::sqrt(sum_sq / n + eps);
      std::vector<double> want(n);
      for (uint32_t i = 0; i < n; ++i) want[i] = x[size_t(src) * n + i] * inv * weight[i];
      EXPECT_LT(test::relative_error(
                    std::vector<float>(got.begin() + size_t(r) * n, got.begin() + size_t(r + 1) * n), want),
                1e-5);
    }
    expect_tail_untouched(got, size_t(out_rows) * n, sentinels);
  }
};

TEST_P(RmsNorm, MatchesDoubleReference) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(400);
  for (uint32_t n : {1u, 7u, 173u, 4099u}) check(n, 1e-5, 3.f, rng);
}

// With mean(x^2) ~ 1e-6 the epsilon is most of the denominator: it must be added inside the square root.
TEST_P(RmsNorm, EpsilonMattersForSmallInputs) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(401);
  check(7, 1e-5, 1e-3f, rng);
  check(173, 1e-5, 1e-3f, rng);
  check(173, 1e-6, 1e-3f, rng);
}

// The logits rows' tokens, in any order and repeated.
TEST_P(RmsNorm, GathersTheLogitsRowsTokens) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(403);
  check(173, 1e-5, 3.f, rng, {2, 0});
  check(256, 1e-5, 3.f, rng, {1, 1, 2, 0});
}

// row_sum.wgsl's subgroup form (SUM_LANES: registers, then butterflies) adds the invocations' sums of
// squares in the tree's order, so rms_norm gives the same bits with and without subgroups (and so do the
// GEMVs' fused norm and quantize_act, which share it). The rows mix magnitudes over a few decades, which
// makes the sum's last bits depend on its order.
TEST(RowSum, SubgroupFormAddsInTheTreesOrder) {
  gpu::KernelDefines sub;
  kernels::add_subgroup_defines(sub, device().info().subgroup_min_size);
  if (!device().features().subgroups || !sub.contains("SUM_LANES"))
    GTEST_SKIP() << "adapter has no subgroups of 8 or more lanes";
  SCOPED_TRACE(test::seed_note() + ", SUM_LANES " + sub["SUM_LANES"]);
  auto rng = test::rng(404);
  std::normal_distribution<float> dist(0.f, 1.f);
  constexpr uint32_t kRows = 16;
  for (uint32_t n : {7u, 1024u, 4100u}) {
    SCOPED_TRACE("N " + std::to_string(n));
    std::vector<float> x(size_t(kRows) * n), weight(n);  // [rows, N], [N]
    for (float& v : x) v = dist(rng) * std::pow(10.f, std::abs(dist(rng)));
    for (float& v : weight) v = 1.f + 0.2f * dist(rng);
    gpu::Buffer x_buf = upload(x, "x"), w_buf = upload(weight, "weight");
    std::vector<std::vector<uint32_t>> bits;
    for (bool subgroups : {false, true}) {
      gpu::KernelDefines d = {{"N", u32(n)}, {"EPS", f32(1e-5)}};
      if (subgroups) d.insert(sub.begin(), sub.end());
      gpu::Buffer out = device().buffer(x.size() * 4, gpu::kStorage, "out");
      dispatch("rms_norm", d, {{x_buf}, {w_buf}, {out}}, kRows);
      bits.push_back(bits_of(download<float>(out, x.size())));
    }
    EXPECT_EQ(bits[0], bits[1]);
  }
}

class SiluMul : public KernelVariantTest {};

TEST_P(SiluMul, MatchesDoubleReferenceInPlace) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(402);
  std::normal_distribution<float> dist(0.f, 4.f);
  constexpr uint32_t kRows = 3;
  for (uint32_t n : {1u, 7u, 257u, 1000u}) {
    SCOPED_TRACE("N " + std::to_string(n));
    // Rows [gate (N) | up (N)], as the runtime's gate/up projection writes them, then 3 sentinels.
    std::vector<float> init;
    std::vector<std::vector<float>> gates, ups;
    for (uint32_t r = 0; r < kRows; ++r) {
      std::vector<float> g(n), u(n);  // [N]
      for (float& v : g) v = dist(rng);
      for (float& v : u) v = dist(rng);
      // Saturated gates: exp(-g) overflows f32 for g = -100; silu must still tend to 0 and to g.
      const float extremes[] = {-100.f, 100.f, -30.f, 30.f};
      for (uint32_t i = 0; i < 4 && n >= 7; ++i) g[n - 1 - i] = extremes[i];
      init.insert(init.end(), g.begin(), g.end());
      init.insert(init.end(), u.begin(), u.end());
      gates.push_back(g);
      ups.push_back(u);
    }
    const std::vector<float> sentinels(3, kNaN);
    init.insert(init.end(), sentinels.begin(), sentinels.end());
    gpu::Buffer gu = upload(init, "gate|up");
    dispatch("silu_mul", variant({{"N", u32(n)}}), {{gu}}, kRows, (n + 255) / 256);
    std::vector<float> got = download<float>(gu, init.size());

    for (uint32_t r = 0; r < kRows; ++r) {
      SCOPED_TRACE("row " + std::to_string(r));
      const size_t row = size_t(r) * 2 * n;
      std::vector<double> want(n);
      for (uint32_t i = 0; i < n; ++i)
        want[i] = gates[r][i] / (1.0 + std::exp(-double(gates[r][i]))) * ups[r][i];
      EXPECT_LT(test::relative_error(std::vector<float>(got.begin() + row, got.begin() + row + n), want),
                1e-6);
      EXPECT_EQ(bits_of(std::vector<float>(got.begin() + row + n, got.begin() + row + 2 * n)),
                bits_of(ups[r]))
          << "up was written";
    }
    expect_tail_untouched(got, size_t(kRows) * 2 * n, sentinels);
  }
}

WGLLM_KERNEL_VARIANTS(RmsNorm);
// QUANT_OUT: silu(gate) * up quantized per 32 elements (quantize_act's layout, [rows, N / 32] chunks)
// instead of written back. Against float64: each chunk's scale d is max|h| / 127 (relative 1e-6), each
// code dequantizes to within d / 2 of h (plus f32 rounding of h), and the chunk's sums are those of its
// codes; gate|up is left as it was.
TEST_P(SiluMul, QuantOutIsTheInt8CodesOfTheProducts) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(403);
  std::normal_distribution<float> dist(0.f, 4.f);
  constexpr uint32_t kRows = 3;
  for (uint32_t n : {32u, 96u, 32u * 300}) {  // one chunk; three; ten workgroups of 32, the last of 12
    SCOPED_TRACE("N " + std::to_string(n));
    std::vector<float> gu(size_t(kRows) * 2 * n);  // [rows, gate (N) | up (N)]
    for (float& v : gu) v = dist(rng);
    gu[5] = -100.f;  // exp(-g) overflows: silu -> 0
    gu[6] = 100.f;
    gpu::Buffer gu_buf = upload(gu, "gate|up");
    const uint32_t chunks = n / 32;
    gpu::Buffer xq = upload(std::vector<uint32_t>(size_t(kRows) * chunks * 8 + 1, 0xDEADBEEFu), "xq");
    gpu::Buffer xs = upload(std::vector<float>(size_t(kRows) * chunks * 4 + 1, kNaN), "xs");
    dispatch("silu_mul", variant({{"N", u32(n)}, {"QUANT_OUT", "1"}}), {{gu_buf}, {xq}, {xs}}, kRows,
             (chunks + 31) / 32);
    const std::vector<uint32_t> q = download<uint32_t>(xq, size_t(kRows) * chunks * 8 + 1);
    const std::vector<float> d = download<float>(xs, size_t(kRows) * chunks * 4 + 1);
    EXPECT_EQ(bits_of(download<float>(gu_buf, gu.size())), bits_of(gu)) << "gate|up was written";
    EXPECT_EQ(q.back(), 0xDEADBEEFu) << "written past the codes";
    EXPECT_TRUE(std::isnan(d.back())) << "written past the scales";
    for (uint32_t r = 0; r < kRows; ++r)
      for (uint32_t c = 0; c < chunks; ++c) {
        SCOPED_TRACE("row " + std::to_string(r) + " chunk " + std::to_string(c));
        double h[32], amax = 0;
        for (uint32_t e = 0; e < 32; ++e) {
          const double g = gu[size_t(r) * 2 * n + 32 * c + e], u = gu[size_t(r) * 2 * n + n + 32 * c + e];
          h[e] = g / (1.0 + std::exp(-g)) * u;
          amax = std::max(amax, std::abs(h[e]));
        }
        const size_t o = size_t(r) * chunks + c;
        const double scale = d[4 * o];
        EXPECT_NEAR(scale, amax / 127, 1e-6 * amax / 127);
        int64_t sums[2] = {0, 0};
        for (uint32_t e = 0; e < 32; ++e) {
          const int code = static_cast<int8_t>(q[8 * o + e / 4] >> (8 * (e % 4)));
          EXPECT_LE(std::abs(code), 127);
          EXPECT_LE(std::abs(scale * code - h[e]), scale / 2 + 1e-5 * amax) << "element " << e;
          sums[e / 16] += code;
        }
        EXPECT_FLOAT_EQ(d[4 * o + 1], float(scale * sums[0]));
        EXPECT_FLOAT_EQ(d[4 * o + 2], float(scale * sums[1]));
        EXPECT_FLOAT_EQ(d[4 * o + 3], float(scale * (sums[0] + sums[1])));
      }
  }
}

WGLLM_KERNEL_VARIANTS(SiluMul);

}  // namespace
}  // namespace wgllm::kernels_test
