// matvec.wgsl against a float64 CPU reference: the GEMV over every weight type (weights quantized by
// quant::quantize_rows, or random blocks with extreme scales; repacked by quant::repack; reference weights
// from quant::dequantize_row), with and without ACCUMULATE and Y_OFFSET, the 2D-folded grid, and the EMBED
// row gather, which must reproduce the CPU dequantization bit for bit (and ggml's own, on the blocks of
// testdata/ggml-quants).
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.hpp"
#include "kernel_harness.hpp"
#include "quant/codec.hpp"
#include "quant/gpu_layout.hpp"
#include "quant/half.hpp"
#include "weight_fixtures.hpp"

namespace wgllm::kernels_test {
namespace {

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

  void check_gemv(TensorType type, const std::vector<Gemv>& cases, Weights weights = Weights::Quantized) {
    SCOPED_TRACE(test::seed_note());
    SCOPED_TRACE(name_of(weights));
    auto rng = test::rng(100 + static_cast<uint64_t>(type) + 50 * static_cast<uint64_t>(weights));
    std::normal_distribution<float> dist(0.f, 1.f);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (const Gemv& g : cases) {
      SCOPED_TRACE("rows " + std::to_string(g.rows) + " cols " + std::to_string(g.cols) + " y_offset " +
                   std::to_string(g.y_offset) + (g.accumulate ? " accumulate" : ""));
      Matrix m = make_weights(weights, type, g.rows, g.cols, rng);
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
      // The bound for a GEMV against the f64 reference (f32 accumulation over up to ~1000 terms;
      // 1e-5 was exceeded by a random seed in CI: 1.2e-5 for Q5_0 with 7 rows).
      EXPECT_LT(test::relative_error(got, want), 1e-4);
      std::vector<uint32_t> y_bits = bits_of(y), init_bits = bits_of(y_init);
      for (uint32_t i = 0; i < y.size(); ++i) {
        if (i >= g.y_offset && i < g.y_offset + g.rows) continue;
        EXPECT_EQ(y_bits[i], init_bits[i]) << "y[" << i << "] written";
      }
    }
  }

  // GEMV of a quantized type on both kinds of weights: legacy types over rows of an odd number of blocks
  // (rows start in the middle of a scales word), K-quants over 1, 3 and 5 super-blocks, and fewer rows than
  // a workgroup holds. (Few shapes: each is a pipeline to compile, which dominates the test's time on a
  // software adapter. Not a single row: the relative error of one dot product is ill-conditioned, as it
  // can cancel to near zero by chance.)
  void check_quant_gemv(TensorType type) {
    const std::vector<Gemv> cases =
        block_elements(type) == 32
            ? std::vector<Gemv>{{7, 32, 0, false}, {37, 96, 9, true}, {1000, 352, 0, false}}
            : std::vector<Gemv>{{7, 256, 0, true}, {37, 768, 9, false}, {300, 1280, 0, true}};
    check_gemv(type, cases, Weights::Quantized);
    check_gemv(type, cases, Weights::RandomBlocks);
  }

  // Row `token` of m through EMBED: [cols] values followed by 2 sentinels, which must stay untouched.
  std::vector<uint32_t> embed_row(const Matrix& m, uint32_t token) {
    gpu::KernelDefines d = type_defines(m.type);
    d["EMBED"] = "1";
    d["ROWS"] = u32(m.rows);
    d["COLS"] = u32(m.cols);
    d["Y_OFFSET"] = "0u";
    std::vector<gpu::BufferSlice> s = weight_slices(m);
    s.push_back({upload(std::vector<uint32_t>{token}, "token")});
    std::vector<float> y_init(m.cols + 2, kSentinel);  // [cols + 2 sentinels]
    gpu::Buffer y = upload(y_init, "embedding");
    s.push_back({y});
    dispatch("matvec", variant(d), s, (m.cols + 255) / 256);
    return bits_of(download<float>(y, y_init.size()));
  }

  static std::vector<uint32_t> with_sentinels(std::vector<float> row) {
    row.push_back(kSentinel);
    row.push_back(kSentinel);
    return bits_of(row);
  }

  // Embedding gather of several rows, compared bit for bit with the CPU decoding.
  void check_embed(TensorType type, uint32_t rows, uint32_t cols, Weights weights = Weights::Quantized) {
    SCOPED_TRACE(test::seed_note());
    SCOPED_TRACE(name_of(weights));
    auto rng = test::rng(200 + static_cast<uint64_t>(type) + 50 * static_cast<uint64_t>(weights));
    Matrix m = make_weights(weights, type, rows, cols, rng);
    for (uint32_t token : {0u, 1u, 3u, rows / 2, rows - 1}) {
      SCOPED_TRACE("token " + std::to_string(token) + (token % 3 == 1 ? " (tiny row)" : ""));
      EXPECT_EQ(embed_row(m, token),
                with_sentinels({m.w.begin() + size_t(token) * cols, m.w.begin() + size_t(token + 1) * cols}));
    }
  }

