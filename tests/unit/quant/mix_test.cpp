// llama.cpp's quantization mixes: the per-tensor types llama_model_quantize chose for stories260K and a
// synthetic llama (testdata/ggml-quants/*.txt, recorded from llama.cpp itself), and the rules of
// llama-quant.cpp that those two models do not reach (MoE, 70B, falcon, tied embeddings), each written out
// by hand from the rule.
#include "quant/mix.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "core/error.hpp"
#include "gguf/gguf_writer.hpp"
#include "support/test_support.hpp"

namespace wgllm::quant {
namespace {

using gguf::TensorType;
using ::testing::HasSubstr;

gguf::TensorInfo tensor(const std::string& name, std::vector<uint64_t> dims,
                        TensorType type = TensorType::F16) {
  gguf::TensorInfo t;
  t.name = name;
  t.dims = std::move(dims);
  t.type = type;
  t.n_elements = 1;
  for (uint64_t d : t.dims) t.n_elements *= d;
  return t;
}

// A llama-shaped tensor list: token_embd, per layer norms and the seven matrices, output norm and matrix.
std::vector<gguf::TensorInfo> llama_tensors(int n_layer, uint64_t dim, uint64_t kv_dim, uint64_t ff,
                                            bool output) {
  std::vector<gguf::TensorInfo> v{tensor("token_embd.weight", {dim, 32000})};
  for (int l = 0; l < n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    v.push_back(tensor(p + "attn_norm.weight", {dim}, TensorType::F32));
    v.push_back(tensor(p + "attn_q.weight", {dim, dim}));
    v.push_back(tensor(p + "attn_k.weight", {dim, kv_dim}));
    v.push_back(tensor(p + "attn_v.weight", {dim, kv_dim}));
    v.push_back(tensor(p + "attn_output.weight", {dim, dim}));
    v.push_back(tensor(p + "ffn_norm.weight", {dim}, TensorType::F32));
    v.push_back(tensor(p + "ffn_gate.weight", {dim, ff}));
    v.push_back(tensor(p + "ffn_up.weight", {dim, ff}));
    v.push_back(tensor(p + "ffn_down.weight", {ff, dim}));
  }
  v.push_back(tensor("output_norm.weight", {dim}, TensorType::F32));
  if (output) v.push_back(tensor("output.weight", {dim, 32000}));
  return v;
}

std::map<std::string, TensorType> by_name(const std::vector<gguf::TensorInfo>& ts,
                                          const std::vector<TensorChoice>& cs) {
  std::map<std::string, TensorType> m;
  for (size_t i = 0; i < ts.size(); ++i) m[ts[i].name] = cs[i].type;
  return m;
}

std::string layer_name(int l, const char* what) {
  return "blk." + std::to_string(l) + "." + what + ".weight";
}

TEST(Mix, FileTypeNames) {
  EXPECT_EQ(parse_file_type("Q4_K_M"), FileType::Q4_K_M);
  EXPECT_EQ(parse_file_type("q8_0"), FileType::Q8_0);
  EXPECT_EQ(parse_file_type("q6_k"), FileType::Q6_K);
  EXPECT_EQ(parse_file_type("q4_k"), std::nullopt);
  EXPECT_EQ(parse_file_type("iq2_xxs"), std::nullopt);
  EXPECT_EQ(file_type_names(), "q8_0, q4_0, q4_k_m, q5_k_m, q6_k, q2_k");
  EXPECT_EQ(static_cast<uint32_t>(FileType::Q4_K_M), 15u);  // LLAMA_FTYPE_MOSTLY_Q4_K_M
  EXPECT_EQ(base_type(FileType::Q5_K_M), TensorType::Q5_K);
}

// The types llama.cpp chose, from the records gen_reference.cpp wrote ("name type hash" lines).
std::map<std::string, TensorType> recorded_types(const std::string& file) {
  std::istringstream in(test::read_file(test::testdata_path("ggml-quants/" + file)));
  std::map<std::string, TensorType> m;
  std::string line;
  std::getline(in, line);  // general.file_type
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string name;
    uint32_t type;
    l >> name >> type;
    m[name] = static_cast<TensorType>(type);
  }
  return m;
}

TEST(Mix, MatchesLlamaCppOnRecordedModels) {
  for (const char* model : {"stories260K", "synthetic-llama"}) {
    const std::string path = std::string(model) == "stories260K"
                                 ? test::source_path("models/stories260K.gguf")
                                 : test::testdata_path("ggml-quants/synthetic-llama.gguf");
    const auto file = gguf::GgufFile::open(path);
    for (const char* ft : {"q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k", "q2_k"}) {
      SCOPED_TRACE(std::string(model) + " " + ft);
      const std::vector<TensorChoice> c =
          choose_types(*parse_file_type(ft), model_info(*file), file->tensors());
      EXPECT_EQ(by_name(file->tensors(), c), recorded_types(std::string(model) + "." + ft + ".txt"));
    }
  }
}

TEST(Mix, ModelInfoFromMetadata) {
  const auto synthetic = gguf::GgufFile::open(test::testdata_path("ggml-quants/synthetic-llama.gguf"));
  const ModelInfo m = model_info(*synthetic);
  EXPECT_EQ(m.arch, "llama");
  EXPECT_EQ(m.n_layer, 8u);
  EXPECT_EQ(m.n_head, 4u);
  EXPECT_EQ(m.n_head_kv, 1u);
  EXPECT_EQ(m.n_expert, 0u);

  // Per-layer head counts (arrays) count by their first entry; a missing block_count comes from the names.
  gguf::GgufWriter w;
  w.set_string("general.architecture", "openelm");
  w.set_int32s("openelm.attention.head_count", {12, 16});
  w.add_tensor("blk.6.attn_v.weight", TensorType::F32, {32, 1}, std::vector<uint8_t>(128));
  const std::string path = test::temp_dir() + "/model_info.gguf";
  w.write(path);
  const ModelInfo o = model_info(*gguf::GgufFile::open(path));
  EXPECT_EQ(o.n_layer, 7u);
  EXPECT_EQ(o.n_head, 12u);
  EXPECT_EQ(o.n_head_kv, 12u);
}

TEST(Mix, Q4KMGivesQ6KToAttnVAndFfnDownInTheUseMoreBitsLayers) {
  const auto ts = llama_tensors(32, 4096, 1024, 11008, true);
  const auto m = by_name(ts, choose_types(FileType::Q4_K_M, {"llama", 32, 32, 8, 0}, ts));
  // use_more_bits(i, 32): i < 4, i >= 28, or (i - 4) % 3 == 2.
  const std::vector<int> more = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
  for (int l = 0; l < 32; ++l) {
    const bool q6 = std::find(more.begin(), more.end(), l) != more.end();
    EXPECT_EQ(m.at(layer_name(l, "attn_v")), q6 ? TensorType::Q6_K : TensorType::Q4_K) << l;
    EXPECT_EQ(m.at(layer_name(l, "ffn_down")), q6 ? TensorType::Q6_K : TensorType::Q4_K) << l;
    EXPECT_EQ(m.at(layer_name(l, "attn_q")), TensorType::Q4_K);
    EXPECT_EQ(m.at(layer_name(l, "ffn_up")), TensorType::Q4_K);
    EXPECT_EQ(m.at(layer_name(l, "attn_norm")), TensorType::F32);
  }
  EXPECT_EQ(m.at("output.weight"), TensorType::Q6_K);
  EXPECT_EQ(m.at("token_embd.weight"), TensorType::Q4_K);
  EXPECT_EQ(m.at("output_norm.weight"), TensorType::F32);
}

TEST(Mix, TiedEmbeddingsTakeTheOutputMatrixType) {
  const auto ts = llama_tensors(4, 256, 256, 512, /*output=*/false);
  EXPECT_EQ(by_name(ts, choose_types(FileType::Q4_K_M, {"llama", 4, 4, 4, 0}, ts)).at("token_embd.weight"),
            TensorType::Q6_K);
  EXPECT_EQ(by_name(ts, choose_types(FileType::Q8_0, {"llama", 4, 4, 4, 0}, ts)).at("token_embd.weight"),
            TensorType::Q8_0);
  EXPECT_EQ(by_name(ts, choose_types(FileType::Q4_0, {"llama", 4, 4, 4, 0}, ts)).at("token_embd.weight"),
            TensorType::Q6_K);
}

TEST(Mix, Q2KRaisesAttentionAndFfnDown) {
  const auto ts = llama_tensors(4, 256, 256, 512, true);
  for (uint32_t n_head_kv : {32u, 8u}) {  // n_gqa 1, then 4
    const auto m = by_name(ts, choose_types(FileType::Q2_K, {"llama", 4, 32, n_head_kv, 0}, ts));
    EXPECT_EQ(m.at(layer_name(1, "attn_v")), n_head_kv == 8 ? TensorType::Q4_K : TensorType::Q3_K);
    EXPECT_EQ(m.at(layer_name(1, "attn_output")), TensorType::Q3_K);
    EXPECT_EQ(m.at(layer_name(1, "ffn_down")), TensorType::Q3_K);
    EXPECT_EQ(m.at(layer_name(1, "attn_k")), TensorType::Q2_K);
    EXPECT_EQ(m.at(layer_name(1, "ffn_gate")), TensorType::Q2_K);
    EXPECT_EQ(m.at("output.weight"), TensorType::Q6_K);
  }
}

TEST(Mix, Llama70BGivesAttnVQ5K) {
  const auto ts = llama_tensors(80, 256, 256, 512, true);
  const ModelInfo m70{"llama", 80, 64, 8, 0};
  const auto q4 = by_name(ts, choose_types(FileType::Q4_K_M, m70, ts));
  EXPECT_EQ(q4.at(layer_name(20, "attn_v")), TensorType::Q5_K);  // not a use_more_bits layer: q4_K raised
  EXPECT_EQ(q4.at(layer_name(0, "attn_v")), TensorType::Q6_K);
  EXPECT_EQ(by_name(ts, choose_types(FileType::Q2_K, m70, ts)).at(layer_name(20, "attn_v")),
            TensorType::Q5_K);
  // 80 layers with as many KV heads as heads is the 65B: no raise.
  EXPECT_EQ(
      by_name(ts, choose_types(FileType::Q4_K_M, {"llama", 80, 64, 64, 0}, ts)).at(layer_name(20, "attn_v")),
      TensorType::Q4_K);
}

TEST(Mix, EightExpertModels) {
  std::vector<gguf::TensorInfo> ts;
  for (int l = 0; l < 8; ++l) {
    ts.push_back(tensor(layer_name(l, "attn_v"), {256, 256}));
    ts.push_back(tensor(layer_name(l, "attn_k"), {256, 256}));
    ts.push_back(tensor(layer_name(l, "attn_output"), {256, 256}));
    ts.push_back(tensor(layer_name(l, "ffn_gate_inp"), {256, 8}, TensorType::F32));
    ts.push_back(tensor(layer_name(l, "ffn_down_exps"), {512, 256, 8}));
  }
  const ModelInfo moe{"llama", 8, 32, 8, 8};
  const auto m = by_name(ts, choose_types(FileType::Q4_K_M, moe, ts));
  EXPECT_EQ(m.at(layer_name(3, "attn_v")), TensorType::Q8_0);
  EXPECT_EQ(m.at(layer_name(3, "attn_k")), TensorType::Q8_0);
  EXPECT_EQ(m.at(layer_name(3, "attn_output")), TensorType::Q5_K);
  EXPECT_EQ(m.at(layer_name(3, "ffn_gate_inp")), TensorType::F32);  // the router stays as it is
  // Layers from the names: use_more_bits(i, 8) holds for 0, 3, 6, 7.
  for (int l = 0; l < 8; ++l) {
    const bool more = l == 0 || l == 3 || l == 6 || l == 7;
    EXPECT_EQ(m.at(layer_name(l, "ffn_down_exps")), more ? TensorType::Q6_K : TensorType::Q4_K) << l;
  }
  ts.push_back(tensor("ffn_down_exps.weight", {512, 256, 8}));
  try {
    choose_types(FileType::Q4_K_M, moe, ts);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("ffn_down_exps.weight"));
  }
}

