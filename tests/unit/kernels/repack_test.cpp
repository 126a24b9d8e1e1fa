// repack.wgsl through runtime::WeightUpload against quant::repack (the CPU layout matvec reads): for every
// type the GPU path's buffers equal the CPU path's byte for byte, on random blocks (any bit pattern: the
// repack is a permutation of bits, so NaN and infinite scales must pass through too) with extreme f16 scale
// values planted, odd row and block counts, matrices split into several chunks, and scratch pieces that end
// at every kind of boundary. The deferred protocol the browser uses (pieces in file order, written by the
// host) gives the same bytes.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "core/error.hpp"
#include "gguf/gguf_writer.hpp"
#include "kernel_harness.hpp"
#include "model/synthetic.hpp"
#include "quant/gpu_layout.hpp"
#include "runtime/gpu_weights.hpp"

namespace wgllm::kernels_test {
namespace {

using gguf::TensorType;

const TensorType kTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q8_0,
                             TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                             TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K,
                             TensorType::Q6_K};

gguf::TypeTraits traits(TensorType type) {
  return *gguf::type_traits(static_cast<uint32_t>(type));
}

// Random bytes; in every third block the f16 scale fields (ggml-common.h offsets) hold extreme values.
std::vector<uint8_t> random_blocks(TensorType type, uint64_t blocks, std::mt19937_64& rng) {
  const uint32_t bb = traits(type).block_bytes;
  std::vector<uint8_t> bytes(blocks * bb);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  std::vector<uint32_t> halves;  // byte offsets of f16 fields in a block
  switch (type) {
    case TensorType::Q8_0:
    case TensorType::Q4_0:
    case TensorType::Q5_0:
      halves = {0};
      break;
    case TensorType::Q4_1:
    case TensorType::Q5_1:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
      halves = {0, 2};
      break;
    case TensorType::Q2_K:
      halves = {80, 82};
      break;
    case TensorType::Q3_K:
      halves = {108};
      break;
    case TensorType::Q6_K:
      halves = {208};
      break;
    default:
      break;
  }
  // inf, -inf, NaN, largest finite, smallest subnormal, -0, 0
  const uint16_t extremes[] = {0x7C00, 0xFC00, 0x7E01, 0x7BFF, 0x0001, 0x8000, 0x0000};
  for (uint64_t b = 0; b < blocks; b += 3)
    for (uint32_t at : halves) {
      const uint16_t v = extremes[rng() % std::size(extremes)];
      bytes[b * bb + at] = static_cast<uint8_t>(v);
      bytes[b * bb + at + 1] = static_cast<uint8_t>(v >> 8);
    }
  return bytes;
}

struct Case {
  TensorType type;
  uint32_t rows, col_blocks;
  std::vector<uint8_t> bytes;  // GGUF layout
  std::unique_ptr<gguf::GgufFile> file;
};

// A GGUF file holding one [cols, rows] tensor "w" after a small one, so that w's data does not start the
// data section.
Case make_case(TensorType type, uint32_t rows, uint32_t col_blocks, std::mt19937_64& rng) {
  Case c{type, rows, col_blocks, random_blocks(type, uint64_t(rows) * col_blocks, rng), nullptr};
  gguf::GgufWriter w;
  w.set_string("general.architecture", "test");
  w.add_tensor("first", TensorType::F32, {3}, std::vector<uint8_t>(12, 7));
  w.add_tensor("w", type, {uint64_t(col_blocks) * traits(type).block_elements, rows}, c.bytes);
  const std::string path = test::temp_dir() + "/repack_" + std::string(gguf::type_name(type)) + "_" +
                           std::to_string(rows) + "x" + std::to_string(col_blocks) + ".gguf";
  w.write(path);
  c.file = gguf::GgufFile::open(path);
  return c;
}

std::vector<uint32_t> contents(gpu::Buffer b) {
  return b ? download<uint32_t>(b, b.size / 4) : std::vector<uint32_t>{};
}

// Every chunk of m against quant::repack of the same rows.
void expect_cpu_layout(const Case& c, const runtime::GpuMatrix& m) {
  const uint64_t cols = uint64_t(c.col_blocks) * traits(c.type).block_elements;
  const uint64_t row_bytes = uint64_t(c.col_blocks) * traits(c.type).block_bytes;
  uint32_t rows = 0;
  for (const auto& chunk : m.chunks) {
    SCOPED_TRACE("chunk from row " + std::to_string(chunk.first_row) + ", " + std::to_string(chunk.rows) +
                 " rows");
    const quant::GpuLayout cpu =
        quant::repack(c.type, c.bytes.data() + chunk.first_row * row_bytes, chunk.rows, cols);
    EXPECT_EQ(contents(chunk.quants), cpu.quants);
    EXPECT_EQ(contents(chunk.scales), cpu.scales);
    rows += chunk.rows;
  }
  EXPECT_EQ(rows, c.rows);
}

struct Shape {
  uint32_t rows, col_blocks;
  uint64_t scratch_bytes;  // the upload rounds it to at least 512
  double chunk_fraction;   // chunk limit as a fraction of the tensor's bytes; 0: the adapter's
};

class RepackTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(RepackTest, GpuRepackEqualsCpuRepack) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(static_cast<uint64_t>(GetParam()));
  const Shape shapes[] = {
      {1, 1, 1 << 20, 0},  // one block
      {7, 3, 1 << 20, 0},  // odd rows and blocks, one piece
      {37, 5, 512, 0},     // many pieces; for large blocks, two per piece
      {37, 3, 700, 0.3},   // chunks of 8 rows plus an odd last one, pieces ending mid-chunk
      {64, 1, 512, 0.5},   // one block per row, chunk boundaries on piece boundaries
      {19, 9, 4096, 0.45},
  };
  for (const Shape& s : shapes) {
    SCOPED_TRACE("rows " + std::to_string(s.rows) + ", blocks per row " + std::to_string(s.col_blocks) +
                 ", scratch " + std::to_string(s.scratch_bytes) + ", chunk fraction " +
                 std::to_string(s.chunk_fraction));
    Case c = make_case(GetParam(), s.rows, s.col_blocks, rng);
    const gguf::TensorInfo& t = *c.file->find_tensor("w");
    runtime::WeightUpload::Options o;
    o.gpu_repack = true;
    o.scratch_bytes = s.scratch_bytes;
    o.chunk_limit = static_cast<uint64_t>(s.chunk_fraction * static_cast<double>(t.n_bytes));
    runtime::GpuMatrix gpu;
    {
      runtime::WeightUpload upload(device(), o);
      gpu = runtime::upload_matrix(device(), *c.file, t);
    }
    if (s.chunk_fraction > 0) {
      EXPECT_GT(gpu.chunks.size(), 1u);
    }
    expect_cpu_layout(c, gpu);
    const runtime::GpuMatrix cpu = runtime::upload_matrix(device(), *c.file, t);  // no upload: the CPU path
    EXPECT_EQ(cpu.gpu_bytes(), gpu.gpu_bytes());
  }
}

