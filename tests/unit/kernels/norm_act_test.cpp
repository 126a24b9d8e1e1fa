// rms_norm.wgsl and silu_mul.wgsl against float64 CPU references, on sizes that are not multiples of the
// workgroup size, with NaN sentinels after the N elements that must stay untouched.
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
  // x ~ N(0, scale), weight ~ N(1, 0.2); out has 2 sentinels after N.
  void check(uint32_t n, double eps, float scale, std::mt19937_64& rng) {
    SCOPED_TRACE("N " + std::to_string(n) + " EPS " + f32(eps) + " x scale " + f32(scale));
    std::normal_distribution<float> dist(0.f, 1.f);
    std::vector<float> x(n), weight(n);  // [N]
    for (float& v : x) v = dist(rng) * scale;
    for (float& v : weight) v = 1.f + 0.2f * dist(rng);
    const std::vector<float> sentinels(2, kNaN);
    std::vector<float> out_init(n, kNaN);
    out_init.insert(out_init.end(), sentinels.begin(), sentinels.end());
    gpu::Buffer out = upload(out_init, "out");
    dispatch("rms_norm", variant({{"N", u32(n)}, {"EPS", f32(eps)}}),
             {{upload(x, "x")}, {upload(weight, "weight")}, {out}}, 1);
    std::vector<float> got = download<float>(out, out_init.size());

    double sum_sq = 0;
    for (float v : x) sum_sq += double(v) * v;
    const double inv = 1.0 / std::sqrt(sum_sq / n + eps);
    std::vector<double> want(n);
    for (uint32_t i = 0; i < n; ++i) want[i] = x[i] * inv * weight[i];
    EXPECT_LT(test::relative_error(std::vector<float>(got.begin(), got.begin() + n), want), 1e-5);
    expect_tail_untouched(got, n, sentinels);
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

class SiluMul : public KernelVariantTest {};

TEST_P(SiluMul, MatchesDoubleReferenceInPlace) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(402);
  std::normal_distribution<float> dist(0.f, 4.f);
  for (uint32_t n : {1u, 7u, 257u, 1000u}) {
    SCOPED_TRACE("N " + std::to_string(n));
    std::vector<float> g(n), u(n);  // [N]
    for (float& v : g) v = dist(rng);
    for (float& v : u) v = dist(rng);
    // Saturated gates: exp(-g) overflows f32 for g = -100; silu must still tend to 0 and to g.
    const float extremes[] = {-100.f, 100.f, -30.f, 30.f};
    for (uint32_t i = 0; i < 4 && n >= 7; ++i) g[n - 1 - i] = extremes[i];
    // One buffer [gate (N) | up (N)], as the runtime's gate/up projection writes it.
    const std::vector<float> sentinels(3, kNaN);
    std::vector<float> init = g;
    init.insert(init.end(), u.begin(), u.end());
    init.insert(init.end(), sentinels.begin(), sentinels.end());
    gpu::Buffer gu = upload(init, "gate|up");
    dispatch("silu_mul", variant({{"N", u32(n)}}), {{gu}}, (n + 255) / 256);
    std::vector<float> got = download<float>(gu, init.size());

    std::vector<double> want(n);
    for (uint32_t i = 0; i < n; ++i) want[i] = g[i] / (1.0 + std::exp(-double(g[i]))) * u[i];
    EXPECT_LT(test::relative_error(std::vector<float>(got.begin(), got.begin() + n), want), 1e-6);
    EXPECT_EQ(bits_of(std::vector<float>(got.begin() + n, got.begin() + 2 * n)), bits_of(u)) << "up was written";
    expect_tail_untouched(got, 2 * n, sentinels);
  }
}

WGLLM_KERNEL_VARIANTS(RmsNorm);
WGLLM_KERNEL_VARIANTS(SiluMul);

}  // namespace
}  // namespace wgllm::kernels_test