TEST(Mix, FalconRules) {
  const auto ts = llama_tensors(32, 256, 256, 512, true);
  const auto m = by_name(ts, choose_types(FileType::Q4_K_M, {"falcon", 32, 32, 32, 0}, ts));
  EXPECT_EQ(m.at("output.weight"), TensorType::Q8_0);
  EXPECT_EQ(m.at(layer_name(1, "ffn_down")), TensorType::Q6_K);  // i < n / 16
  EXPECT_EQ(m.at(layer_name(6, "ffn_down")), TensorType::Q5_K);  // use_more_bits
  EXPECT_EQ(m.at(layer_name(7, "ffn_down")), TensorType::Q4_K);
}

TEST(Mix, RowLengthsThatDoNotFitFallBack) {
  const std::vector<gguf::TensorInfo> ts = {tensor("a.weight", {64, 8}), tensor("b.weight", {172, 8}),
                                            tensor("c.weight", {96, 8}), tensor("output.weight", {64, 8})};
  struct Case {
    FileType ft;
    TensorType a, b, c, out;
  };
  const Case cases[] = {
      {FileType::Q4_K_M, TensorType::Q5_0, TensorType::F16, TensorType::Q5_0, TensorType::Q8_0},
      {FileType::Q5_K_M, TensorType::Q5_1, TensorType::F16, TensorType::Q5_1, TensorType::Q8_0},
      {FileType::Q6_K, TensorType::Q8_0, TensorType::F16, TensorType::Q8_0, TensorType::Q8_0},
      {FileType::Q2_K, TensorType::Q4_0, TensorType::F16, TensorType::Q4_0, TensorType::Q8_0},
      {FileType::Q8_0, TensorType::Q8_0, TensorType::F16, TensorType::Q8_0, TensorType::Q8_0},
      {FileType::Q4_0, TensorType::Q4_0, TensorType::F16, TensorType::Q4_0, TensorType::Q8_0},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(std::string(file_type_name(k.ft)));
    const std::vector<TensorChoice> c = choose_types(k.ft, {"llama", 1, 1, 1, 0}, ts);
    EXPECT_EQ(c[0].type, k.a);
    EXPECT_EQ(c[1].type, k.b);
    EXPECT_EQ(c[2].type, k.c);
    EXPECT_EQ(c[3].type, k.out);
    // b (172) fits no quantized type: it falls back from the mix's base type in every mix.
    EXPECT_EQ(c[1].fallback_from, base_type(k.ft));
    const bool k_quant_base =
        gguf::type_traits(static_cast<uint32_t>(base_type(k.ft)))->block_elements == 256;
    EXPECT_EQ(c[0].fallback_from, k_quant_base ? std::optional(base_type(k.ft)) : std::nullopt);
  }
  EXPECT_EQ(
      choose_types(FileType::Q4_K_M, {"llama", 1, 1, 1, 0}, {tensor("x.weight", {256, 4})})[0].fallback_from,
      std::nullopt);
}