// A mixture-of-experts tensor (group_rows = an expert's rows) splits only at expert boundaries: 6 experts
// of 5 rows under a limit of 2.5 experts' bytes take chunks of 2 experts, on both paths, each equal to
// quant::repack of its rows; an expert larger than the limit is refused, naming the tensor.
TEST_P(RepackTest, ExpertsNeverStraddleChunks) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(200 + static_cast<uint64_t>(GetParam()));
  Case c = make_case(GetParam(), 30, 3, rng);
  const gguf::TensorInfo& t = *c.file->find_tensor("w");
  const uint64_t row_bytes = t.n_bytes / 30;
  for (const bool gpu_repack : {true, false}) {
    SCOPED_TRACE(gpu_repack ? "GPU repack" : "CPU repack");
    runtime::WeightUpload::Options o;
    o.gpu_repack = gpu_repack;
    o.chunk_limit = 5 * (row_bytes + 8) * 5 / 2;
    runtime::WeightUpload upload(device(), o);
    const runtime::GpuMatrix m = runtime::upload_matrix(device(), *c.file, t, 5);
    ASSERT_EQ(m.chunks.size(), 3u);
    for (const auto& chunk : m.chunks) {
      EXPECT_EQ(chunk.first_row % 5, 0u);
      EXPECT_EQ(chunk.rows, 10u);
    }
    expect_cpu_layout(c, m);
  }
  runtime::WeightUpload::Options o;
  o.chunk_limit = 4 * (row_bytes + 8);
  runtime::WeightUpload upload(device(), o);
  try {
    runtime::upload_matrix(device(), *c.file, t, 5);
    ADD_FAILURE() << "an expert of 5 rows over a limit of 4 rows' bytes was uploaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
  }
}