  static constexpr float kSentinel = std::numeric_limits<float>::quiet_NaN();
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

TEST_P(Matvec, GemvBF16) {
  check_gemv(TensorType::BF16,
             {{1, 173, 0, false}, {7, 172, 3, true}, {37, 1, 0, false}, {1000, 173, 11, false}});
}

TEST_P(Matvec, GemvQ8_0) {
  check_quant_gemv(TensorType::Q8_0);
}
TEST_P(Matvec, GemvQ4_0) {
  check_quant_gemv(TensorType::Q4_0);
}
TEST_P(Matvec, GemvQ4_1) {
  check_quant_gemv(TensorType::Q4_1);
}
TEST_P(Matvec, GemvQ5_0) {
  check_quant_gemv(TensorType::Q5_0);
}
TEST_P(Matvec, GemvQ5_1) {
  check_quant_gemv(TensorType::Q5_1);
}
TEST_P(Matvec, GemvQ2_K) {
  check_quant_gemv(TensorType::Q2_K);
}
TEST_P(Matvec, GemvQ3_K) {
  check_quant_gemv(TensorType::Q3_K);
}
TEST_P(Matvec, GemvQ4_K) {
  check_quant_gemv(TensorType::Q4_K);
}
TEST_P(Matvec, GemvQ5_K) {
  check_quant_gemv(TensorType::Q5_K);
}
TEST_P(Matvec, GemvQ6_K) {
  check_quant_gemv(TensorType::Q6_K);
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
TEST_P(Matvec, EmbedBF16IsCpuDecodingBitForBit) {
  check_embed(TensorType::BF16, 37, 301);
}

// Every quantized type, on quantized weights (tiny rows: subnormal f16 scales) and on random blocks with
// extreme scales.
TEST_P(Matvec, EmbedQuantizedIsCpuDecodingBitForBit) {
  for (TensorType type : kQuantTypes) {
    SCOPED_TRACE(name_of(type));
    const uint32_t cols = block_elements(type) == 32 ? 288 : 768;
    check_embed(type, 37, cols, Weights::Quantized);
    check_embed(type, 37, cols, Weights::RandomBlocks);
  }
}

// ggml's own dequantize_row_* of random blocks with extreme scales (testdata/ggml-quants/PROVENANCE.txt),
// gathered as rows of 256 elements.
TEST_P(Matvec, EmbedIsGgmlDequantizationBitForBit) {
  for (TensorType type : kQuantTypes) {
    SCOPED_TRACE(name_of(type));
    const std::string base = test::testdata_path("ggml-quants/" + name_of(type) + ".blocks");
    const std::string blocks = test::read_file(base), decoded = test::read_file(base + ".f32");
    constexpr uint32_t kCols = 256;
    const uint32_t rows = static_cast<uint32_t>(decoded.size() / 4 / kCols);
    ASSERT_EQ(blocks.size(), quant::row_bytes(type, kCols) * rows);
    Matrix m = upload_matrix(type, rows, kCols, std::vector<uint8_t>(blocks.begin(), blocks.end()));
    std::vector<float> want(decoded.size() / 4);  // [rows * kCols]
    std::memcpy(want.data(), decoded.data(), decoded.size());
    for (uint32_t r = 0; r < rows; ++r) {
      SCOPED_TRACE("row " + std::to_string(r));
      EXPECT_EQ(embed_row(m, r), with_sentinels({want.begin() + r * kCols, want.begin() + (r + 1) * kCols}));
    }
  }
}

WGLLM_KERNEL_VARIANTS(Matvec);

// The repacked planes hold the file's bytes and at most 12 bytes of padding per array: never a widened copy.
TEST(GpuLayout, SizeIsTheFileSizePlusPadding) {
  std::vector<TensorType> types = {TensorType::F32, TensorType::F16, TensorType::BF16};
  types.insert(types.end(), std::begin(kQuantTypes), std::end(kQuantTypes));
  for (TensorType type : types) {
    SCOPED_TRACE(name_of(type));
    ASSERT_TRUE(quant::has_gpu_layout(type));
    for (uint32_t rows : {1u, 3u, 37u}) {
      const uint32_t cols = 768;
      const uint64_t file_bytes = quant::row_bytes(type, cols) * rows;
      const quant::GpuLayout packed =
          quant::repack(type, std::vector<uint8_t>(file_bytes).data(), rows, cols);
      EXPECT_GE(packed.bytes(), file_bytes);
      EXPECT_LE(packed.bytes(), file_bytes + 24);
      if (block_elements(type) > 1) {  // read as vec4<u32>
        EXPECT_EQ(packed.quants.size() % 4, 0u);
        EXPECT_EQ(packed.scales.size() % 4, 0u);
      }
    }
  }
}

TEST(GpuLayout, TypesWithoutAKernelAreBadInput) {
  for (TensorType type : {TensorType::Q8_K, TensorType::IQ2_XXS, TensorType::IQ4_NL, TensorType::TQ2_0,
                          TensorType::MXFP4, TensorType::Q8_1}) {
    SCOPED_TRACE(name_of(type));
    EXPECT_FALSE(quant::has_gpu_layout(type));
    const std::vector<uint8_t> bytes(4096);
    try {
      quant::repack(type, bytes.data(), 1, 256);
      ADD_FAILURE() << "expected Error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_NE(std::string(e.what()).find(name_of(type)), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace wgllm::kernels_test
