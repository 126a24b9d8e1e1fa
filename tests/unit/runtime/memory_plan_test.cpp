// The GPU memory check before a model is loaded (runtime/memory_plan.hpp), on a synthetic model written to
// a file: its size comes from the GGUF reader's own sum of the tensors, the KV cache from the
// hyperparameters, and a device deliberately smaller than that must be refused with both numbers in the
// message.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "model/llama.hpp"
#include "model/synthetic.hpp"
#include "runtime/memory_plan.hpp"
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
