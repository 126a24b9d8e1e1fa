// The mixture-of-experts kernels against float64 CPU references: moe_route.wgsl (top k of the router's
// logits, ties to the lower index, softmax with and without renormalisation, or sigmoid), silu_mul.wgsl
// over a token's expert slots (with llama4's routing weight on the expert's input), and moe_combine.wgsl
// (the slots' outputs into the residual stream, weighted or not); and matvec.wgsl's EXPERTS, the expert
// GEMV, against the plain GEMV of the chosen expert's rows (bit for bit) and float64.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "kernel_harness.hpp"
#include "kernels/matvec.hpp"
#include "weight_fixtures.hpp"

namespace wgllm::kernels_test {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Route {
  uint32_t expert;
  float weight;
};
static_assert(sizeof(Route) == 8, "Route must match route.wgsl");

std::vector<float> random_vector(size_t n, std::mt19937_64& rng, float scale = 1.f) {
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

enum class Gating { Softmax, SoftmaxRenorm, Sigmoid };

class MoeRoute : public KernelVariantTest {
 protected:
  // `tokens` rows of n_expert random logits, some with ties at the top and across the k-th place.
  void check(uint32_t n_expert, uint32_t k, Gating gating) {
    SCOPED_TRACE("experts " + std::to_string(n_expert) + " k " + std::to_string(k) + " gating " +
                 std::to_string(int(gating)));
    constexpr uint32_t kTokens = 5;
    auto rng = test::rng(700 + n_expert * 10 + k);
    std::vector<float> logits = random_vector(size_t(kTokens) * n_expert, rng, 2.f);  // [tokens, n_expert]
    std::uniform_int_distribution<uint32_t> pick(0, n_expert - 1);
    for (uint32_t t = 1; t < kTokens; ++t) {
      float* row = logits.data() + size_t(t) * n_expert;
      const auto order = ranked(std::vector<float>(row, row + n_expert));
      if (t == 1) row[pick(rng)] = row[order[0]];  // a tie for the first place (or the same expert)
      if (t == 2 && k < n_expert) row[order[k]] = row[order[k - 1]];  // the k-th place tied with the next
      if (t == 3) std::fill(row, row + n_expert, 0.5f);               // every expert tied
      if (t == 4)
        for (uint32_t e = 0; e < n_expert; e += 2) row[e] = row[e + 1 < n_expert ? e + 1 : e];  // pairs
    }
    gpu::KernelDefines d = {{"N_EXPERT", u32(n_expert)}, {"K", u32(k)}};
    if (gating != Gating::Sigmoid) d["SOFTMAX"] = "1";
    if (gating == Gating::SoftmaxRenorm) d["RENORM"] = "1";
    std::vector<Route> init(size_t(kTokens) * k + 1, Route{0xDEADu, kNaN});
    gpu::Buffer route = upload(init, "route");
    dispatch("moe_route", variant(d), {{upload(logits, "logits")}, {route}}, kTokens);
    const std::vector<Route> got = download<Route>(route, init.size());

    for (uint32_t t = 0; t < kTokens; ++t) {
      SCOPED_TRACE("token " + std::to_string(t));
      const std::vector<float> row(logits.begin() + size_t(t) * n_expert,
                                   logits.begin() + size_t(t + 1) * n_expert);
      // The reference: probabilities (or sigmoids) in double, ranked by a stable sort.
      std::vector<double> p(row.begin(), row.end());
      const double top = *std::max_element(p.begin(), p.end());
      double sum = 0;
      for (double& v : p) sum += v = std::exp(v - top);
      const std::vector<uint32_t> order = ranked(row);
      std::vector<double> want(k);
      double total = 0;
      for (uint32_t s = 0; s < k; ++s) {
        const double l = row[order[s]];
        want[s] = gating == Gating::Sigmoid ? 1.0 / (1.0 + std::exp(-l)) : p[order[s]] / sum;
        total += want[s];
      }
      if (gating == Gating::SoftmaxRenorm)
        for (double& w : want) w /= total;
      std::vector<float> weights(k);
      for (uint32_t s = 0; s < k; ++s) {
        EXPECT_EQ(got[size_t(t) * k + s].expert, order[s]) << "rank " << s;
        weights[s] = got[size_t(t) * k + s].weight;
      }
      EXPECT_LT(test::relative_error(weights, want), 1e-5);
    }
    EXPECT_EQ(got.back().expert, 0xDEADu) << "written past the tokens' routes";
  }

  // Expert indices by logit, largest first, equal logits in index order.
  static std::vector<uint32_t> ranked(const std::vector<float>& row) {
    std::vector<uint32_t> order(row.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return row[a] > row[b]; });
    return order;
  }
};

// The fixtures' 4 experts top 2; Qwen3-30B-A3B's 128 top 8; more experts than invocations (130, 200) with
// a k past one round of ties; every expert chosen (k = n); Llama 4's top 1 of 16 by sigmoid.
TEST_P(MoeRoute, TopKWithTiesToTheLowerIndex) {
  SCOPED_TRACE(test::seed_note());
  check(4, 2, Gating::SoftmaxRenorm);
  check(128, 8, Gating::SoftmaxRenorm);
  check(130, 3, Gating::Softmax);
  check(60, 60, Gating::Softmax);
  check(200, 5, Gating::Sigmoid);
  check(16, 1, Gating::Sigmoid);
  check(4, 2, Gating::Sigmoid);
}

class MoeSlots : public KernelVariantTest {};

// silu_mul over SLOTS rows [gate | up] per token, with ROUTE_SCALE each row's routing weight w applied to
// gate and up first: silu(w g) * (w u).
TEST_P(MoeSlots, SiluMulPerSlotWithRouteScale) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(710);
  constexpr uint32_t kTokens = 3;
  for (const auto& [slots, n, scale] : {std::tuple{2u, 32u, false}, std::tuple{2u, 32u, true},
                                        std::tuple{3u, 200u, true}, std::tuple{8u, 100u, false}}) {
    SCOPED_TRACE("slots " + std::to_string(slots) + " N " + std::to_string(n) + (scale ? " scaled" : ""));
    const uint32_t rows = kTokens * slots;
    std::vector<float> init = random_vector(size_t(rows) * 2 * n, rng, 3.f);  // [tokens, slots, gate | up]
    std::vector<Route> route(rows);
    std::uniform_real_distribution<float> weight(0.f, 1.f);
    for (uint32_t r = 0; r < rows; ++r) route[r] = {r % 7, weight(rng)};
    init.insert(init.end(), 3, kNaN);
    gpu::Buffer gu = upload(init, "gate|up");
    gpu::KernelDefines d = {{"N", u32(n)}, {"SLOTS", u32(slots)}};
    std::vector<gpu::BufferSlice> b = {{gu}};
    if (scale) {
      d["ROUTE_SCALE"] = "1";
      b.push_back({upload(route, "route")});
    }
    dispatch("silu_mul", variant(d), b, kTokens, (slots * n + 255) / 256);
    const std::vector<float> got = download<float>(gu, init.size());
    for (uint32_t r = 0; r < rows; ++r) {
      SCOPED_TRACE("row " + std::to_string(r));
      const size_t at = size_t(r) * 2 * n;
      std::vector<double> want(n);
      for (uint32_t i = 0; i < n; ++i) {
        const double w = scale ? route[r].weight : 1.0;
        const double g = w * init[at + i], u = w * init[at + n + i];
        want[i] = g / (1.0 + std::exp(-g)) * u;
      }
      EXPECT_LT(test::relative_error(std::vector<float>(got.begin() + at, got.begin() + at + n), want), 1e-6);
      EXPECT_EQ(bits_of(std::vector<float>(got.begin() + at + n, got.begin() + at + 2 * n)),
                bits_of(std::vector<float>(init.begin() + at + n, init.begin() + at + 2 * n)))
          << "up was written";
    }
    EXPECT_EQ(bits_of(std::vector<float>(got.end() - 3, got.end())), bits_of(std::vector<float>(3, kNaN)));
  }
}

