// The GPU memory check before a model is loaded (runtime/memory_plan.hpp), on a synthetic model written to
// a file: its size comes from the GGUF reader's own sum of the tensors, the KV cache from the
// hyperparameters, split attention's partials from a hand count and from what Forward allocates, and a
// device deliberately smaller than that must be refused with both numbers in the message.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "model/llama.hpp"
#include "model/synthetic.hpp"
#include "runtime/forward.hpp"
#include "runtime/memory_plan.hpp"
#include "support/test_device.hpp"
#include "support/test_support.hpp"

namespace wgllm::runtime {
namespace {

struct Model {
  std::unique_ptr<gguf::GgufFile> file;
  model::LlamaConfig config;
};

// The "tiny" published shape (dim 256, 4 layers, 8 heads over 4 KV heads, ffn 640, vocab 1024) in Q8_0.
const Model& tiny() {
  static const Model m = [] {
    const std::string path = test::temp_dir() + "/tiny-q8_0.gguf";
    const auto [shape, type] = model::parse_synthetic("tiny:q8_0");
    model::synthetic_model(shape, type, 1).write(path);
    Model out{gguf::GgufFile::open(path), {}};
    out.config = model::LlamaConfig::from_gguf(*out.file);
    return out;
  }();
  return m;
}

std::string error_of(const MemoryPlan& plan, const DeviceMemory& device) {
  try {
    check_memory(plan, device, "tiny.gguf");
    return "";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    return e.what();
  }
}

TEST(MemoryPlan, CountsEveryWeightAndTheKvCache) {
  const Model& m = tiny();
  const MemoryPlan plan =
      plan_memory(*m.file, m.config, {.n_ctx = 512, .n_seq = 3, .max_batch = 64, .max_logits = 3});
  // The tensor data section of the file, less the padding that aligns each tensor.
  const uint64_t section = m.file->file_size() - m.file->data_offset();
  EXPECT_LE(plan.weights, section);
  EXPECT_GE(plan.weights, section - m.file->tensors().size() * m.file->alignment());
  EXPECT_EQ(plan.kv_cache,
            2ull * 4 * 3 * 512 * (4 * 32) * 4);  // K and V, layers, slots, positions, kv_dim, f32
  EXPECT_GT(plan.activations, 3ull * 1024 * 4);  // at least the logits rows
  EXPECT_EQ(plan.total(), plan.weights + plan.kv_cache + plan.activations);
}

// Spans of 128 keys up to 64 of them, then spans of whole 128-key tiles so that at most 64 cover the
// context.
TEST(MemoryPlan, AttentionSpansCoverTheContext) {
  const std::vector<std::pair<uint32_t, AttentionSpans>> cases = {
      {1, {128, 1}},     {128, {128, 1}},    {129, {128, 2}},    {4096, {128, 32}},  {8192, {128, 64}},
      {8193, {256, 33}}, {16385, {384, 43}}, {20000, {384, 53}}, {32768, {512, 64}}, {131072, {2048, 64}}};
  for (const auto& [n_ctx, want] : cases) {
    const AttentionSpans got = attention_spans(n_ctx);
    EXPECT_EQ(got.span, want.span) << n_ctx << " positions";
    EXPECT_EQ(got.count, want.count) << n_ctx << " positions";
  }
}

// Split attention's partials (Forward's "attention partials" buffer): 16 tokens (a pass attends in chunks
// of kMaxWidth) x 8 heads x spans x (head_dim 32, then max and sum) f32. Between two contexts of the same
// shape the activations differ only by the RoPE table (rope_dim 32 f32 per position) and the partials; one
// span has none.
TEST(MemoryPlan, CountsSplitAttentionsPartials) {
  const Model& m = tiny();
  ASSERT_EQ(m.config.n_heads, 8u);
  ASSERT_EQ(m.config.head_dim, 32u);
  ASSERT_EQ(m.config.rope_dim, 32u);
  auto activations = [&](uint32_t n_ctx) {
    return plan_memory(*m.file, m.config, {.n_ctx = n_ctx, .n_seq = 1, .max_batch = 16, .max_logits = 1})
        .activations;
  };
  auto rope = [](uint64_t n_ctx) { return n_ctx * 32 * 4; };
  EXPECT_EQ(activations(4096) - activations(128), rope(4096) - rope(128) + 16ull * 8 * 32 * 34 * 4);
  EXPECT_EQ(activations(129) - activations(128), rope(129) - rope(128) + 16ull * 8 * 2 * 34 * 4);
  EXPECT_EQ(activations(32768) - activations(128), rope(32768) - rope(128) + 16ull * 8 * 64 * 34 * 4);
  EXPECT_EQ(attention_partials_bytes(m.config, 128, 16), 0u);
  // Llama 3 8B's 32 heads of 128 at 64 spans: about 17 MB.
  model::LlamaConfig big = m.config;
  big.n_heads = 32;
  big.head_dim = 128;
  EXPECT_EQ(attention_partials_bytes(big, 32768, 16), 16ull * 32 * 64 * 130 * 4);
}

// What Forward allocates: a context of 4096 (32 spans) takes as many more bytes of the device than one of
// 128 (one span, no partials) as the plan says (KV cache, RoPE table, partials).
TEST(MemoryPlan, ForwardAllocatesWhatThePlanAddsForALongerContext) {
  const Model& m = tiny();
  gpu::Device& device = test::test_device();
  auto allocated = [&](uint32_t n_ctx) {
    const uint64_t before = device.allocated_bytes();
    Forward forward(device, *m.file, ForwardOptions{.n_ctx = n_ctx, .max_batch = 16, .max_logits = 1});
    return device.allocated_bytes() - before;
  };
  auto planned = [&](uint32_t n_ctx) {
    return plan_memory(*m.file, m.config, {.n_ctx = n_ctx, .n_seq = 1, .max_batch = 16, .max_logits = 1})
        .total();
  };
  const uint64_t short_context = allocated(128);
  EXPECT_EQ(allocated(4096) - short_context, planned(4096) - planned(128));
}

TEST(MemoryPlan, ADeviceSmallerThanTheModelIsRefusedWithBothSizes) {
  const Model& m = tiny();
  const MemoryPlan plan =
      plan_memory(*m.file, m.config, {.n_ctx = 256, .n_seq = 1, .max_batch = 32, .max_logits = 1});
  const uint64_t available = plan.total() - 1;
  const std::string msg = error_of(plan, {.max_buffer_size = 1ull << 30, .memory_bytes = available});
  for (const std::string& part :
       std::vector<std::string>{"tiny.gguf: the model needs", std::to_string(plan.total()) + " bytes",
                                "weights", std::to_string(plan.weights) + " bytes", "KV cache",
                                "the device has", std::to_string(available) + " bytes", "256 positions x 1"})
    EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;

  EXPECT_EQ(error_of(plan, {.max_buffer_size = 1ull << 30, .memory_bytes = plan.total()}), "");
  EXPECT_EQ(error_of(plan, {.max_buffer_size = 1ull << 30, .memory_bytes = 0}), "");  // unknown: not checked
}

TEST(MemoryPlan, ALongerContextOutgrowsTheSameDevice) {
  const Model& m = tiny();
  const DeviceMemory device{.max_buffer_size = 1ull << 30, .memory_bytes = 8ull << 20};  // 8 MiB
  EXPECT_EQ(
      error_of(plan_memory(*m.file, m.config, {.n_ctx = 256, .n_seq = 1, .max_batch = 32, .max_logits = 1}),
               device),
      "");
  // 16 slots x 4096 positions: 2 * 4 layers * 16 * 4096 * 128 * 4 bytes = 256 MiB of KV cache.
  EXPECT_NE(error_of(plan_memory(*m.file, m.config,
                                 {.n_ctx = 4096, .n_seq = 16, .max_batch = 32, .max_logits = 16}),
                     device)
                .find("KV cache 256.0 MiB (268435456 bytes)"),
            std::string::npos);
}

TEST(MemoryPlan, ABufferBeyondMaxBufferSizeIsRefused) {
  const Model& m = tiny();
  const MemoryPlan plan =
      plan_memory(*m.file, m.config, {.n_ctx = 4096, .n_seq = 2, .max_batch = 32, .max_logits = 2});
  // One layer's K cache: 2 slots * 4096 positions * 128 * 4 bytes = 4 MiB.
  const std::string msg = error_of(plan, {.max_buffer_size = 1ull << 20, .memory_bytes = 0});
  EXPECT_NE(msg.find("one GPU buffer of the model needs 4.0 MiB (4194304 bytes)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("maxBufferSize"), std::string::npos) << msg;
}

}  // namespace
}  // namespace wgllm::runtime
