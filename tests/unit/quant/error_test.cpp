// Quantization error against bounds derived from the formats (docs/quantization.md explains each):
// - formats whose scale comes straight from the block's range (Q8_0, Q4_0, Q5_0, Q4_1, Q5_1, Q8_K): every
//   element within half a step of the input, the step computed from the input block itself, widened by the
//   f16 rounding of the stored scale and min; elements the asymmetric Q4_0/Q5_0 grids cannot reach clamp to
//   within one step;
// - K-quants, whose scale searches may clip outliers on purpose: every element decodes to the grid value of
//   its sub-block nearest to the input (within half a step inside the grid's range, the nearer end outside),
//   the grid read from the encoded block by spec::grid.
// RmseTable prints the table of docs/quantization.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "quant/codec.hpp"
#include "support/test_support.hpp"
#include "unit/quant/format_spec.hpp"

namespace wgllm::quant {
namespace {

using gguf::TensorType;

constexpr int kRow = 256;

std::vector<float> gaussian(size_t n, uint64_t salt, float stddev = 1.0f) {
  auto gen = test::rng(salt);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// Student's t with 3 degrees of freedom (finite variance 3, heavy tails like the outliers of real weight
// matrices), scaled to unit standard deviation.
std::vector<float> student_t3(size_t n, uint64_t salt) {
  auto gen = test::rng(salt);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) {
    float chi2 = 0;
    for (int k = 0; k < 3; ++k) {
      const float z = normal(gen);
      chi2 += z * z;
    }
    x = normal(gen) / std::sqrt(chi2 / 3) / std::sqrt(3.0f);
  }
  return v;
}

// Rows that stress the scale searches: zeros, constants, a lone spike, one-signed data, tiny and huge
// magnitudes, sub-blocks of very different scales.
std::vector<float> edge_rows(uint64_t salt) {
  auto gen = test::rng(salt);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x;
  auto row = [&](auto f) {
    for (int i = 0; i < kRow; ++i) x.push_back(f(i));
  };
  row([](int) { return 0.0f; });
  row([](int) { return 0.75f; });
  row([](int) { return -2.0f; });
  row([](int i) { return i == 131 ? 5.0f : 0.0f; });
  row([&](int) { return std::fabs(normal(gen)); });
  row([&](int) { return -std::fabs(normal(gen)) - 10.0f; });
  row([&](int) { return 1e-6f * normal(gen); });
  row([&](int) { return 3e3f * normal(gen); });
  row([&](int i) { return normal(gen) * std::ldexp(1.0f, (i / 16) - 8); });
  row([&](int i) { return (i / 32) % 2 ? 0.0f : normal(gen); });
  return x;
}

std::vector<float> roundtrip(TensorType type, const std::vector<float>& x,
                             std::vector<uint8_t>* bytes = nullptr) {
  const int64_t rows = static_cast<int64_t>(x.size()) / kRow;
  std::vector<uint8_t> q = quantize_rows(type, x.data(), rows, kRow);
  std::vector<float> y(x.size());
  dequantize_row(type, q.data(), y.data(), static_cast<int64_t>(y.size()));
  if (bytes) *bytes = std::move(q);
  return y;
}

// K-quants: y is the value of x's sub-block grid nearest to x. Float rounding in the encoder's
// (x + m) / d may flip an exact tie, hence the relative slack.
void expect_nearest_grid_value(TensorType type, const std::vector<float>& x) {
  std::vector<uint8_t> bytes;
  const std::vector<float> y = roundtrip(type, x, &bytes);
  const gguf::TypeTraits tr = *gguf::type_traits(static_cast<uint32_t>(type));
  for (size_t i = 0; i < x.size(); ++i) {
    const spec::Grid g = spec::grid(type, bytes.data() + i / tr.block_elements * tr.block_bytes,
                                    static_cast<int>(i % tr.block_elements));
    const double step = std::fabs(g.a);
    const double lo = g.lo(), hi = g.hi();
    const double slack = 1e-5 * step + 1e-6 * std::fabs(x[i]);
    const double err = std::fabs(static_cast<double>(y[i]) - x[i]);
    if (x[i] < lo - step / 2) {
      ASSERT_EQ(y[i], static_cast<float>(lo)) << "element " << i << " below the grid";
    } else if (x[i] > hi + step / 2) {
      ASSERT_EQ(y[i], static_cast<float>(hi)) << "element " << i << " above the grid";
    } else {
      ASSERT_LE(err, step / 2 + slack)
          << "element " << i << " x=" << x[i] << " y=" << y[i] << " step=" << step;
    }
  }
}

const TensorType kKQuants[] = {TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K,
                               TensorType::Q6_K};

TEST(QuantError, KQuantsDecodeToTheNearestValueOfTheirSubBlockGrid) {
  SCOPED_TRACE(test::seed_note());
  const std::vector<float> samples[] = {gaussian(64 * kRow, 11), student_t3(64 * kRow, 12), edge_rows(13)};
  for (TensorType type : kKQuants) {
    SCOPED_TRACE(std::string(gguf::type_name(type)));
    for (const std::vector<float>& x : samples) expect_nearest_grid_value(type, x);
  }
}

// Formats whose step comes from the block's own range: `step` and `lo`/`hi` are computed here from the
// input block as the format defines them; `qmax` steps of f16 rounding of the stored d, plus that of the
// stored min, widen the bound.
struct RangeBound {
  double step;   // |d| as the encoder computes it (before f16 rounding)
  double reach;  // elements beyond `reach` from the anchor clamp: error up to one step instead of half
  double slack;
};

RangeBound range_bound(TensorType type, const float* x, int n) {
  double amax = 0, max = 0, mn = x[0], mx = x[0];
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
    mn = std::min<double>(mn, x[i]);
    mx = std::max<double>(mx, x[i]);
  }
  auto f16_err = [](double v) { return std::fabs(f16_to_f32(f32_to_f16(static_cast<float>(v))) - v); };
  switch (type) {
    case TensorType::Q8_0:
      return {amax / 127, INFINITY, 127 * f16_err(amax / 127)};
    case TensorType::Q8_K:
      return {amax / 127, INFINITY, 0};  // f32 scale
    // The largest-magnitude element maps to q = -8 (-16); the other side reaches 7.5 (15.5) steps.
    case TensorType::Q4_0:
      return {amax / 8, 7.5 * amax / 8, 8 * f16_err(max / -8)};
    case TensorType::Q5_0:
      return {amax / 16, 15.5 * amax / 16, 16 * f16_err(max / -16)};
    case TensorType::Q4_1:
      return {(mx - mn) / 15, INFINITY, 15 * f16_err((mx - mn) / 15) + f16_err(mn)};
    case TensorType::Q5_1:
      return {(mx - mn) / 31, INFINITY, 31 * f16_err((mx - mn) / 31) + f16_err(mn)};
    default:
      ADD_FAILURE() << "no range bound for " << gguf::type_name(type);
      return {};
  }
}

TEST(QuantError, RangeScaledFormatsStayWithinHalfAStep) {
  SCOPED_TRACE(test::seed_note());
  const std::vector<float> samples[] = {gaussian(64 * kRow, 21), gaussian(16 * kRow, 22, 1e-3f),
                                        gaussian(16 * kRow, 23, 300.0f), student_t3(64 * kRow, 24),
                                        edge_rows(25)};
  for (TensorType type : {TensorType::Q8_0, TensorType::Q4_0, TensorType::Q5_0, TensorType::Q4_1,
                          TensorType::Q5_1, TensorType::Q8_K}) {
    SCOPED_TRACE(std::string(gguf::type_name(type)));
    const int block = static_cast<int>(gguf::type_traits(static_cast<uint32_t>(type))->block_elements);
    for (const std::vector<float>& x : samples) {
      const std::vector<float> y = roundtrip(type, x);
      for (size_t b = 0; b < x.size(); b += block) {
        const RangeBound r = range_bound(type, x.data() + b, block);
        for (size_t i = b; i < b + block; ++i) {
          // Q4_0/Q5_0: the side opposite the largest element reaches fewer steps; beyond, it clamps.
          const bool clamped = std::fabs(x[i]) > r.reach;
          const double bound =
              (clamped ? r.step : r.step / 2) * (1 + 1e-5) + r.slack + 1e-6 * std::fabs(x[i]);
          ASSERT_LE(std::fabs(static_cast<double>(y[i]) - x[i]), bound)
              << "element " << i << " x=" << x[i] << " y=" << y[i] << " step=" << r.step;
        }
      }
    }
  }
}

double rms(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e * e;
  return std::sqrt(s / v.size());
}

double stddev(const std::vector<float>& x) {
  double s = 0, s2 = 0;
  for (float v : x) s += v, s2 += static_cast<double>(v) * v;
  const double m = s / x.size();
  return std::sqrt(s2 / x.size() - m * m);
}

// Each element's error bound as the tests above derive it: half a step (a whole one where Q4_0/Q5_0 clamp)
// for range-scaled formats; half a step of the sub-block grid, or the distance to its nearer end, for
// K-quants.
std::vector<double> element_bounds(TensorType type, const std::vector<float>& x,
                                   const std::vector<uint8_t>& bytes) {
  const gguf::TypeTraits tr = *gguf::type_traits(static_cast<uint32_t>(type));
  const int block = static_cast<int>(tr.block_elements);
  const bool k_quant = std::find(std::begin(kKQuants), std::end(kKQuants), type) != std::end(kKQuants);
  std::vector<double> bound(x.size());
  for (size_t b = 0; b < x.size(); b += block) {
    const RangeBound r = k_quant ? RangeBound{} : range_bound(type, x.data() + b, block);
    for (size_t i = b; i < b + block; ++i) {
      if (!k_quant) {
        bound[i] = std::fabs(x[i]) > r.reach ? r.step : r.step / 2;
        continue;
      }
      const spec::Grid g =
          spec::grid(type, bytes.data() + b / block * tr.block_bytes, static_cast<int>(i - b));
      const double outside = std::max<double>(g.lo() - x[i], x[i] - g.hi());
      bound[i] = std::max(std::fabs(static_cast<double>(g.a)) / 2, outside);
    }
  }
  return bound;
}

// RMSE relative to the sample's standard deviation on Gaussian and Student-t(3) samples, beside the RMS of
// the per-element bounds: the table of docs/quantization.md. Asserted: RMSE within the bounds' RMS, and
// more bits never more error along the K-quant family (each grid is finer than the one below).
TEST(QuantError, RmseTable) {
  SCOPED_TRACE(test::seed_note());
  const TensorType types[] = {TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_0, TensorType::Q4_1,
                              TensorType::Q4_K, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q5_K,
                              TensorType::Q6_K, TensorType::Q8_0, TensorType::Q8_K};
  const std::vector<float> samples[] = {gaussian(256 * kRow, 31), student_t3(256 * kRow, 32)};
  std::printf(
      "| type | bits/weight | Gaussian: RMSE/std | bound RMS/std | Student-t(3): RMSE/std | bound RMS/std |\n"
      "|---|---|---|---|---|---|\n");
  double prev_k = INFINITY;
  for (TensorType type : types) {
    const std::string name(gguf::type_name(type));
    const gguf::TypeTraits tr = *gguf::type_traits(static_cast<uint32_t>(type));
    std::printf("| %s | %.4g |", name.c_str(), 8.0 * tr.block_bytes / tr.block_elements);
    for (size_t s = 0; s < std::size(samples); ++s) {
      const std::vector<float>& x = samples[s];
      std::vector<uint8_t> bytes;
      const std::vector<float> y = roundtrip(type, x, &bytes);
      std::vector<double> err(x.size());
      for (size_t i = 0; i < x.size(); ++i) err[i] = static_cast<double>(y[i]) - x[i];
      const double sd = stddev(x);
      const double e = rms(err) / sd, b = rms(element_bounds(type, x, bytes)) / sd;
      std::printf(" %.5f | %.5f |", e, b);
      EXPECT_LE(e, b * (1 + 1e-4)) << name;
      if (s == 0 && std::find(std::begin(kKQuants), std::end(kKQuants), type) != std::end(kKQuants)) {
        EXPECT_LT(e, prev_k) << name;
        prev_k = e;
      }
    }
    std::printf("\n");
  }
}

}  // namespace
}  // namespace wgllm::quant