// The browser's protocol: buffers allocated first, then the host writes each piece (file order) and calls
// finish(); sizes that are not whole words are padded with zero bytes by the writer.
TEST_P(RepackTest, DeferredPiecesInFileOrder) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(100 + static_cast<uint64_t>(GetParam()));
  Case a = make_case(GetParam(), 21, 3, rng);
  const gguf::TensorInfo& t = *a.file->find_tensor("w");
  const gguf::TensorInfo& first = *a.file->find_tensor("first");
  runtime::WeightUpload::Options o;
  o.deferred = true;
  o.scratch_bytes = 600;
  o.chunk_limit = t.n_bytes / 2;
  runtime::WeightUpload upload(device(), o);
  const runtime::GpuMatrix m = runtime::upload_matrix(device(), *a.file, t);
  const gpu::Buffer f32 = runtime::upload_f32(device(), *a.file, first);
  const auto& pieces = upload.pieces();
  ASSERT_FALSE(pieces.empty());
  const std::string text = test::read_file(a.file->path());
  const std::vector<uint8_t> whole(text.begin(), text.end());
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (i) {
      EXPECT_GE(pieces[i].file_offset, pieces[i - 1].file_offset + pieces[i - 1].size);
    }
    std::vector<uint8_t> bytes(whole.begin() + pieces[i].file_offset,
                               whole.begin() + pieces[i].file_offset + pieces[i].size);
    bytes.resize((bytes.size() + 3) / 4 * 4, 0);
    device().write(pieces[i].dst, pieces[i].dst_offset, bytes);
    upload.finish(i);
  }
  expect_cpu_layout(a, m);
  EXPECT_EQ(download<float>(f32, 3), std::vector<float>(3, std::bit_cast<float>(0x07070707u)));
}

// q|k|v and gate|up are stacked by rows into one matrix (runtime::upload_stacked): on the GPU path, each
// tensor's pieces repack into its rows of the shared planes, which must equal quant::repack of the
// concatenated rows; also when the host streams the pieces itself (deferred). Tensors of another width, or
// whose blocks would start the next one at an odd block, are not stacked.
TEST_P(RepackTest, StackedEqualsCpuRepackOfTheConcatenation) {
  SCOPED_TRACE(test::seed_note());
  const TensorType type = GetParam();
  auto rng = test::rng(200 + static_cast<uint64_t>(type));
  const uint32_t col_blocks = 2, rows[] = {6, 4, 9};
  const uint64_t cols = uint64_t(col_blocks) * traits(type).block_elements;
  gguf::GgufWriter w;
  w.set_string("general.architecture", "test");
  w.add_tensor("first", TensorType::F32, {3}, std::vector<uint8_t>(12, 7));
  std::vector<uint8_t> all;
  for (size_t i = 0; i < std::size(rows); ++i) {
    std::vector<uint8_t> b = random_blocks(type, uint64_t(rows[i]) * col_blocks, rng);
    all.insert(all.end(), b.begin(), b.end());
    w.add_tensor("w" + std::to_string(i), type, {cols, rows[i]}, b);
  }
  w.add_tensor("wide", type, {2 * cols, 2}, random_blocks(type, 4 * col_blocks, rng));
  w.add_tensor("odd", type, {uint64_t(traits(type).block_elements), 3}, random_blocks(type, 3, rng));
  const std::string path = test::temp_dir() + "/stacked_" + std::string(gguf::type_name(type)) + ".gguf";
  w.write(path);
  const auto file = gguf::GgufFile::open(path);
  const gguf::TensorInfo* parts[] = {file->find_tensor("w0"), file->find_tensor("w1"),
                                     file->find_tensor("w2")};
  const quant::GpuLayout want = quant::repack(type, all.data(), 19, cols);
  auto expect_stacked = [&](const std::optional<runtime::GpuMatrix>& m) {
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->rows, 19u);
    ASSERT_EQ(m->chunks.size(), 1u);
    EXPECT_EQ(contents(m->chunks[0].quants), want.quants);
    EXPECT_EQ(contents(m->chunks[0].scales), want.scales);
  };
  {
    SCOPED_TRACE("GPU repack");
    runtime::WeightUpload upload(device(), {.gpu_repack = true, .scratch_bytes = 600});
    expect_stacked(runtime::upload_stacked(device(), *file, parts));
  }
  {
    SCOPED_TRACE("CPU repack");
    expect_stacked(runtime::upload_stacked(device(), *file, parts));
  }
  {
    SCOPED_TRACE("deferred");
    runtime::WeightUpload upload(device(), {.deferred = true, .scratch_bytes = 600});
    const std::optional<runtime::GpuMatrix> m = runtime::upload_stacked(device(), *file, parts);
    const std::string text = test::read_file(path);
    const auto& pieces = upload.pieces();
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::vector<uint8_t> bytes(text.begin() + pieces[i].file_offset,
                                 text.begin() + pieces[i].file_offset + pieces[i].size);
      bytes.resize((bytes.size() + 3) / 4 * 4, 0);
      device().write(pieces[i].dst, pieces[i].dst_offset, bytes);
      upload.finish(i);
    }
    expect_stacked(m);
  }
  const gguf::TensorInfo* wide[] = {parts[0], file->find_tensor("wide")};
  EXPECT_FALSE(runtime::upload_stacked(device(), *file, wide).has_value());
  if (quant::plane_layout(type)) {  // 3 blocks: the next tensor would start at an odd block
    const gguf::TensorInfo* odd[] = {file->find_tensor("odd"), file->find_tensor("odd")};
    EXPECT_FALSE(runtime::upload_stacked(device(), *file, odd).has_value());
  }
}