TEST(Mix, TensorsLlamaCppNeverQuantizes) {
  const std::vector<gguf::TensorInfo> ts = {
      tensor("rope_freqs.weight", {32}, TensorType::F32),
      tensor("blk.0.attn_norm.weight", {256}, TensorType::F32),
      tensor("blk.0.attn_q_norm.weight", {64, 1}, TensorType::F32),  // 2-D in the file, 1-D to ggml
      tensor("blk.0.attn_q.bias", {256, 2}, TensorType::F32),        // not a weight
      tensor("blk.0.ffn_gate_inp.weight", {256, 8}, TensorType::F32),
      tensor("position_embd.weight", {256, 512}, TensorType::F32),
      tensor("blk.0.ssm_conv1d.weight", {256, 4}, TensorType::F32),
      tensor("blk.0.attn_q.weight", {256, 256}, TensorType::BF16),
  };
  const std::vector<TensorChoice> c = choose_types(FileType::Q4_K_M, {"llama", 1, 1, 1, 0}, ts);
  for (size_t i = 0; i + 1 < ts.size(); ++i) {
    EXPECT_FALSE(c[i].quantizable) << ts[i].name;
    EXPECT_EQ(c[i].type, ts[i].type) << ts[i].name;
  }
  EXPECT_TRUE(c.back().quantizable);
  EXPECT_EQ(c.back().type, TensorType::Q4_K);
}

TEST(Mix, ChoicesDoNotDependOnTheFileOrder) {
  SCOPED_TRACE(test::seed_note());
  auto ts = llama_tensors(12, 256, 256, 512, true);
  const auto want = by_name(ts, choose_types(FileType::Q5_K_M, {"llama", 12, 8, 2, 0}, ts));
  auto gen = test::rng(41);
  std::shuffle(ts.begin(), ts.end(), gen);
  EXPECT_EQ(by_name(ts, choose_types(FileType::Q5_K_M, {"llama", 12, 8, 2, 0}, ts)), want);
}

}  // namespace
}  // namespace wgllm::quant
