// The messages between stages: what goes in comes out, the sizes are the traffic docs/mesh.md tabulates,
// and a malformed message is an Error naming its sender, never a crash. Also the flags' parsers and the
// choice of a rank's GPU on hosts with several.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "mesh/mesh.hpp"
#include "mesh/protocol.hpp"

namespace wgllm::mesh {
namespace {

using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& f, ErrorKind kind) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

Pass sample_pass() {
  Pass p;
  p.id = 7;
  p.tokens = {{3, 10, 42, false}, {3, 11, 43, true}, {1, 5, 9, true}};
  runtime::SamplingParams s;
  s.temperature = 0.5f;
  s.top_k = 7;
  s.seed = 1234;
  s.presence_penalty = 0.25f;
  p.sampling = {{s, 4}, {runtime::SamplingParams{}, 0}};
  p.histories = {{3, {1, 2, 3, 42}}, {1, {}}};
  p.hidden.resize(3 * 8 * 4);
  for (size_t i = 0; i < p.hidden.size(); ++i) p.hidden[i] = static_cast<uint8_t>(i * 7);
  return p;
}

TEST(MeshProtocol, PassesAndResultsSurviveTheWire) {
  const Pass p = sample_pass();
  const Pass q = decode_pass(encode(p), "stage 0");
  EXPECT_EQ(q.kind, Pass::kRun);
  EXPECT_EQ(q.id, 7u);
  ASSERT_EQ(q.tokens.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(q.tokens[i].slot, p.tokens[i].slot);
    EXPECT_EQ(q.tokens[i].pos, p.tokens[i].pos);
    EXPECT_EQ(q.tokens[i].id, p.tokens[i].id);
    EXPECT_EQ(q.tokens[i].logits, p.tokens[i].logits);
  }
  ASSERT_EQ(q.sampling.size(), 2u);
  EXPECT_EQ(q.sampling[0].params.temperature, 0.5f);
  EXPECT_EQ(q.sampling[0].params.top_k, 7);
  EXPECT_EQ(q.sampling[0].params.seed, 1234u);
  EXPECT_EQ(q.sampling[0].params.presence_penalty, 0.25f);
  EXPECT_EQ(q.sampling[0].sample_index, 4u);
  EXPECT_EQ(q.sampling[1].params.top_p, runtime::SamplingParams{}.top_p);
  ASSERT_EQ(q.histories.size(), 2u);
  EXPECT_EQ(q.histories[0].slot, 3u);
  EXPECT_EQ(q.histories[0].tokens, (std::vector<int32_t>{1, 2, 3, 42}));
  EXPECT_TRUE(q.histories[1].tokens.empty());
  EXPECT_EQ(q.hidden, p.hidden);

  Result r;
  r.id = 9;
  r.ids = {5, 6};
  const Result s = decode_result(encode(r), "stage 2");
  EXPECT_EQ(s.kind, Result::kIds);
  EXPECT_EQ(s.id, 9u);
  EXPECT_EQ(s.ids, r.ids);
  r.kind = Result::kLogits;
  r.ids.clear();
  r.logits = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(decode_result(encode(r), "stage 2").logits, r.logits);
}

// docs/mesh.md, "Traffic per token per hop": one decode token of stories260K (dim 64) between stages is
// 32 + 16 + 40 + 4 x 64 = 344 bytes, its id back to rank 0 16 + 4 = 20; a prompt token 16 + 4 x dim.
TEST(MeshProtocol, SizesAreTheDocumentedTraffic) {
  Pass decode;
  decode.tokens = {{0, 5, 1, true}};
  decode.sampling = {{}};
  decode.hidden.resize(64 * 4);
  EXPECT_EQ(encode(decode).size(), 344u);
  Result id;
  id.ids = {1};
  EXPECT_EQ(encode(id).size(), 20u);
  Pass prompt;
  for (uint32_t i = 0; i < 10; ++i) prompt.tokens.push_back({0, i, 1, false});
  prompt.hidden.resize(10 * 4096 * 4);
  EXPECT_EQ(encode(prompt).size(), 32u + 10 * (16 + 4 * 4096));
  prompt.histories = {{0, std::vector<int32_t>(10, 1)}};
  EXPECT_EQ(encode(prompt).size(), 32u + 10 * (16 + 4 * 4096) + 8 + 40);
  // Llama-3-8B (dim 4096) and -70B (8192): the table's decode figures.
  decode.hidden.resize(4096 * 4);
  EXPECT_EQ(encode(decode).size(), 16472u);
  decode.hidden.resize(8192 * 4);
  EXPECT_EQ(encode(decode).size(), 32856u);
}

TEST(MeshProtocol, MalformedMessagesAreErrorsNamingTheSender) {
  const std::vector<uint8_t> good = encode(sample_pass());
  for (size_t cut : {size_t(0), size_t(5), size_t(31), size_t(40), good.size() - 1}) {
    const std::string e =
        error_of([&] { decode_pass(std::span<const uint8_t>(good.data(), cut), "stage 1 (rank 1 on b)"); },
                 ErrorKind::Runtime);
    EXPECT_THAT(e, HasSubstr("malformed pass from stage 1 (rank 1 on b)"));
    EXPECT_THAT(e, HasSubstr("ends early"));
  }
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_THAT(error_of([&] { decode_pass(longer, "x"); }, ErrorKind::Runtime), HasSubstr("1 bytes follow"));
  std::vector<uint8_t> kind = good;
  kind[0] = 9;
  EXPECT_THAT(error_of([&] { decode_pass(kind, "x"); }, ErrorKind::Runtime), HasSubstr("unknown kind 9"));
  std::vector<uint8_t> huge = good;  // a token count far beyond the bytes: refused before allocating
  huge[8] = huge[9] = huge[10] = huge[11] = 0xff;
  EXPECT_THAT(error_of([&] { decode_pass(huge, "x"); }, ErrorKind::Runtime), HasSubstr("ends early"));
  std::vector<uint8_t> rows = good;  // the first token asks for logits too: 2 sampling rows for 3 logits rows
  rows[32 + 12] = 1;
  EXPECT_THAT(error_of([&] { decode_pass(rows, "x"); }, ErrorKind::Runtime), HasSubstr("sampling rows"));
  std::vector<uint8_t> history = good;  // a history longer than the header's total
  history[32 + 3 * 16 + 2 * 40 + 4] = 200;
  EXPECT_THAT(error_of([&] { decode_pass(history, "x"); }, ErrorKind::Runtime), HasSubstr("histories"));
  Result r;
  r.ids = {1, 2};
  std::vector<uint8_t> result = encode(r);
  result.pop_back();
  EXPECT_THAT(error_of([&] { decode_result(result, "stage 2"); }, ErrorKind::Runtime),
              HasSubstr("malformed result from stage 2"));
}

TEST(MeshFlags, DevicesParse) {
  EXPECT_EQ(parse_devices("0,1"), (std::vector<int>{0, 1}));
  EXPECT_EQ(parse_devices("2,2,0"), (std::vector<int>{2, 2, 0}));
  for (const char* bad : {"", "1,", "a", "-1", "1,,2", "99999"})
    EXPECT_THAT(error_of([&] { parse_devices(bad); }, ErrorKind::BadInput), HasSubstr("--devices"));
}

gpu::AdapterReport adapter(const char* backend, const char* type) {
  gpu::AdapterReport r;
  r.info.backend = backend;
  r.info.adapter_type = type;
  return r;
}

// Adapters numbered as `wgllm devices` does: per backend (Vulkan first), GPUs before software ones.
TEST(MeshGpuChoice, RanksOfAHostTakeItsGpusInTurn) {
  const std::vector<gpu::AdapterReport> two_gpus = {
      adapter("vulkan", "discrete GPU"), adapter("vulkan", "discrete GPU"), adapter("vulkan", "CPU"),
      adapter("opengles", "unknown"), adapter("opengles", "unknown")};
  for (gpu::Backend b : {gpu::Backend::Default, gpu::Backend::Vulkan}) {
    EXPECT_EQ(adapter_for_local_rank(two_gpus, b, 0), 0);
    EXPECT_EQ(adapter_for_local_rank(two_gpus, b, 1), 1);
    EXPECT_EQ(adapter_for_local_rank(two_gpus, b, 2), 0);
    EXPECT_EQ(adapter_for_local_rank(two_gpus, b, 3), 1);
  }
  // No GPU among OpenGL ES adapters: the best one.
  EXPECT_EQ(adapter_for_local_rank(two_gpus, gpu::Backend::OpenGL, 1), -1);
  // One GPU, or only software: every rank the best adapter.
  const std::vector<gpu::AdapterReport> one_gpu = {adapter("vulkan", "integrated GPU"),
                                                   adapter("vulkan", "CPU")};
  EXPECT_EQ(adapter_for_local_rank(one_gpu, gpu::Backend::Default, 1), -1);
  const std::vector<gpu::AdapterReport> software = {adapter("vulkan", "CPU"), adapter("opengles", "unknown")};
  EXPECT_EQ(adapter_for_local_rank(software, gpu::Backend::Default, 0), -1);
  EXPECT_EQ(adapter_for_local_rank(software, gpu::Backend::Default, 1), -1);
  // GPUs only through OpenGL ES: numbered after the Vulkan adapters, or among OpenGL's alone with --backend
  // gl.
  const std::vector<gpu::AdapterReport> gl = {adapter("vulkan", "CPU"), adapter("opengles", "discrete GPU"),
                                              adapter("opengles", "discrete GPU")};
  EXPECT_EQ(adapter_for_local_rank(gl, gpu::Backend::Default, 1), 2);
  EXPECT_EQ(adapter_for_local_rank(gl, gpu::Backend::OpenGL, 1), 1);
  EXPECT_EQ(adapter_for_local_rank(gl, gpu::Backend::Vulkan, 1), -1);
}

}  // namespace
}  // namespace wgllm::mesh