INSTANTIATE_TEST_SUITE_P(Types, RepackTest, ::testing::ValuesIn(kTypes),
                         [](const ::testing::TestParamInfo<TensorType>& info) {
                           return std::string(gguf::type_name(info.param));
                         });

// Load time of the two repack paths (docs/perf.md), not run by default:
//   WGLLM_REPACK_BENCH=llama-3-8b:q4_K kernels_tests --gtest_also_run_disabled_tests
//   --gtest_filter='*RepackSpeed*'
// Writes a random-weight model of a synthetic shape (any quantized type) and times uploading all of its
// tensors, from the mapped file to repacked GPU buffers, until the GPU has finished.
TEST(RepackSpeed, DISABLED_LoadTimeCpuVsGpu) {
  const char* spec = std::getenv("WGLLM_REPACK_BENCH");
  const std::string s = spec ? spec : "llama-3.2-1b:q4_0";
  const std::string shape_name = s.substr(0, s.find(':')), type_name = s.substr(s.find(':') + 1);
  const auto& shapes = model::synthetic_shapes();
  auto shape =
      std::find_if(shapes.begin(), shapes.end(), [&](const auto& x) { return x.name == shape_name; });
  ASSERT_NE(shape, shapes.end()) << shape_name;
  auto type = std::find_if(std::begin(kTypes), std::end(kTypes),
                           [&](TensorType t) { return gguf::type_name(t) == type_name; });
  ASSERT_NE(type, std::end(kTypes)) << type_name;

  auto rng = test::rng();
  gguf::GgufWriter w;
  w.set_string("general.architecture", "llama");
  auto matrix = [&](const std::string& name, uint64_t cols, uint64_t rows) {
    w.add_tensor(name, *type, {cols, rows},
                 random_blocks(*type, rows * cols / traits(*type).block_elements, rng));
  };
  auto vector = [&](const std::string& name, uint64_t n) {
    w.add_tensor(name, TensorType::F32, {n}, std::vector<uint8_t>(n * 4, 0x3f));
  };
  const uint64_t head_dim = shape->dim / shape->n_heads, kv = head_dim * shape->n_kv_heads;
  matrix("token_embd.weight", shape->dim, shape->n_vocab);
  for (uint32_t l = 0; l < shape->n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vector(p + "attn_norm.weight", shape->dim);
    matrix(p + "attn_q.weight", shape->dim, shape->dim);
    matrix(p + "attn_k.weight", shape->dim, kv);
    matrix(p + "attn_v.weight", shape->dim, kv);
    matrix(p + "attn_output.weight", shape->dim, shape->dim);
    vector(p + "ffn_norm.weight", shape->dim);
    matrix(p + "ffn_gate.weight", shape->dim, shape->ffn_dim);
    matrix(p + "ffn_up.weight", shape->dim, shape->ffn_dim);
    matrix(p + "ffn_down.weight", shape->ffn_dim, shape->dim);
  }
  vector("output_norm.weight", shape->dim);
  if (!shape->tied_output) matrix("output.weight", shape->dim, shape->n_vocab);
  const std::string path = test::temp_dir() + "/repack_speed.gguf";
  w.write(path);
  const auto file = gguf::GgufFile::open(path);
  std::printf("%s: %.2f GB of tensors on %s\n", s.c_str(), file->tensor_data_bytes() / 1e9,
              device().info().device.c_str());

  auto load = [&](bool gpu, uint64_t scratch) {
    std::optional<runtime::WeightUpload> upload;
    if (gpu)
      upload.emplace(device(), runtime::WeightUpload::Options{.gpu_repack = true, .scratch_bytes = scratch});
    const auto start = std::chrono::steady_clock::now();
    gpu::Buffer last;
    for (const gguf::TensorInfo& t : file->tensors())
      last = t.dims.size() == 1 ? runtime::upload_f32(device(), *file, t)
                                : runtime::upload_matrix(device(), *file, t).chunks.back().quants;
    const gpu::ReadTicket done = device().read(last, 0, 4);
    device().submit();
    device().wait(done);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  load(false, 0);  // pages the file in and compiles nothing: both paths then read from the page cache
  for (int rep = 0; rep < 2; ++rep) {
    std::printf("  cpu repack            %7.3f s\n", load(false, 0));
    for (uint64_t mib : {16, 64})
      std::printf("  gpu repack, %2llu MiB scratch %7.3f s\n", static_cast<unsigned long long>(mib),
                  load(true, mib << 20));
  }
}

}  // namespace
}  // namespace wgllm::kernels_test
