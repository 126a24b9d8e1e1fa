// matvec.wgsl against a float64 CPU reference: the GEMV over every weight type (weights quantized by
// quant::quantize_rows, or random blocks with extreme scales; repacked by quant::repack; reference weights
// from quant::dequantize_row), with and without ACCUMULATE and Y_OFFSET, the folded grid, and the EMBED
// row gather of a pass's tokens, which must reproduce the CPU dequantization bit for bit (and ggml's own,
// on the blocks of testdata/ggml-quants). Batched (BATCH columns per workgroup): every column equals the
// one-column result bit for bit, whatever the width and the other columns (batch invariance), also when
// the inputs span several staged tiles (32 chunks each), and the fused RMSNorm (NORM) equals rms_norm.wgsl
// followed by the GEMV bit for bit. The INT8 path (inputs quantized per 32 elements as they are staged)
// against the float64 product over the same quantization done on the CPU, within the unquantized product's
// reach, and batch-invariant like the f32 path, whatever its chunks per lane (LANE_CHUNKS).
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.hpp"
#include "kernel_harness.hpp"
#include "kernels/matmul.hpp"
#include "kernels/matvec.hpp"
#include "kernels/rope_kv.hpp"
#include "quant/codec.hpp"
#include "quant/gpu_layout.hpp"
#include "quant/half.hpp"
#include "weight_fixtures.hpp"

namespace wgllm::kernels_test {
namespace {

constexpr uint32_t kRowsPerWorkgroup = 8;  // matvec.wgsl: WG / TPR

// The inputs the INT8 path multiplies, quantized on the CPU in f32 as act_quant.wgsl's quantize_chunk does
// (d = max|x| / 127 per 32 elements, q = x * (1 / d) rounded half to even): `x` holds d * q, and `slack`
// d where x / d lies within 1e-4 of a rounding tie (WGSL lets the GPU's division differ from the CPU's by
// a few ulps, which can move q by one there), else 0.
struct Int8Inputs {
  std::vector<double> x, slack, d;  // [cols]; d: the element's chunk scale
};
Int8Inputs quantize_like_the_gpu(const float* x, uint32_t cols) {
  Int8Inputs out{std::vector<double>(cols), std::vector<double>(cols), std::vector<double>(cols)};
  for (uint32_t c0 = 0; c0 < cols; c0 += 32) {
    float amax = 0;
    for (uint32_t k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(x[c0 + k]));
    const float d = amax / 127.f, id = d > 0 ? 1.f / d : 0.f;
    for (uint32_t k = 0; k < 32; ++k) {
      const float v = x[c0 + k] * id;
      out.x[c0 + k] = double(d) * std::clamp(std::nearbyint(v), -127.f, 127.f);
      out.slack[c0 + k] = std::fabs(std::fabs(v - std::trunc(v)) - 0.5f) < 1e-4f ? d : 0.f;
      out.d[c0 + k] = d;
    }
  }
  return out;
}

// One INT8 GEMV's outputs `got` [rows] for input x [cols] (added to `y0` [rows] where given) against the
// float64 product over quantize_like_the_gpu(x): the integer sums are exact and their scaling and
// accumulation in f32 stays within 1e-5, plus what inputs near a rounding tie may add
// (sum over them of d |w|). And within the activation quantization's error of the unquantized product:
// each input's rounding error is uniform in [-d/2, d/2] (d its chunk's scale), independent of the others,
// so a row's error has variance sum_c w_c^2 d_c^2 / 12; the rows' error norm must stay within 4 times
// the root of their summed variances (exceeded by chance with a probability far below 1e-6 at these row
// counts; a fixed 1.5 % bound failed one seed in ~30 on 9 rows of Q6_K). A wrong scale or a lost chunk is
// many times that.
void expect_int8_product(const Matrix& m, const float* x, const float* y0, const std::vector<float>& got,
                         bool against_unquantized) {
  const Int8Inputs q = quantize_like_the_gpu(x, m.cols);
  std::vector<double> want(m.rows);
  double err = 0, norm = 0, slack = 0, unq_err = 0, unq_var = 0;
  for (uint32_t r = 0; r < m.rows; ++r) {
    double acc = y0 ? y0[r] : 0.0, unq = acc, tie = 0;
    for (uint32_t c = 0; c < m.cols; ++c) {
      const double w = m.w[size_t(r) * m.cols + c];
      acc += w * q.x[c];
      unq += w * x[c];
      tie += std::fabs(w) * q.slack[c];
      unq_var += w * w * q.d[c] * q.d[c] / 12;
    }
    want[r] = acc;
    err += (got[r] - acc) * (got[r] - acc);
    norm += acc * acc;
    slack += tie * tie;
    unq_err += (got[r] - unq) * (got[r] - unq);
  }
  EXPECT_LE(std::sqrt(err), 1e-5 * std::sqrt(norm) + std::sqrt(slack))
      << "relative error " << std::sqrt(err / norm) << " against the CPU-quantized inputs' product";
  if (against_unquantized) {
    EXPECT_LE(std::sqrt(unq_err), 4 * std::sqrt(unq_var) + 1e-5 * std::sqrt(norm))
        << "against the unquantized product: " << std::sqrt(unq_err / unq_var)
        << " times the activation rounding's expected error";
  }
}

struct Gemv {
  uint32_t rows, cols, y_offset;
  bool accumulate;
};

class Matvec : public KernelVariantTest {
 protected:
  gpu::KernelDefines gemv_defines(const Matrix& m, uint32_t y_offset, bool accumulate,
                                  bool int8 = false) const {
    gpu::KernelDefines d = type_defines(m.type);
    if (int8) {
      d["INT8"] = "1";
      d["LANE_CHUNKS"] = u32(kernels::matvec_tiling(kernels::MatvecInput::Int8, 1, m.cols / 32,
                                                    device().limits().max_compute_workgroup_storage_size)
                                 .lane_chunks);
    }
    d["ROWS"] = u32(m.rows);
    d["COLS"] = u32(m.cols);
    d["Y_OFFSET"] = u32(y_offset);
    d["BATCH"] = "1u";
    d["STAGE_ROWS"] = "1u";
    d["X_STRIDE"] = u32(m.cols);
    d["Y_STRIDE"] = u32(y_offset + m.rows);
    if (accumulate) d["ACCUMULATE"] = "1";
    return variant(d);
  }

