// matvec.wgsl against a float64 CPU reference: the GEMV over every weight type (weights quantized by
// quant::quantize_rows, repacked by quant::repack, reference weights from quant::dequantize_row), with and
// without ACCUMULATE and Y_OFFSET, the 2D-folded grid, and the EMBED row gather, which must reproduce the
// CPU dequantization bit for bit.
#include <cmath>
#include <limits>

#include "kernel_harness.hpp"
#include "quant/codec.hpp"
#include "quant/gpu_layout.hpp"

namespace wgllm::kernels_test {
namespace {

using gguf::TensorType;

// The weight-type defines of matvec.wgsl (its header comment).
gpu::KernelDefines type_defines(TensorType type) {
  switch (type) {
    case TensorType::F32:
      return {{"WTYPE_F32", "1"}};
    case TensorType::F16:
      return {{"WTYPE_F16", "1"}};
    case TensorType::Q8_0:
      return {{"WTYPE_Q8_0", "1"}, {"QUANT", "1"}};
    case TensorType::Q4_0:
      return {{"WTYPE_Q4_0", "1"}, {"QUANT", "1"}};
    default:
      ADD_FAILURE() << "no matvec variant for this type";
      return {};
  }
}

struct Matrix {
  TensorType type;
  uint32_t rows = 0, cols = 0;
  std::vector<float> w;  // [rows * cols]: the CPU reference's dequantization
  gpu::Buffer quants, scales;
};

// Random N(0, 1) weights; rows 1, 4, 7, ... are tiny, so that F16 values and Q8_0/Q4_0 block scales are f16
// subnormals (and F32 values f32 subnormals): dequantization must keep them, not flush them.
Matrix make_matrix(TensorType type, uint32_t rows, uint32_t cols, std::mt19937_64& rng) {
  std::normal_distribution<float> dist(0.f, 1.f);
  const float tiny = type == TensorType::F32 ? 1e-39f : 1e-4f;
  std::vector<float> src(size_t(rows) * cols);  // [rows, cols]
  for (uint32_t r = 0; r < rows; ++r)
    for (uint32_t c = 0; c < cols; ++c) src[size_t(r) * cols + c] = dist(rng) * (r % 3 == 1 ? tiny : 1.f);
  std::vector<uint8_t> gguf_bytes = quant::quantize_rows(type, src.data(), rows, cols);
  Matrix m{type, rows, cols, std::vector<float>(src.size()), {}, {}};
  const uint64_t row_bytes = quant::row_bytes(type, cols);
  for (uint32_t r = 0; r < rows; ++r)
    quant::dequantize_row(type, gguf_bytes.data() + r * row_bytes, m.w.data() + size_t(r) * cols, cols);
  quant::GpuLayout packed = quant::repack(type, gguf_bytes.data(), rows, cols);
  m.quants = upload(packed.quants, "weights");
  if (!packed.scales.empty()) m.scales = upload(packed.scales, "scales");
  return m;
}

std::vector<gpu::BufferSlice> weight_slices(const Matrix& m) {
  std::vector<gpu::BufferSlice> s = {{m.quants}};
  if (m.scales) s.push_back({m.scales});
  return s;
}

constexpr uint32_t kRowsPerWorkgroup = 8;  // matvec.wgsl: WG / TPR

struct Gemv {
  uint32_t rows, cols, y_offset;
  bool accumulate;
};

class Matvec : public KernelVariantTest {
 protected:
  gpu::KernelDefines gemv_defines(const Matrix& m, uint32_t y_offset, bool accumulate) const {
    gpu::KernelDefines d = type_defines(m.type);
    d["ROWS"] = u32(m.rows);
    d["COLS"] = u32(m.cols);
    d["Y_OFFSET"] = u32(y_offset);
    if (accumulate) d["ACCUMULATE"] = "1";
    return variant(d);
  }

  // y[y_offset + r] (+)= W x over a y buffer with 3 NaN sentinels after the written rows; returns all of y.
  std::vector<float> run_gemv(const Matrix& m, const std::vector<float>& x, const std::vector<float>& y_init,
                              uint32_t y_offset, bool accumulate, uint32_t groups_x, uint32_t groups_y) {
    std::vector<gpu::BufferSlice> s = weight_slices(m);
    s.push_back({upload(x, "x")});
    gpu::Buffer y = upload(y_init, "y");
    s.push_back({y});
    dispatch("matvec", gemv_defines(m, y_offset, accumulate), s, groups_x, groups_y);
    return download<float>(y, y_init.size());
  }

  void check_gemv(TensorType type, const std::vector<Gemv>& cases) {
    SCOPED_TRACE(test::seed_note());
    auto rng = test::rng(100 + static_cast<uint64_t>(type));
    std::normal_distribution<float> dist(0.f, 1.f);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (const Gemv& g : cases) {
      SCOPED_TRACE("rows " + std::to_string(g.rows) + " cols " + std::to_string(g.cols) + " y_offset " +
                   std::to_string(g.y_offset) + (g.accumulate ? " accumulate" : ""));
      Matrix m = make_matrix(type, g.rows, g.cols, rng);
      std::vector<float> x(g.cols);  // [cols]
      for (float& v : x) v = dist(rng);
      // [y_offset + rows + 3]: NaN outside the rows written; inside, NaN unless accumulated into.
      std::vector<float> y_init(g.y_offset + g.rows + 3, nan);
      for (uint32_t r = 0; r < g.rows && g.accumulate; ++r) y_init[g.y_offset + r] = dist(rng);

      const uint32_t groups = (g.rows + kRowsPerWorkgroup - 1) / kRowsPerWorkgroup;
      std::vector<float> y = run_gemv(m, x, y_init, g.y_offset, g.accumulate, groups, 1);

      std::vector<double> want(g.rows);  // [rows]
      std::vector<float> got(g.rows);
      for (uint32_t r = 0; r < g.rows; ++r) {
        double acc = g.accumulate ? y_init[g.y_offset + r] : 0.0;
        for (uint32_t c = 0; c < g.cols; ++c) acc += double(m.w[size_t(r) * g.cols + c]) * x[c];
        want[r] = acc;
        got[r] = y[g.y_offset + r];
      }
      EXPECT_LT(test::relative_error(got, want), 1e-5);
      std::vector<uint32_t> y_bits = bits_of(y), init_bits = bits_of(y_init);
      for (uint32_t i = 0; i < y.size(); ++i) {
        if (i >= g.y_offset && i < g.y_offset + g.rows) continue;
        EXPECT_EQ(y_bits[i], init_bits[i]) << "y[" << i << "] written";
      }
    }
  }

