// Whole models in the GPU-read quantized types: synthetic llamas in llama.cpp's mixes (quant/mix.hpp:
// K-quants of several kinds in one file) and in a hand-picked mix of every other type, GPU logits against the
// float64 CPU reference; the GPU memory that holds the weights against the file's tensor bytes; types no
// kernel reads as clear errors; stories260K quantized by `wgllm quantize` generating the reference's greedy
// text on the GPU.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>

#include "core/error.hpp"
#include "cpu/reference_model.hpp"
#include "quant/mix.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/cli/wgllm_process.hpp"
#include "unit/runtime/runtime_fixtures.hpp"

namespace wgllm::runtime {
namespace {

using gguf::TensorType;
using T = gguf::TensorType;
using ::testing::AllOf;
using ::testing::HasSubstr;

// runtime_fixtures' model with every matrix dimension a multiple of 256 (K-quant super-blocks).
test::TinyLlamaShape shape() {
  test::TinyLlamaShape s = test::model_shape(TensorType::F32);
  s.ffn_dim = 512;
  return s;
}

// The F32 model `m` with each tensor stored as `types` says (the others stay F32).
void requantize(test::TinyLlama& m, const gguf::GgufFile& f32_file,
                const std::map<std::string, TensorType>& types) {
  for (const gguf::TensorInfo& t : f32_file.tensors()) {
    auto it = types.find(t.name);
    if (it == types.end() || it->second == TensorType::F32) continue;
    m.add_values(t.name, it->second, t.dims, test::floats_of(m.bytes(t.name)));
  }
}

// The types llama.cpp's mix `ftype` gives each tensor of `file`.
std::map<std::string, TensorType> mix_types(quant::FileType ftype, const gguf::GgufFile& file) {
  const std::vector<quant::TensorChoice> choices =
      quant::choose_types(ftype, quant::model_info(file), file.tensors());
  std::map<std::string, TensorType> types;
  for (size_t i = 0; i < choices.size(); ++i) types[file.tensors()[i].name] = choices[i].type;
  return types;
}

// Every GPU-read type besides the K-quants, one per matrix kind (and both embedding types), in one file.
std::map<std::string, TensorType> hand_mix(const gguf::GgufFile& file) {
  const std::map<std::string, TensorType> by_kind = {
      {"token_embd", TensorType::Q5_1}, {"output", TensorType::BF16}, {"attn_q", TensorType::Q4_1},
      {"attn_k", TensorType::Q5_0},     {"attn_v", TensorType::Q8_0}, {"attn_output", TensorType::BF16},
      {"ffn_gate", TensorType::Q4_0},   {"ffn_up", TensorType::Q5_1}, {"ffn_down", TensorType::Q4_1}};
  std::map<std::string, TensorType> types;
  for (const gguf::TensorInfo& t : file.tensors()) {
    for (const auto& [kind, type] : by_kind)
      if (t.name == kind + ".weight" || t.name.ends_with("." + kind + ".weight")) types[t.name] = type;
  }
  return types;
}

struct Mix {
  std::string name;
  bool subgroups;              // one kernel variant per mix: the kernel tests run every type under both
  std::set<TensorType> types;  // what the file must hold, so that the mixes together cover every GPU type
};

std::set<TensorType> types_of(const gguf::GgufFile& file) {
  std::set<TensorType> types;
  for (const gguf::TensorInfo& t : file.tensors()) types.insert(t.type);
  return types;
}

class MixedTypes : public ::testing::TestWithParam<Mix> {
 protected:
  // The runtime-fixtures model (same weights for every mix) in this test's mix; made once per mix.
  const gguf::GgufFile& model() {
    static std::map<std::string, std::unique_ptr<gguf::GgufFile>> files;
    const std::string& mix = GetParam().name;
    auto& file = files[mix];
    if (!file) {
      test::TinyLlama m(shape(), 1000);
      auto f32 = m.open("mix-f32.gguf");
      requantize(m, *f32, mix == "hand" ? hand_mix(*f32) : mix_types(*quant::parse_file_type(mix), *f32));
      file = m.open("mix-" + mix + ".gguf");
    }
    return *file;
  }
};

TEST_P(MixedTypes, LogitsMatchTheReference) {
  SCOPED_TRACE(test::seed_note());
  const gguf::GgufFile& file = model();
  ASSERT_EQ(types_of(file), GetParam().types);
  std::vector<int32_t> tokens = test::random_tokens(8, shape().n_vocab, 11);
  tokens[5] = tokens[1];
  const auto want = cpu::ReferenceModel(file).forward(tokens);
  // f32 GEMV inputs, the reference's arithmetic (forward_test's expect_matches_reference says why).
  const auto got = test::gpu_logits(
      file, tokens, ForwardOptions{.use_subgroups = GetParam().subgroups, .int8_activations = false});
  ASSERT_EQ(got.size(), want.size());
  for (size_t p = 0; p < tokens.size(); ++p)
    EXPECT_LE(test::relative_error(got[p], want[p]), 1e-3)
        << "position " << p << " (token " << tokens[p] << ")";
}

// GPU memory for weights stays the file's size (planar repacking, no f32 copies).
TEST_P(MixedTypes, WeightsTakeTheFileSizeOnTheGpu) {
  const gguf::GgufFile& file = model();
  uint64_t tensor_bytes = 0;
  for (const gguf::TensorInfo& t : file.tensors()) tensor_bytes += t.n_bytes;
  const uint64_t before = test::device().allocated_bytes();
  Forward forward(test::device(), file, ForwardOptions{.use_subgroups = GetParam().subgroups});
  EXPECT_EQ(forward.weight_bytes(), tensor_bytes);
  EXPECT_GE(forward.weight_gpu_bytes(), tensor_bytes);
  EXPECT_LE(forward.weight_gpu_bytes(), tensor_bytes * 1.02);
  EXPECT_GE(test::device().allocated_bytes() - before, forward.weight_gpu_bytes());
}

INSTANTIATE_TEST_SUITE_P(
    Mixes, MixedTypes,
    ::testing::Values(Mix{"q4_k_m", true, {T::F32, T::Q4_K, T::Q6_K}},
                      Mix{"q5_k_m", false, {T::F32, T::Q5_K, T::Q6_K}},
                      Mix{"q2_k", true, {T::F32, T::Q2_K, T::Q3_K, T::Q6_K}},
                      Mix{"q6_k", false, {T::F32, T::Q6_K}},
                      Mix{"hand", true, {T::F32, T::BF16, T::Q8_0, T::Q4_0, T::Q4_1, T::Q5_0, T::Q5_1}}),
    [](const auto& info) { return info.param.name; });

// A file in a type that no GPU kernel reads: the error names the file, the tensor and the type, whether the
// model layer or the GPU upload finds it.
TEST(UnsupportedTypes, AreBadInputNamingTensorAndType) {
  for (TensorType type :
       {TensorType::IQ4_NL, TensorType::IQ2_XXS, TensorType::TQ2_0, TensorType::MXFP4, TensorType::Q8_K}) {
    const auto traits = *gguf::type_traits(static_cast<uint32_t>(type));
    SCOPED_TRACE(std::string(traits.name));
    test::TinyLlama m(shape(), 1100);
    const uint64_t bytes =
        uint64_t(shape().ffn_dim) * shape().dim / traits.block_elements * traits.block_bytes;
    m.add_bytes("blk.1.ffn_up.weight", type, {shape().dim, shape().ffn_dim}, std::vector<uint8_t>(bytes, 0));
    auto file = m.open("unsupported.gguf");
    const auto matches = AllOf(HasSubstr("unsupported.gguf"), HasSubstr("blk.1.ffn_up.weight"),
                               HasSubstr(std::string(traits.name)));
    try {
      Forward forward(test::device(), *file);
      ADD_FAILURE() << "expected Error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_THAT(e.what(), matches);
    }
    try {
      upload_matrix(test::device(), *file, *file->find_tensor("blk.1.ffn_up.weight"));
      ADD_FAILURE() << "expected Error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_THAT(e.what(), matches);
    }
  }
}

// stories260K through `wgllm quantize ... q8_0` (q8_0 matrices, f16 ffn_down: its rows of 172 hold no
// whole q8_0 block): 200 greedy tokens after BOS on the GPU are the CPU reference's on the same file, with
// the GEMV's f32 inputs (int8 ones change the text after ~60 tokens, still a story: batch_test's
// Int8Activations bounds their logits).
TEST(QuantizedStories, GpuGreedyTextIsTheReferences) {
  const std::string path = test::temp_dir() + "/stories260K-q8_0.gguf";
  const test::Process q =
      test::run_wgllm({"quantize", test::source_path("models/stories260K.gguf"), path, "q8_0"});
  ASSERT_EQ(q.exit_code, 0) << q.command << "\n" << q.err;
  auto file = gguf::GgufFile::open(path);
  auto tok = tokenizer::Tokenizer::from_gguf(*file);
  const std::vector<int32_t> prompt = {tok->vocab().bos};
  constexpr int kTokens = 200;

  cpu::ReferenceModel reference(*file);
  std::vector<int32_t> want;
  std::vector<double> logits = reference.forward(prompt).back();
  for (int i = 0; i < kTokens; ++i) {
    want.push_back(static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    if (i + 1 < kTokens) logits = reference.step(want.back());
  }

  Forward forward(test::device(), *file, ForwardOptions{.int8_activations = false});
  Session session(forward, SamplingParams{.temperature = 0});
  std::vector<gpu::ReadTicket> tickets = {session.prefill(prompt)};
  for (int i = 1; i < kTokens; ++i) tickets.push_back(session.step());
  std::vector<int32_t> got;
  for (gpu::ReadTicket t : tickets) got.push_back(session.id_of(t));

  EXPECT_EQ(tok->decode(got), tok->decode(want));
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace wgllm::runtime