  // y[y_offset + r] (+)= W x over a y buffer with 3 NaN sentinels after the written rows; returns all of y.
  std::vector<float> run_gemv(const Matrix& m, const std::vector<float>& x, const std::vector<float>& y_init,
                              uint32_t y_offset, bool accumulate, uint32_t groups_x, uint32_t groups_y,
                              bool int8 = false) {
    std::vector<gpu::BufferSlice> s = weight_slices(m);
    s.push_back({upload(x, "x")});
    gpu::Buffer y = upload(y_init, "y");
    s.push_back({y});
    dispatch("matvec", gemv_defines(m, y_offset, accumulate, int8), s, 1, groups_x, groups_y);
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

  // Rows `ids` of m through EMBED, as one pass's tokens (token i's id from sampled[slot] where `from_sampler`
  // has it): [tokens, cols] values followed by 2 sentinels, which must stay untouched.
  std::vector<uint32_t> embed_rows(const Matrix& m, const std::vector<uint32_t>& ids,
                                   const std::vector<bool>& from_sampler = {}) {
    gpu::KernelDefines d = type_defines(m.type);
    d["EMBED"] = "1";
    d["ROWS"] = u32(m.rows);
    d["COLS"] = u32(m.cols);
    d["Y_OFFSET"] = "0u";
    std::vector<runtime::GpuToken> tokens(ids.size());
    std::vector<uint32_t> sampled(ids.size() + 1, 0xFFFFFFFFu);  // [slots]: token i is in slot i + 1
    for (size_t i = 0; i < ids.size(); ++i) {
      const bool gpu_id = i < from_sampler.size() && from_sampler[i];
      tokens[i] = {static_cast<uint32_t>(i + 1), 0, gpu_id ? 0xFFFFFFFFu : ids[i],
                   gpu_id ? runtime::kFromSampler : 0};
      if (gpu_id) sampled[i + 1] = ids[i];
    }
    std::vector<gpu::BufferSlice> s = weight_slices(m);
    s.push_back({upload(tokens, "tokens")});
    std::vector<float> y_init(ids.size() * m.cols + 2, kSentinel);  // [tokens, cols] + 2 sentinels
    gpu::Buffer y = upload(y_init, "embedding");
    s.push_back({y});
    s.push_back({upload(sampled, "sampled")});
    dispatch("matvec", variant(d), s, static_cast<uint32_t>(ids.size()), (m.cols + 255) / 256);
    return bits_of(download<float>(y, y_init.size()));
  }
  std::vector<uint32_t> embed_row(const Matrix& m, uint32_t token) { return embed_rows(m, {token}); }

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

// The INT8 path over every quantized type: quantized weights with an offset output and accumulation, and
// random blocks with extreme scales over rows of two tiles of 4 chunks per lane (LANE_CHUNKS), the second
// partial.
TEST_P(Matvec, Int8GemvOverEveryQuantizedType) {
  SCOPED_TRACE(test::seed_note());
  std::normal_distribution<float> dist(0.f, 1.f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (TensorType type : kQuantTypes) {
    SCOPED_TRACE(name_of(type));
    auto rng = test::rng(150 + static_cast<uint64_t>(type));
    const bool legacy = block_elements(type) == 32;
    for (const auto& [weights, g] :
         {std::pair{Weights::Quantized, Gemv{37, legacy ? 96u : 768u, 9, true}},
          std::pair{Weights::RandomBlocks, Gemv{19, legacy ? 4800u : 4352u, 0, false}}}) {
      SCOPED_TRACE(name_of(weights) + " cols " + std::to_string(g.cols));
      Matrix m = make_weights(weights, type, g.rows, g.cols, rng);
      std::vector<float> x(g.cols);  // [cols]
      for (float& v : x) v = dist(rng);
      std::vector<float> y_init(g.y_offset + g.rows + 3, nan);  // NaN outside the rows written
      for (uint32_t r = 0; r < g.rows && g.accumulate; ++r) y_init[g.y_offset + r] = dist(rng);
      const uint32_t groups = (g.rows + kRowsPerWorkgroup - 1) / kRowsPerWorkgroup;
      const std::vector<float> y = run_gemv(m, x, y_init, g.y_offset, g.accumulate, groups, 1, true);
      expect_int8_product(m, x.data(), g.accumulate ? y_init.data() + g.y_offset : nullptr,
                          {y.begin() + g.y_offset, y.begin() + g.y_offset + g.rows},
                          weights == Weights::Quantized);
      for (uint32_t i = 0; i < y.size(); ++i) {
        if (i >= g.y_offset && i < g.y_offset + g.rows) continue;
        EXPECT_EQ(bits_of({y[i]}), bits_of({y_init[i]})) << "y[" << i << "] written";
      }
    }
  }
}

// Past maxComputeWorkgroupsPerDimension the runtime folds the row groups (workgroup y) into z; the kernel
// must recover the linear row group, and the spare workgroups of the last z layer must write nothing.
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

// Several tokens of one pass, some taking their id from the sampler's slot (run-ahead decoding).
TEST_P(Matvec, EmbedGathersEveryTokenOfThePass) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(201);
  for (TensorType type : {TensorType::F16, TensorType::Q4_K}) {
    SCOPED_TRACE(name_of(type));
    Matrix m = make_matrix(type, 37, 256, rng);
    const std::vector<uint32_t> ids = {5, 36, 0, 5, 17};
    std::vector<float> want;
    for (uint32_t id : ids)
      want.insert(want.end(), m.w.begin() + size_t(id) * m.cols, m.w.begin() + size_t(id + 1) * m.cols);
    EXPECT_EQ(embed_rows(m, ids, {false, true, false, true, true}), with_sentinels(want));
  }
}

// x [tokens, X_STRIDE] and y [tokens, Y_STRIDE] of a pass of `tokens` columns, run at each batch width.
class BatchedMatvec : public KernelVariantTest {
 protected:
  struct Run {
    std::vector<float> y;  // all of y: [tiles * width rows, y_stride] then one sentinel row
  };
  static constexpr uint32_t kYOffset = 2;

  // lane_chunks > 0: the INT8 path with that LANE_CHUNKS.
  std::vector<float> run(const Matrix& m, const std::vector<float>& x, const std::vector<float>& y_init,
                         uint32_t tokens, uint32_t width, uint32_t x_stride, uint32_t y_stride,
                         bool accumulate, uint32_t lane_chunks = 0, bool prequant = false) {
    gpu::KernelDefines d = type_defines(m.type);
    if (lane_chunks) {
      d["INT8"] = "1";
      d["LANE_CHUNKS"] = u32(lane_chunks);
    }
    d["ROWS"] = u32(m.rows);
    d["COLS"] = u32(m.cols);
    d["Y_OFFSET"] = u32(kYOffset);
    d["BATCH"] = u32(width);
    d["STAGE_ROWS"] = "1u";
    d["X_STRIDE"] = u32(x_stride);
    d["Y_STRIDE"] = u32(y_stride);
    if (accumulate) d["ACCUMULATE"] = "1";
    std::vector<gpu::BufferSlice> s = weight_slices(m);
    gpu::Buffer y = upload(y_init, "y");
    if (prequant) {
      // quantize_act over the tokens first, as runtime::Forward does for passes of several tokens; the
      // columns of the last tile past the tokens read codes no one wrote (zeros).
      const uint32_t rows = (tokens + width - 1) / width * width;
      gpu::Buffer xq = device().buffer(kernels::act_codes_bytes(rows, m.cols), gpu::kStorage, "xq");
      gpu::Buffer xs = device().buffer(kernels::act_scales_bytes(rows, m.cols), gpu::kStorage, "xs");
      const kernels::KernelDispatch q = kernels::quantize_act_dispatch(m.cols, tokens, x_stride, false, 0);
      dispatch("quantize_act", variant(q.defines), {{upload(x, "x")}, {xq}, {xs}, {upload_batch(tokens)}}, 1,
               tokens);
      d["PREQUANT"] = "1";
      s.insert(s.end(), {{xq}, {y}, {xs}});
    } else {
      s.insert(s.end(), {{upload(x, "x")}, {y}});
    }
    dispatch("matvec", variant(d), s, (tokens + width - 1) / width,
             (m.rows + kRowsPerWorkgroup - 1) / kRowsPerWorkgroup);
    return download<float>(y, y_init.size());
  }

  // `tokens` columns at every width: each valid column within 1e-4 of the f64 reference (INT8: as
  // expect_int8_product) and equal bit for bit to the width-1 run (INT8: also at one chunk per lane); y
  // outside the written rows keeps its NaN sentinels.
  void check(TensorType type, uint32_t rows, uint32_t cols, uint32_t tokens, std::vector<uint32_t> widths,
             bool accumulate, bool int8 = false) {
    SCOPED_TRACE(test::seed_note());
    SCOPED_TRACE(name_of(type) + " rows " + std::to_string(rows) + " cols " + std::to_string(cols) +
                 " tokens " + std::to_string(tokens) + (accumulate ? " accumulate" : "") +
                 (int8 ? " INT8" : ""));
    auto rng = test::rng(800 + static_cast<uint64_t>(type));
    std::normal_distribution<float> dist(0.f, 1.f);
    Matrix m = make_matrix(type, rows, cols, rng);
    constexpr uint32_t kMaxWidth = 16;
    const uint32_t tile_rows = (tokens + kMaxWidth - 1) / kMaxWidth * kMaxWidth;
    const uint32_t x_stride = cols + 4, y_stride = kYOffset + rows + 3;
    std::vector<float> x(size_t(tile_rows) * x_stride);  // [tile rows, x_stride]: junk past the tokens too
    for (float& v : x) v = dist(rng);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> y_init(size_t(tile_rows + 1) * y_stride,
                              nan);  // [tile rows + 1 sentinel row, y_stride]
    for (uint32_t t = 0; t < tile_rows && accumulate; ++t)
      for (uint32_t r = 0; r < rows; ++r) y_init[size_t(t) * y_stride + kYOffset + r] = dist(rng);

    std::vector<float> first;
    const kernels::MatvecInput input = int8                                   ? kernels::MatvecInput::Int8
                                       : type_defines(type).contains("QUANT") ? kernels::MatvecInput::F32
                                                                              : kernels::MatvecInput::Direct;
    struct Run {
      uint32_t width, lane_chunks;
      bool prequant;
    };
    std::vector<Run> runs;
    for (uint32_t width : widths) {
      // As runtime::Forward does: a width the adapter's workgroup memory can't hold runs as narrower tiles.
      const kernels::MatvecTiling t = kernels::matvec_tiling(
          input, width, cols / 32, device().limits().max_compute_workgroup_storage_size);
      runs.push_back({t.columns, int8 ? t.lane_chunks : 0, false});
      if (int8 && t.lane_chunks > 1) runs.push_back({t.columns, 1, false});
      if (int8) runs.push_back({t.columns, t.lane_chunks, true});  // inputs quantized by quantize_act
    }
    for (const auto& [width, lane_chunks, prequant] : runs) {
      SCOPED_TRACE("width " + std::to_string(width) + " lane chunks " + std::to_string(lane_chunks) +
                   (prequant ? " PREQUANT" : ""));
      std::vector<float> y =
          run(m, x, y_init, tokens, width, x_stride, y_stride, accumulate, lane_chunks, prequant);
      const uint32_t written = (tokens + width - 1) / width * width;
      for (size_t i = 0; i < y.size(); ++i) {
        const size_t t = i / y_stride, r = i % y_stride;
        if (t < written && r >= kYOffset && r < kYOffset + rows) continue;
        ASSERT_EQ(bits_of({y[i]}), bits_of({y_init[i]})) << "y[" << t << ", " << r << "] written";
      }
      std::vector<float> valid;  // [tokens, rows]
      for (uint32_t t = 0; t < tokens; ++t)
        valid.insert(valid.end(), y.begin() + size_t(t) * y_stride + kYOffset,
                     y.begin() + size_t(t) * y_stride + kYOffset + rows);
      if (first.empty()) {
        first = valid;
        for (uint32_t t = 0; t < tokens && int8; ++t) {
          SCOPED_TRACE("token " + std::to_string(t));
          expect_int8_product(m, &x[size_t(t) * x_stride],
                              accumulate ? &y_init[size_t(t) * y_stride + kYOffset] : nullptr,
                              {valid.begin() + t * rows, valid.begin() + (t + 1) * rows}, true);
        }
        for (uint32_t t = 0; t < tokens && !int8; ++t) {
          std::vector<double> want(rows);
          for (uint32_t r = 0; r < rows; ++r) {
            double acc = accumulate ? y_init[size_t(t) * y_stride + kYOffset + r] : 0.0;
            for (uint32_t c = 0; c < cols; ++c)
              acc += double(m.w[size_t(r) * cols + c]) * x[size_t(t) * x_stride + c];
            want[r] = acc;
          }
          EXPECT_LT(test::relative_error(
                        std::vector<float>(valid.begin() + t * rows, valid.begin() + (t + 1) * rows), want),
                    1e-4)
              << "token " << t;
        }
      } else {
        EXPECT_EQ(bits_of(valid), bits_of(first)) << "a column depends on the batch width";
      }
    }
  }
};

TEST_P(BatchedMatvec, EveryWidthGivesTheSameBits) {
  const std::vector<uint32_t> all = {1, 2, 4, 8, 16};
  check(TensorType::Q4_0, 37, 96, 19, all, true);      // 19 tokens: tiles with junk columns at every width
  check(TensorType::Q4_0, 13, 32 * 70, 9, all, true);  // inputs in three tiles (32 + 32 + 6 chunks)
  check(TensorType::Q5_K, 10, 32 * 72, 6, {1, 8, 16}, false);
  check(TensorType::Q4_K, 20, 512, 5, all, false);  // dequantized weights (mins)
  check(TensorType::Q6_K, 9, 256, 3, {1, 4, 16}, true);
  check(TensorType::Q8_0, 9, 64, 3, {1, 4, 16}, false);
  check(TensorType::F16, 11, 173, 6, all, false);  // odd columns: a row starts mid-word
  check(TensorType::F32, 7, 33, 3, {1, 4, 16}, true);
  check(TensorType::BF16, 7, 34, 3, {1, 4, 16}, true);
}

TEST_P(BatchedMatvec, Int8EveryWidthGivesTheSameBits) {
  const std::vector<uint32_t> all = {1, 2, 4, 8, 16};
  check(TensorType::Q4_0, 37, 96, 19, all, true, true);
  check(TensorType::Q4_0, 13, 32 * 300, 9, all, true, true);  // three tiles of 128 chunks (the last 44)
  check(TensorType::Q4_K, 20, 512, 5, all, false, true);      // mins
  check(TensorType::Q6_K, 9, 256 * 9, 3, {1, 4, 16}, true, true);
  check(TensorType::Q8_0, 9, 64, 3, {1, 4, 16}, false, true);
}

// The RMSNorm fused into a one-token GEMV (NORM, applied as the input is staged in workgroup memory) gives
// the bits of rms_norm.wgsl followed by the GEMV of a batch: what makes a decode step alone and in a batch
// agree. On the INT8 path too: the normalised inputs, and so their int8 codes, are the same, also when
// quantize_act normalises and quantizes them for a GEMV of codes (PREQUANT, passes of several tokens).
TEST_P(BatchedMatvec, FusedNormEqualsRmsNormThenGemv) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(810);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (TensorType type : {TensorType::Q4_0, TensorType::Q4_K, TensorType::Q8_0}) {
    SCOPED_TRACE(name_of(type));
    const uint32_t rows = 21, cols = 32 * 40;  // two tiles of inputs, the second partial
    const double eps = 1e-5;
    Matrix m = make_matrix(type, rows, cols, rng);
    std::vector<float> x(cols), norm(cols);  // [cols]
    for (float& v : x) v = 3.f * dist(rng);
    for (float& v : norm) v = 1.f + 0.2f * dist(rng);
    gpu::Buffer x_buf = upload(x, "x"), norm_buf = upload(norm, "norm");
    const uint32_t groups = (rows + kRowsPerWorkgroup - 1) / kRowsPerWorkgroup;
    auto defines = [&](uint32_t width, bool int8) {
      gpu::KernelDefines d = type_defines(type);
      if (int8) {  // one chunk per lane: two tiles here too
        d["INT8"] = "1";
        d["LANE_CHUNKS"] = "1u";
      }
      d["ROWS"] = u32(rows);
      d["COLS"] = u32(cols);
      d["Y_OFFSET"] = "0u";
      d["BATCH"] = u32(width);
      d["STAGE_ROWS"] = "1u";
      d["X_STRIDE"] = u32(cols);
      d["Y_STRIDE"] = u32(rows);
      return d;
    };
    struct Fused {
      bool int8;
      uint32_t stage_rows, workgroup;
      uint32_t parts = 0;        // STAGE_PARTS: each chunk quantized by this many invocations
      uint32_t lane_chunks = 1;  // 2 or 4: one tile of 64 or 128 chunks holds the 40
    };
    for (auto [int8, stage_rows, workgroup, parts, lane_chunks] :
         {Fused{false, 1, 256}, Fused{false, 4, 512}, Fused{true, 1, 256}, Fused{true, 2, 1024},
          Fused{true, 4, 256}, Fused{true, 1, 256, 8}, Fused{true, 2, 1024, 8}, Fused{true, 1, 256, 2, 2},
          Fused{true, 1, 256, 4, 2}, Fused{true, 2, 512, 8, 2}, Fused{true, 2, 256, 2, 4},
          Fused{true, 1, 512, 4, 4}, Fused{true, 4, 1024, 8, 4}}) {
      // Rows per lane group and invocations per workgroup (the norm's sum over the first 256 of them),
      // chunks quantized by one invocation or several, the row in two tiles or one: each row's bits are
      // the same.
      SCOPED_TRACE("stage rows " + std::to_string(stage_rows) + " workgroup " + std::to_string(workgroup) +
                   (int8 ? " INT8" : "") + " STAGE_PARTS " + std::to_string(parts) + " LANE_CHUNKS " +
                   std::to_string(lane_chunks));
      gpu::KernelDefines fused = defines(1, int8);
      if (parts) fused["STAGE_PARTS"] = u32(parts);
      if (int8) fused["LANE_CHUNKS"] = u32(lane_chunks);
      fused["STAGE_ROWS"] = u32(stage_rows);
      fused["NORM"] = "1";
      fused["EPS"] = f32(eps);
      if (workgroup != 256) fused["WG_SIZE"] = u32(workgroup);
      std::vector<gpu::BufferSlice> s = weight_slices(m);
      gpu::Buffer y_fused = device().buffer(size_t(rows) * 4, gpu::kStorage, "y");
      s.insert(s.end(), {{x_buf}, {y_fused}, {norm_buf}});
      const uint32_t per_group = workgroup / 32 * stage_rows;
      dispatch("matvec", variant(fused), s, 1, (rows + per_group - 1) / per_group);

      for (uint32_t width : {1u, 4u}) {
        SCOPED_TRACE("width " + std::to_string(width));
        gpu::Buffer xb = device().buffer(size_t(width) * cols * 4, gpu::kStorage, "xb");
        dispatch("rms_norm", variant({{"N", u32(cols)}, {"EPS", f32(eps)}}), {{x_buf}, {norm_buf}, {xb}}, 1);
        std::vector<gpu::BufferSlice> t = weight_slices(m);
        gpu::Buffer y = device().buffer(size_t(width) * rows * 4, gpu::kStorage, "y");
        t.insert(t.end(), {{xb}, {y}});
        dispatch("matvec", variant(defines(width, int8)), t, 1, groups);
        EXPECT_EQ(bits_of(download<float>(y, rows)), bits_of(download<float>(y_fused, rows)));
        if (!int8) continue;
        // quantize_act's norm and codes, then the GEMV of the codes (PREQUANT): the same bits again.
        gpu::Buffer xq = device().buffer(kernels::act_codes_bytes(width, cols), gpu::kStorage, "xq");
        gpu::Buffer xs = device().buffer(kernels::act_scales_bytes(width, cols), gpu::kStorage, "xs");
        dispatch("quantize_act", variant(kernels::quantize_act_dispatch(cols, 1, cols, true, eps).defines),
                 {{x_buf}, {xq}, {xs}, {upload_batch(1)}, {norm_buf}}, 1, 1);
        gpu::KernelDefines pre = defines(width, true);
        pre["PREQUANT"] = "1";
        std::vector<gpu::BufferSlice> u = weight_slices(m);
        gpu::Buffer y_pre = device().buffer(size_t(width) * rows * 4, gpu::kStorage, "y");
        u.insert(u.end(), {{xq}, {y_pre}, {xs}});
        dispatch("matvec", variant(pre), u, 1, groups);
        EXPECT_EQ(bits_of(download<float>(y_pre, rows)), bits_of(download<float>(y_fused, rows)))
            << "PREQUANT";
      }
    }
  }
}

// The q|k|v GEMV's ROPE_KV epilogue does rope_kv.wgsl's work with its bits: each token's q rows rotated
// into y, its k rows rotated and its v rows copied into the caches' row of its (slot, pos), against the
// same GEMV without the epilogue followed by rope_kv. One token per workgroup with the fused norm (decode)
// and passes of 4 columns of codes (PREQUANT; the last tile's junk column writes nothing), on the INT8 and
// float paths, at 1, 2 and 4 rows per lane group and workgroups of 256 or 512, as one q|k|v matrix or as
// q and k|v (Y_OFFSET). A partial
// rotation (ROPE_DIM < HEAD_DIM) leaves the other pairs as they are. Nothing else of y or the caches is
// written.
TEST_P(BatchedMatvec, RopeKvEpilogueEqualsGemvThenRopeKv) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(820);
  std::normal_distribution<float> dist(0.f, 1.f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  constexpr uint32_t kHeads = 4, kKv = 2, kHeadDim = 16, kRopeDim = 12, kCtx = 8, kSlots = 2;
  constexpr uint32_t kQkv = (kHeads + 2 * kKv) * kHeadDim, kKvDim = kKv * kHeadDim, cols = 256;
  constexpr double kEps = 1e-5;
  const std::vector<runtime::GpuToken> tokens = {{1, 5, 0, 0}, {0, 2, 0, 0}, {1, 6, 0, 0}};  // (slot, pos)
  const auto n = static_cast<uint32_t>(tokens.size());
  std::vector<float> x(size_t(4) * cols), norm(cols);  // [4 columns, cols]: the 4th is junk
  for (float& v : x) v = 2.f * dist(rng);
  for (float& v : norm) v = 1.f + 0.2f * dist(rng);
  std::vector<float> table(size_t(kCtx) * kRopeDim);  // [ctx, rope_dim / 2] (cos, sin)
  for (uint32_t p = 0; p < kCtx; ++p)
    for (uint32_t j = 0; j < kRopeDim / 2; ++j) {
      const double angle = p * std::pow(100.0, -2.0 * j / kRopeDim);
      table[(p * kRopeDim / 2 + j) * 2] = static_cast<float>(std::cos(angle));
      table[(p * kRopeDim / 2 + j) * 2 + 1] = static_cast<float>(std::sin(angle));
    }
  gpu::Buffer x_buf = upload(x, "x"), norm_buf = upload(norm, "norm"), table_buf = upload(table, "rope");
  gpu::Buffer tokens_buf = upload(tokens, "tokens"), batch_buf = upload_batch(n);
  const std::vector<float> cache_init(size_t(kSlots) * kCtx * kKvDim, nan);  // [slots * ctx, kv_dim]
  gpu::KernelDefines heads = {{"N_HEADS", u32(kHeads)},
                              {"N_KV", u32(kKv)},
                              {"HEAD_DIM", u32(kHeadDim)},
                              {"ROPE_DIM", u32(kRopeDim)},
                              {"CTX", u32(kCtx)}};

  struct Case {
    TensorType type;
    bool int8;
    uint32_t width, stage_rows, workgroup;
    bool split;
  };
  for (const auto& [type, int8, width, stage_rows, workgroup, split] :
       {Case{TensorType::Q4_0, true, 1, 1, 256, false}, Case{TensorType::Q4_0, true, 1, 2, 512, true},
        Case{TensorType::Q4_0, true, 4, 4, 256, true}, Case{TensorType::Q4_K, true, 1, 4, 256, false},
        Case{TensorType::Q4_0, false, 1, 1, 256, true}}) {
    const Matrix m = make_matrix(type, kQkv, cols, rng);
    // Or as two matrices: q, then k | v.
    const Matrix q_part = make_matrix(type, kHeads * kHeadDim, cols, rng);
    const Matrix kv_part = make_matrix(type, 2 * kKvDim, cols, rng);
    SCOPED_TRACE(name_of(type) + (int8 ? " INT8" : " f32") + " width " + std::to_string(width) +
                 " stage rows " + std::to_string(stage_rows) + " workgroup " + std::to_string(workgroup) +
                 (split ? " q and k|v" : " q|k|v"));
    const bool prequant = width > 1;
    gpu::Buffer xq, xs;
    if (prequant) {
      xq = device().buffer(kernels::act_codes_bytes(width, cols), gpu::kStorage, "xq");
      xs = device().buffer(kernels::act_scales_bytes(width, cols), gpu::kStorage, "xs");
      dispatch("quantize_act", variant(kernels::quantize_act_dispatch(cols, n, cols, true, kEps).defines),
               {{x_buf}, {xq}, {xs}, {batch_buf}, {norm_buf}}, 1, n);
    }
    // y [4 columns, q | k | v] of each way; its k and v rows are the fused GEMV's to leave alone.
    gpu::Buffer y_fused = upload(std::vector<float>(size_t(4) * kQkv, nan), "y");
    gpu::Buffer y_plain = upload(std::vector<float>(size_t(4) * kQkv, nan), "y");
    gpu::Buffer k_fused = upload(cache_init, "k"), v_fused = upload(cache_init, "v");
    gpu::Buffer k_plain = upload(cache_init, "k"), v_plain = upload(cache_init, "v");
    uint32_t y_offset = 0;
    for (const Matrix* part :
         split ? std::vector<const Matrix*>{&q_part, &kv_part} : std::vector<const Matrix*>{&m}) {
      gpu::KernelDefines d = type_defines(type);
      if (int8) {
        d["INT8"] = "1";
        d["LANE_CHUNKS"] = "2u";
      }
      d["ROWS"] = u32(part->rows);
      d["COLS"] = u32(cols);
      d["Y_OFFSET"] = u32(y_offset);
      d["BATCH"] = u32(width);
      d["STAGE_ROWS"] = u32(stage_rows);
      d["X_STRIDE"] = u32(cols);
      d["Y_STRIDE"] = u32(kQkv);
      if (prequant) {
        d["PREQUANT"] = "1";
      } else {
        d["NORM"] = "1";
        d["EPS"] = f32(kEps);
      }
      if (workgroup != 256) d["WG_SIZE"] = u32(workgroup);
      auto bindings = [&](gpu::Buffer y) {
        std::vector<gpu::BufferSlice> s = weight_slices(*part);
        if (prequant)
          s.insert(s.end(), {{xq}, {y}, {xs}});
        else
          s.insert(s.end(), {{x_buf}, {y}, {norm_buf}});
        return s;
      };
      const uint32_t per_group = workgroup / 32 * stage_rows;
      const uint32_t groups_x = prequant ? 1 : n, groups_y = (part->rows + per_group - 1) / per_group;
      dispatch("matvec", variant(d), bindings(y_plain), groups_x, groups_y);
      gpu::KernelDefines fused = d;
      fused.insert(heads.begin(), heads.end());
      fused["ROPE_KV"] = "1";
      std::vector<gpu::BufferSlice> s = bindings(y_fused);
      s.insert(s.end(), {{tokens_buf}, {table_buf}, {k_fused}, {v_fused}, {batch_buf}});
      dispatch("matvec", variant(fused), s, groups_x, groups_y);
      y_offset += part->rows;
    }
    gpu::KernelDefines plain = heads;
    const uint32_t groups = kernels::set_rope_kv_layout(plain, kHeads, kKv, kHeadDim);
    dispatch("rope_kv", variant(plain), {{tokens_buf}, {table_buf}, {y_plain}, {k_plain}, {v_plain}}, n,
             groups);
    std::vector<float> yf = download<float>(y_fused, size_t(4) * kQkv);
    std::vector<float> yp = download<float>(y_plain, size_t(4) * kQkv);
    for (uint32_t t = 0; t < 4; ++t)
      for (uint32_t r = 0; r < kQkv; ++r) {
        const size_t i = size_t(t) * kQkv + r;
        if (t < n && r < kHeads * kHeadDim)
          ASSERT_EQ(bits_of({yf[i]}), bits_of({yp[i]})) << "q of token " << t << ", row " << r;
        else
          ASSERT_TRUE(std::isnan(yf[i])) << "y[" << t << ", " << r << "] written";
      }
    EXPECT_EQ(bits_of(download<float>(k_fused, cache_init.size())),
              bits_of(download<float>(k_plain, cache_init.size())))
        << "k cache";
    EXPECT_EQ(bits_of(download<float>(v_fused, cache_init.size())),
              bits_of(download<float>(v_plain, cache_init.size())))
        << "v cache";
  }
}

// The gate|up GEMV's GLU epilogue leaves the int8 chunks of silu(gate) * up that silu_mul.wgsl's QUANT_OUT
// makes from the GEMV's outputs, bit for bit (the codes the down GEMV reads), and y as the GEMV writes it:
// one and two output chunks per workgroup (workgroups of 512 and 1024, 2 and 4 rows per lane group), on the
// INT8 and float paths, with the fused norm, for the one token of a decode step.
TEST_P(BatchedMatvec, GluEpilogueEqualsGemvThenSiluMul) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(830);
  std::normal_distribution<float> dist(0.f, 1.f);
  constexpr uint32_t kFfn = 128, cols = 256;  // gate|up: 2 kFfn rows
  constexpr double kEps = 1e-5;
  std::vector<float> x(cols), norm(cols);  // [cols]
  for (float& v : x) v = 2.f * dist(rng);
  for (float& v : norm) v = 1.f + 0.2f * dist(rng);
  gpu::Buffer x_buf = upload(x, "x"), norm_buf = upload(norm, "norm");
  const std::vector<uint32_t> codes_init(kFfn / 32 * 8 + 1, 0xDEADBEEFu);  // [chunks, 2 vec4] + 1
  const std::vector<float> scales_init(kFfn / 32 * 4 + 1, std::numeric_limits<float>::quiet_NaN());
  struct Case {
    TensorType type;
    bool int8;
    uint32_t stage_rows, workgroup;
  };
  for (const auto& [type, int8, stage_rows, workgroup] :
       {Case{TensorType::Q4_0, true, 4, 512}, Case{TensorType::Q4_0, true, 4, 1024},
        Case{TensorType::Q4_K, true, 2, 1024}, Case{TensorType::Q4_0, false, 4, 512}}) {
    SCOPED_TRACE(name_of(type) + (int8 ? " INT8" : " f32") + " stage rows " + std::to_string(stage_rows) +
                 " workgroup " + std::to_string(workgroup));
    const Matrix m = make_matrix(type, 2 * kFfn, cols, rng);
    gpu::KernelDefines d = type_defines(type);
    if (int8) {
      d["INT8"] = "1";
      d["LANE_CHUNKS"] = "2u";
    }
    d["ROWS"] = u32(2 * kFfn);
    d["COLS"] = u32(cols);
    d["Y_OFFSET"] = "0u";
    d["BATCH"] = "1u";
    d["STAGE_ROWS"] = u32(stage_rows);
    d["X_STRIDE"] = u32(cols);
    d["Y_STRIDE"] = u32(2 * kFfn);
    d["NORM"] = "1";
    d["EPS"] = f32(kEps);
    d["WG_SIZE"] = u32(workgroup);
    const uint32_t groups = 2 * kFfn / (workgroup / 32 * stage_rows);
    gpu::Buffer gu = upload(std::vector<float>(2 * kFfn, 0.f), "gate|up");
    std::vector<gpu::BufferSlice> s = weight_slices(m);
    s.insert(s.end(), {{x_buf}, {gu}, {norm_buf}});
    dispatch("matvec", variant(d), s, 1, groups);
    gpu::Buffer xq = upload(codes_init, "xq"), xs = upload(scales_init, "xs");
    dispatch("silu_mul", variant({{"N", u32(kFfn)}, {"QUANT_OUT", "1"}}), {{gu}, {xq}, {xs}}, 1, 1);

    gpu::KernelDefines glu = d;
    glu["GLU"] = "1";
    const std::vector<float> y_init(2 * kFfn, std::numeric_limits<float>::quiet_NaN());
    gpu::Buffer y = upload(y_init, "y");
    gpu::Buffer hq = upload(codes_init, "hq"), hs = upload(scales_init, "hs");
    std::vector<gpu::BufferSlice> t = weight_slices(m);
    t.insert(t.end(), {{x_buf}, {y}, {norm_buf}, {hq}, {hs}});
    dispatch("matvec", variant(glu), t, 1, groups);
    EXPECT_EQ(download<uint32_t>(hq, codes_init.size()), download<uint32_t>(xq, codes_init.size()))
        << "codes";
    EXPECT_EQ(bits_of(download<float>(hs, scales_init.size())),
              bits_of(download<float>(xs, scales_init.size())))
        << "scales";
    EXPECT_EQ(bits_of(download<float>(y, y_init.size())), bits_of(download<float>(gu, y_init.size())))
        << "gate|up";
  }
}

WGLLM_KERNEL_VARIANTS(BatchedMatvec);

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