// moe_combine: x += the slots' outputs in rank order, times their weights (WEIGHTED) or not.
TEST_P(MoeSlots, CombineIntoTheResidual) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(720);
  constexpr uint32_t kTokens = 3;
  for (const auto& [k, dim, weighted] : {std::tuple{2u, 64u, true}, std::tuple{2u, 64u, false},
                                         std::tuple{8u, 300u, true}, std::tuple{1u, 5u, false}}) {
    SCOPED_TRACE("k " + std::to_string(k) + " dim " + std::to_string(dim) + (weighted ? " weighted" : ""));
    std::vector<float> x = random_vector(size_t(kTokens) * dim, rng);
    std::vector<float> y = random_vector(size_t(kTokens) * k * dim, rng);  // [tokens, k, dim]
    std::vector<Route> route(kTokens * k);
    std::uniform_real_distribution<float> weight(0.f, 1.f);
    for (Route& r : route) r = {0, weight(rng)};
    std::vector<float> init = x;
    init.insert(init.end(), 3, kNaN);
    gpu::Buffer x_buf = upload(init, "x");
    gpu::KernelDefines d = {{"DIM", u32(dim)}, {"K", u32(k)}};
    std::vector<gpu::BufferSlice> b = {{x_buf}, {upload(y, "y")}};
    if (weighted) {
      d["WEIGHTED"] = "1";
      b.push_back({upload(route, "route")});
    }
    dispatch("moe_combine", variant(d), b, kTokens, (dim + 255) / 256);
    const std::vector<float> got = download<float>(x_buf, init.size());
    for (uint32_t t = 0; t < kTokens; ++t) {
      std::vector<double> want(dim);
      for (uint32_t i = 0; i < dim; ++i) {
        double sum = 0;
        for (uint32_t s = 0; s < k; ++s)
          sum += (weighted ? route[t * k + s].weight : 1.0) * y[(size_t(t) * k + s) * dim + i];
        want[i] = x[size_t(t) * dim + i] + sum;
      }
      EXPECT_LT(
          test::relative_error(
              std::vector<float>(got.begin() + size_t(t) * dim, got.begin() + size_t(t + 1) * dim), want),
          1e-6)
          << "token " << t;
    }
    EXPECT_EQ(bits_of(std::vector<float>(got.end() - 3, got.end())), bits_of(std::vector<float>(3, kNaN)));
  }
}

