// attention.wgsl against a float64 CPU reference, over passes of several tokens of different slots and
// positions: causal attention of each token over its slot's positions with GQA, split over spans and merged,
// sliding windows and chunks, never reading rows after pos or of other slots, and independent of the other
// tokens of the pass (bit for bit).
#include "kernels/attention.hpp"
#include "attention_fixtures.hpp"

namespace wgllm::kernels_test {
namespace {

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

WGLLM_KERNEL_VARIANTS(Attention);

}  // namespace
}  // namespace wgllm::kernels_test
