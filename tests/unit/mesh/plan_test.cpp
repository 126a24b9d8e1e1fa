// The stage plan: layer splits from memory shares and from --split, the fit check, and the sizes read from
// a real model file. Expected splits are worked out by hand from the byte targets.
#include <gtest/gtest.h>

#include <numeric>

#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "mesh/plan.hpp"
#include "model/llama.hpp"
#include "support/test_support.hpp"

namespace wgllm::mesh {
namespace {

ModelSizes uniform(uint32_t layers, uint64_t layer_bytes, uint64_t embedding = 0, uint64_t head = 0) {
  ModelSizes s;
  s.layer_bytes.assign(layers, layer_bytes);
  s.embedding_bytes = embedding;
  s.head_bytes = head;
  return s;
}

std::vector<Peer> peers(std::vector<uint64_t> memory) {
  std::vector<Peer> out;
  for (size_t i = 0; i < memory.size(); ++i)
    out.push_back({"rank " + std::to_string(i) + " on host" + std::to_string(i), "gpu", "vulkan", memory[i]});
  return out;
}

std::vector<uint32_t> counts(const std::vector<Stage>& stages) {
  std::vector<uint32_t> out;
  for (const Stage& s : stages) out.push_back(s.last_layer - s.first_layer);
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(MeshPlan, EqualMemorySplitsEqualLayersEvenly) {
  EXPECT_EQ(counts(plan_stages(uniform(6, 100), peers({1000, 1000}))), (std::vector<uint32_t>{3, 3}));
  EXPECT_EQ(counts(plan_stages(uniform(9, 100), peers({1000, 1000, 1000}))),
            (std::vector<uint32_t>{3, 3, 3}));
}

TEST(MeshPlan, MemorySharesSetTheSplit) {
  // 9 x 100 bytes, memory 2:1: targets 600 and 900 -> 6 and 3 layers.
  EXPECT_EQ(counts(plan_stages(uniform(9, 100), peers({2000, 1000}))), (std::vector<uint32_t>{6, 3}));
  // Unknown memory anywhere: equal shares.
  EXPECT_EQ(counts(plan_stages(uniform(8, 100), peers({2000, 0}))), (std::vector<uint32_t>{4, 4}));
}

TEST(MeshPlan, EmbeddingsAndHeadCountOnTheirStages) {
  // Total 400 (embeddings) + 8 x 100 + 0 = 1200; the first target, 600, is reached after 2 layers.
  EXPECT_EQ(counts(plan_stages(uniform(8, 100, 400), peers({1000, 1000}))), (std::vector<uint32_t>{2, 6}));
  // Head of 400 on the last stage: 1200 total, target 600 after 6 layers.
  EXPECT_EQ(counts(plan_stages(uniform(8, 100, 0, 400), peers({1000, 1000}))), (std::vector<uint32_t>{6, 2}));
}

TEST(MeshPlan, EveryStageKeepsALayer) {
  // A huge first-stage share still leaves one layer to each later stage.
  EXPECT_EQ(counts(plan_stages(uniform(3, 100), peers({1000000, 1000, 1000}))),
            (std::vector<uint32_t>{1, 1, 1}));
  EXPECT_NE(error_of([] {
              plan_stages(uniform(2, 100), peers({1000, 1000, 1000}));
            }).find("at most one stage per layer"),
            std::string::npos);
}

TEST(MeshPlan, StageBytesAddUp) {
  ModelSizes s = uniform(4, 100, 50, 70);
  s.shared_bytes = 5;
  s.kv_bytes_per_layer = 10;
  const std::vector<Stage> stages = plan_stages(s, peers({0, 0}), std::vector<uint32_t>{1, 3});
  EXPECT_EQ(stages[0].first_layer, 0u);
  EXPECT_EQ(stages[0].last_layer, 1u);
  EXPECT_EQ(stages[1].first_layer, 1u);
  EXPECT_EQ(stages[1].last_layer, 4u);
  EXPECT_EQ(stages[0].weight_bytes, 5u + 100 + 50);
  EXPECT_EQ(stages[1].weight_bytes, 5u + 300 + 70);
  EXPECT_EQ(stages[0].kv_bytes, 10u);
  EXPECT_EQ(stages[1].kv_bytes, 30u);
}

TEST(MeshPlan, SplitFlag) {
  EXPECT_EQ(parse_split("10,6"), (std::vector<uint32_t>{10, 6}));
  EXPECT_EQ(counts(plan_stages(uniform(16, 100), peers({0, 0}), parse_split("10,6"))),
            (std::vector<uint32_t>{10, 6}));
  for (const char* bad : {"", "10,", ",6", "10,,6", "a", "0,16", "-1,17", "1.5", "99999999999"})
    EXPECT_NE(error_of([&] { parse_split(bad); }).find("--split"), std::string::npos) << bad;
  EXPECT_NE(error_of([] {
              plan_stages(uniform(16, 100), peers({0, 0}), std::vector<uint32_t>{10, 5});
            }).find("covers 15 layers but the model has 16"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              plan_stages(uniform(16, 100), peers({0, 0}), std::vector<uint32_t>{16});
            }).find("gives 1 stages but the mesh has 2"),
            std::string::npos);
}

TEST(MeshPlan, AStageThatDoesNotFitIsNamed) {
  const std::string e = error_of([] {
    plan_stages(uniform(4, 1 << 20), peers({3 << 20, 1 << 20}), std::vector<uint32_t>{2, 2});
  });
  EXPECT_NE(
      e.find("stage 1 (rank 1 on host1, gpu) needs 2.00 MiB for layers 2-3 but its device has 1.00 MiB"),
      std::string::npos)
      << e;
}

TEST(MeshPlan, SizesOfStories260K) {
  auto file = gguf::GgufFile::open(test::source_path("models/stories260K.gguf"));
  const model::LlamaConfig c = model::LlamaConfig::from_gguf(*file);
  const ModelSizes s = model_sizes(*file, c, 256, 2);
  ASSERT_EQ(s.layer_bytes.size(), c.n_layers);
  // Every layer of this model has the same tensors.
  for (uint64_t b : s.layer_bytes) EXPECT_EQ(b, s.layer_bytes[0]);
  const uint64_t layers = std::accumulate(s.layer_bytes.begin(), s.layer_bytes.end(), uint64_t(0));
  const uint64_t tied = c.tied_output ? s.embedding_bytes : 0;  // the head reuses the embeddings
  EXPECT_EQ(layers + s.embedding_bytes + s.head_bytes + s.shared_bytes - tied, file->tensor_data_bytes());
  EXPECT_EQ(s.kv_bytes_per_layer, 2ull * 2 * 256 * c.kv_dim() * 4);
  const std::vector<Stage> stages = plan_stages(s, peers({0, 0}));
  const std::string text = describe_plan(stages, peers({0, 0}), "stories260K.gguf", c);
  EXPECT_NE(text.find("mesh: 2 stages for stories260K.gguf (5 layers, dim 64)"), std::string::npos) << text;
  EXPECT_NE(text.find("stage 1: rank 1 on host1, gpu (vulkan): layers "), std::string::npos) << text;
}

}  // namespace
}  // namespace wgllm::mesh