  // Embedding gather of several rows, compared bit for bit with the CPU decoding.
  void check_embed(TensorType type, uint32_t rows, uint32_t cols) {
    SCOPED_TRACE(test::seed_note());
    auto rng = test::rng(200 + static_cast<uint64_t>(type));
    Matrix m = make_matrix(type, rows, cols, rng);
    gpu::KernelDefines d = type_defines(type);
    d["EMBED"] = "1";
    d["ROWS"] = u32(rows);
    d["COLS"] = u32(cols);
    d["Y_OFFSET"] = "0u";
    d = variant(d);
    for (uint32_t token : {0u, 1u, rows / 2, rows - 1}) {
      SCOPED_TRACE("token " + std::to_string(token) + (token % 3 == 1 ? " (tiny row)" : ""));
      std::vector<gpu::BufferSlice> s = weight_slices(m);
      s.push_back({upload(std::vector<uint32_t>{token}, "token")});
      std::vector<float> y_init(cols + 2, std::numeric_limits<float>::quiet_NaN());  // [cols + 2 sentinels]
      gpu::Buffer y = upload(y_init, "embedding");
      s.push_back({y});
      dispatch("matvec", d, s, (cols + 255) / 256);
      std::vector<uint32_t> got = bits_of(download<float>(y, y_init.size()));
      std::vector<float> want_row(m.w.begin() + size_t(token) * cols, m.w.begin() + size_t(token + 1) * cols);
      std::vector<uint32_t> want = bits_of(want_row);
      want.push_back(bits_of(y_init)[cols]);
      want.push_back(bits_of(y_init)[cols + 1]);
      EXPECT_EQ(got, want);
    }
  }
};

TEST_P(Matvec, GemvF32) {
  check_gemv(
      TensorType::F32,
      {{1, 172, 0, false}, {7, 173, 5, true}, {9, 1, 0, true}, {37, 33, 2, false}, {1000, 172, 0, true}});
}

TEST_P(Matvec, GemvF16) {
  // Odd column counts make rows start in the middle of a u32 word.
  check_gemv(TensorType::F16,
             {{1, 173, 0, false}, {7, 172, 3, true}, {37, 1, 0, false}, {1000, 173, 11, false}});
}

TEST_P(Matvec, GemvQ8_0) {
  check_gemv(
      TensorType::Q8_0,
      {{1, 32, 0, false}, {7, 96, 1, true}, {9, 352, 0, false}, {37, 64, 9, true}, {1000, 160, 0, false}});
}

TEST_P(Matvec, GemvQ4_0) {
  // An odd number of blocks per row makes rows start in the middle of a scales word.
  check_gemv(
      TensorType::Q4_0,
      {{1, 32, 0, true}, {7, 96, 4, false}, {9, 352, 0, true}, {37, 64, 1, false}, {1000, 160, 0, true}});
}

// Past maxComputeWorkgroupsPerDimension the runtime folds the grid into y; the kernel must recover the
// linear workgroup index, and the spare workgroups of the last y row must write nothing.
TEST_P(Matvec, FoldedGridEqualsLinearGrid) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(300);
  std::normal_distribution<float> dist(0.f, 1.f);
  Matrix m = make_matrix(TensorType::Q4_0, 37, 96, rng);  // 5 workgroups of 8 rows
  std::vector<float> x(m.cols);
  for (float& v : x) v = dist(rng);
  std::vector<float> y_init(m.rows + 3, std::numeric_limits<float>::quiet_NaN());
  std::vector<float> linear = run_gemv(m, x, y_init, 0, false, 5, 1);
  std::vector<float> folded = run_gemv(m, x, y_init, 0, false, 2, 3);  // 6 workgroups, one spare
  EXPECT_EQ(bits_of(folded), bits_of(linear));
  std::vector<float> folded3 = run_gemv(m, x, y_init, 0, false, 3, 2);
  EXPECT_EQ(bits_of(folded3), bits_of(linear));
}

TEST_P(Matvec, EmbedF32IsCpuDecodingBitForBit) {
  check_embed(TensorType::F32, 37, 301);
}
TEST_P(Matvec, EmbedF16IsCpuDecodingBitForBit) {
  check_embed(TensorType::F16, 37, 301);
}
TEST_P(Matvec, EmbedQ8_0IsCpuDecodingBitForBit) {
  check_embed(TensorType::Q8_0, 37, 288);
}
TEST_P(Matvec, EmbedQ4_0IsCpuDecodingBitForBit) {
  check_embed(TensorType::Q4_0, 37, 288);
}

WGLLM_KERNEL_VARIANTS(Matvec);

}  // namespace
}  // namespace wgllm::kernels_test