class MoeExperts : public KernelVariantTest {};

// The expert GEMV of every weight type: 5 experts of 36 rows (4.5 workgroups of 8 rows: a partial one)
// over 256 inputs, split into chunks of experts 0-2 and 3-4, for 3 tokens of 2 slots each (experts chosen
// at random, the same expert in several tokens) reading the token's input (TOKEN_INPUT, strided) or the
// slot's, into rows [token, slot] at an offset. Each slot's output equals the plain GEMV's rows of its
// expert bit for bit (the plain GEMV is checked against float64 by matvec_test; so is this within 1e-4 on
// the f32-input path), on the INT8 path of every other quantized type too; nothing else of y is written.
TEST_P(MoeExperts, EqualThePlainGemvOfTheChosenRows) {
  SCOPED_TRACE(test::seed_note());
  constexpr uint32_t kExperts = 5, kRows = 36, kCols = 256, kTokens = 3, kSlots = 2, kSplit = 3;
  constexpr uint32_t kXStride = kCols + 32, kYStride = 2 * kRows, kYOffset = kRows;
  std::vector<TensorType> types = {TensorType::F32, TensorType::F16, TensorType::BF16};
  types.insert(types.end(), std::begin(kQuantTypes), std::end(kQuantTypes));
  auto rng = test::rng(730);
  std::uniform_int_distribution<uint32_t> pick(0, kExperts - 1);
  for (size_t ti = 0; ti < types.size(); ++ti) {
    const TensorType type = types[ti];
    const bool quant = block_elements(type) > 1;
    const bool int8 = quant && ti % 2 == 0;
    const bool token_input = ti % 3 != 0;
    SCOPED_TRACE(name_of(type) + (int8 ? " INT8" : "") + (token_input ? " token input" : " slot input"));
    std::normal_distribution<float> dist(0.f, 1.f);
    std::vector<float> src(size_t(kExperts) * kRows * kCols);
    for (float& v : src) v = dist(rng);
    const std::vector<uint8_t> bytes = quant::quantize_rows(type, src.data(), kExperts * kRows, kCols);
    const uint64_t expert_bytes = quant::row_bytes(type, kCols) * kRows;
    const Matrix whole = upload_matrix(type, kExperts * kRows, kCols, bytes);
    const Matrix chunks[] = {
        upload_matrix(type, kSplit * kRows, kCols,
                      std::vector<uint8_t>(bytes.begin(), bytes.begin() + kSplit * expert_bytes)),
        upload_matrix(type, (kExperts - kSplit) * kRows, kCols,
                      std::vector<uint8_t>(bytes.begin() + kSplit * expert_bytes, bytes.end()))};
    std::vector<Route> route(kTokens * kSlots);
    for (uint32_t t = 0; t < kTokens; ++t) {
      route[t * kSlots] = {pick(rng), 1.f};
      do route[t * kSlots + 1] = {pick(rng), 1.f};
      while (route[t * kSlots + 1].expert == route[t * kSlots].expert);
    }
    const uint32_t columns = token_input ? kTokens : kTokens * kSlots;
    const std::vector<float> x = random_vector(size_t(columns) * kXStride, rng);  // [columns, x_stride]
    const std::vector<float> y0(size_t(kTokens) * kSlots * kYStride + 3, kNaN);
    gpu::Buffer x_buf = upload(x, "x"), y = upload(y0, "y"), route_buf = upload(route, "route");
    gpu::Buffer plain_y = upload(std::vector<float>(size_t(columns) * kExperts * kRows, kNaN), "plain y");
    auto defines = [&](uint32_t rows) {
      gpu::KernelDefines d = type_defines(type);
      d["ROWS"] = u32(rows);
      d["COLS"] = u32(kCols);
      d["BATCH"] = "1u";
      d["X_STRIDE"] = u32(kXStride);
      if (quant) d["STAGE_ROWS"] = "1u";
      if (int8) {
        d["INT8"] = "1";
        d["LANE_CHUNKS"] = u32(kernels::matvec_tiling(kernels::MatvecInput::Int8, 1, kCols / 32,
                                                      device().limits().max_compute_workgroup_storage_size)
                                   .lane_chunks);
      }
      return variant(d);
    };
    for (uint32_t c = 0; c < 2; ++c) {
      gpu::KernelDefines d = defines(chunks[c].rows);
      d["Y_STRIDE"] = u32(kYStride);
      d["Y_OFFSET"] = u32(kYOffset);
      d["EXPERTS"] = u32(kSlots);
      d["EXPERT_ROWS"] = u32(kRows);
      d["FIRST_EXPERT"] = u32(c == 0 ? 0 : kSplit);
      if (token_input) d["TOKEN_INPUT"] = "1";
      std::vector<gpu::BufferSlice> b = weight_slices(chunks[c]);
      b.insert(b.end(), {{x_buf}, {y}, {route_buf}});
      dispatch("matvec", d, b, kTokens * kSlots, (kRows + 7) / 8);
    }
    gpu::KernelDefines d = defines(kExperts * kRows);
    d["Y_STRIDE"] = u32(kExperts * kRows);
    d["Y_OFFSET"] = "0u";
    std::vector<gpu::BufferSlice> b = weight_slices(whole);
    b.insert(b.end(), {{x_buf}, {plain_y}});
    dispatch("matvec", d, b, columns, (kExperts * kRows + 7) / 8);
    const std::vector<float> got = download<float>(y, y0.size());
    const std::vector<float> plain = download<float>(plain_y, size_t(columns) * kExperts * kRows);

    std::vector<float> want = y0;  // every slot's rows of its expert, at the offset
    for (uint32_t i = 0; i < kTokens * kSlots; ++i) {
      const uint32_t e = route[i].expert, col = token_input ? i / kSlots : i;
      SCOPED_TRACE("slot " + std::to_string(i) + ", expert " + std::to_string(e));
      const std::vector<float> rows(plain.begin() + (size_t(col) * kExperts + e) * kRows,
                                    plain.begin() + (size_t(col) * kExperts + e + 1) * kRows);
      std::copy(rows.begin(), rows.end(), want.begin() + size_t(i) * kYStride + kYOffset);
      if (int8) continue;
      std::vector<double> ref(kRows);
      for (uint32_t r = 0; r < kRows; ++r)
        for (uint32_t k = 0; k < kCols; ++k)
          ref[r] += double(whole.w[(size_t(e) * kRows + r) * kCols + k]) * x[size_t(col) * kXStride + k];
      EXPECT_LT(test::relative_error(rows, ref), 1e-4);
    }
    EXPECT_EQ(bits_of(got), bits_of(want));
  }
}

WGLLM_KERNEL_VARIANTS(MoeExperts);
WGLLM_KERNEL_VARIANTS(MoeRoute);
WGLLM_KERNEL_VARIANTS(MoeSlots);

}  // namespace
}  // namespace wgllm::kernels_test
