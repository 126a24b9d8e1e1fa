// attention_prefill.wgsl against a float64 CPU reference over passes of one slot's tokens, the same bits
// whatever block a row falls in, and its block size against the workgroup memory.
#include <numeric>

#include "attention_fixtures.hpp"
#include "kernels/attention.hpp"

namespace wgllm::kernels_test {
namespace {

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

}  // namespace
}  // namespace wgllm::kernels_test
