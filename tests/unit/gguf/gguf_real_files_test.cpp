// Reads the shipped GGUF files. Expected values come from testdata's VALIDATION report and PROVENANCE
// files (another implementation's reading of the same bytes), not from this reader.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "support/test_support.hpp"
#include "unit/gguf/gguf_test_util.hpp"

namespace wgllm::gguf {
namespace {

std::vector<std::string> keys_of(const GgufFile& f) {
  std::vector<std::string> keys;
  for (const KeyValue& kv : f.metadata()) keys.push_back(kv.key);
  return keys;
}

TEST(GgufRealFiles, Stories260K) {
  auto f = GgufFile::open(test::source_path("models/stories260K.gguf"));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->file_size(), 1185376u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->data_offset(), 14176u);
  EXPECT_EQ(f->tensors().size(), 48u);

  const std::vector<std::string> expected_keys = {"tokenizer.ggml.tokens",
                                                  "tokenizer.ggml.scores",
                                                  "tokenizer.ggml.token_type",
                                                  "tokenizer.ggml.model",
                                                  "general.architecture",
                                                  "general.name",
                                                  "tokenizer.ggml.unknown_token_id",
                                                  "tokenizer.ggml.bos_token_id",
                                                  "tokenizer.ggml.eos_token_id",
                                                  "tokenizer.ggml.seperator_token_id",
                                                  "tokenizer.ggml.padding_token_id",
                                                  "llama.context_length",
                                                  "llama.embedding_length",
                                                  "llama.feed_forward_length",
                                                  "llama.attention.head_count",
                                                  "llama.attention.head_count_kv",
                                                  "llama.block_count",
                                                  "llama.rope.dimension_count",
                                                  "llama.attention.layer_norm_rms_epsilon"};
  EXPECT_EQ(keys_of(*f), expected_keys);

  EXPECT_EQ(f->require_string("general.architecture"), "llama");
  EXPECT_EQ(f->require_string("general.name"), "llama");
  EXPECT_EQ(f->require_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(f->find("tokenizer.ggml.pre"), nullptr);
  EXPECT_EQ(f->get_string("tokenizer.ggml.pre", "none"), "none");
  EXPECT_EQ(f->require_uint("llama.context_length"), 2048u);
  EXPECT_EQ(f->require_uint("llama.embedding_length"), 64u);
  EXPECT_EQ(f->require_uint("llama.feed_forward_length"), 172u);
  EXPECT_EQ(f->require_uint("llama.attention.head_count"), 8u);
  EXPECT_EQ(f->require_uint("llama.attention.head_count_kv"), 4u);
  EXPECT_EQ(f->require_uint("llama.block_count"), 5u);
  EXPECT_EQ(f->require_uint("llama.rope.dimension_count"), 8u);
  EXPECT_EQ(f->require_float("llama.attention.layer_norm_rms_epsilon"), 9.999999747378752e-06);
  EXPECT_EQ(f->require_uint("tokenizer.ggml.unknown_token_id"), 0u);
  EXPECT_EQ(f->require_uint("tokenizer.ggml.bos_token_id"), 1u);
  EXPECT_EQ(f->require_uint("tokenizer.ggml.eos_token_id"), 2u);
  EXPECT_EQ(f->require_uint("tokenizer.ggml.seperator_token_id"), 4294967295u);
  EXPECT_EQ(f->get_int("tokenizer.ggml.padding_token_id", 0), 4294967295);

  const Value& tokens = f->require_array("tokenizer.ggml.tokens", ValueType::STRING);
  ASSERT_EQ(tokens.array_size(), 512u);
  EXPECT_EQ(std::vector<std::string>(tokens.strings.begin(), tokens.strings.begin() + 6),
            (std::vector<std::string>{"<unk>", "<s>", "</s>", "<0x00>", "<0x01>", "<0x02>"}));
  const Value& scores = f->require_array("tokenizer.ggml.scores", ValueType::F32);
  ASSERT_EQ(scores.array_size(), 512u);
  EXPECT_EQ(std::vector<double>(scores.floats.begin(), scores.floats.begin() + 6),
            std::vector<double>(6, 0.0));
  const Value& types = f->require_array("tokenizer.ggml.token_type", ValueType::I32);
  ASSERT_EQ(types.array_size(), 512u);
  EXPECT_EQ(std::vector<int64_t>(types.ints.begin(), types.ints.begin() + 6),
            (std::vector<int64_t>{2, 3, 3, 6, 6, 6}));

  const TensorInfo& embd = f->require_tensor("token_embd.weight", std::vector<uint64_t>{64, 512});
  EXPECT_EQ(embd.type, TensorType::F32);
  EXPECT_EQ(embd.offset, 0u);
  EXPECT_EQ(embd.rows(), 512u);
  EXPECT_EQ(f->require_tensor("output_norm.weight", std::vector<uint64_t>{64}).offset, 131072u);
  const TensorInfo& out = f->require_tensor("output.weight", std::vector<uint64_t>{64, 512});
  EXPECT_EQ(out.offset, 131328u);
  // PROVENANCE: output.weight is a copy of token_embd.
  auto a = f->tensor_bytes(embd), b = f->tensor_bytes(out);
  ASSERT_EQ(a.size(), 64u * 512 * 4);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end()));

  // Per-layer shapes from PROVENANCE (llama.cpp's tensor names, ggml dim order).
  for (int l = 0; l < 5; ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const std::string p = "blk." + std::to_string(l) + ".";
    f->require_tensor(p + "attn_q.weight", std::vector<uint64_t>{64, 64});
    f->require_tensor(p + "attn_k.weight", std::vector<uint64_t>{64, 32});
    f->require_tensor(p + "attn_v.weight", std::vector<uint64_t>{64, 32});
    f->require_tensor(p + "attn_output.weight", std::vector<uint64_t>{64, 64});
    f->require_tensor(p + "attn_norm.weight", std::vector<uint64_t>{64});
    f->require_tensor(p + "ffn_norm.weight", std::vector<uint64_t>{64});
    f->require_tensor(p + "ffn_gate.weight", std::vector<uint64_t>{64, 172});
    f->require_tensor(p + "ffn_up.weight", std::vector<uint64_t>{64, 172});
    f->require_tensor(p + "ffn_down.weight", std::vector<uint64_t>{172, 64});
  }
  for (const TensorInfo& t : f->tensors()) {
    EXPECT_EQ(t.type, TensorType::F32) << t.name;
    EXPECT_EQ(t.n_bytes, t.n_elements * 4) << t.name;
  }
  // All 48 F32 tensors fill the data section exactly (sizes are multiples of 32 bytes).
  EXPECT_EQ(f->tensor_data_bytes(), f->file_size() - f->data_offset());
}

TEST(GgufRealFiles, LlamaSpmVocab) {
  auto f = GgufFile::open(test::testdata_path("llama.cpp-vocab/ggml-vocab-llama-spm.gguf"));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->file_size(), 723869u);
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_EQ(f->tensor_data_bytes(), 0u);
  // The file ends before its aligned data section would start; without tensors that is fine.
  EXPECT_EQ(f->data_offset(), 723872u);

  const std::vector<std::string> expected_keys = {"general.architecture",
                                                  "general.name",
                                                  "llama.block_count",
                                                  "llama.context_length",
                                                  "llama.embedding_length",
                                                  "llama.feed_forward_length",
                                                  "llama.attention.head_count",
                                                  "llama.attention.head_count_kv",
                                                  "llama.attention.layer_norm_rms_epsilon",
                                                  "general.file_type",
                                                  "llama.vocab_size",
                                                  "llama.rope.dimension_count",
                                                  "tokenizer.ggml.model",
                                                  "tokenizer.ggml.pre",
                                                  "tokenizer.ggml.tokens",
                                                  "tokenizer.ggml.scores",
                                                  "tokenizer.ggml.token_type",
                                                  "tokenizer.ggml.bos_token_id",
                                                  "tokenizer.ggml.eos_token_id",
                                                  "tokenizer.ggml.unknown_token_id",
                                                  "tokenizer.ggml.add_bos_token",
                                                  "tokenizer.ggml.add_eos_token"};
  EXPECT_EQ(keys_of(*f), expected_keys);

  EXPECT_EQ(f->require_string("general.name"), "llama-spm");
  EXPECT_EQ(f->require_string("tokenizer.ggml.pre"), "default");
  EXPECT_EQ(f->require_uint("llama.block_count"), 32u);
  EXPECT_EQ(f->require_uint("llama.feed_forward_length"), 11008u);
  EXPECT_EQ(f->require_uint("llama.vocab_size"), 32000u);
  EXPECT_EQ(f->require_float("llama.attention.layer_norm_rms_epsilon"), 9.999999747378752e-06);
  EXPECT_TRUE(f->get_bool("tokenizer.ggml.add_bos_token", false));
  EXPECT_FALSE(f->get_bool("tokenizer.ggml.add_eos_token", true));
  EXPECT_EQ(f->require_uint("tokenizer.ggml.bos_token_id"), 1u);
  EXPECT_EQ(f->require_uint("tokenizer.ggml.eos_token_id"), 2u);

  const Value& tokens = f->require_array("tokenizer.ggml.tokens", ValueType::STRING);
  ASSERT_EQ(tokens.array_size(), 32000u);
  EXPECT_EQ(std::vector<std::string>(tokens.strings.begin(), tokens.strings.begin() + 6),
            (std::vector<std::string>{"<unk>", "<s>", "</s>", "<0x00>", "<0x01>", "<0x02>"}));
  EXPECT_EQ(f->require_array("tokenizer.ggml.scores", ValueType::F32).floats.size(), 32000u);
  const Value& types = f->require_array("tokenizer.ggml.token_type", ValueType::I32);
  ASSERT_EQ(types.ints.size(), 32000u);
  EXPECT_EQ(std::vector<int64_t>(types.ints.begin(), types.ints.begin() + 6),
            (std::vector<int64_t>{2, 3, 3, 6, 6, 6}));
}

TEST(GgufRealFiles, Phi3VocabHeader) {
  auto f = GgufFile::open(test::testdata_path("llama.cpp-vocab/ggml-vocab-phi-3.gguf"));
  EXPECT_EQ(f->metadata().size(), 26u);
  EXPECT_EQ(f->data_offset(), 726048u);
  EXPECT_EQ(f->require_string("general.architecture"), "phi3");
  EXPECT_EQ(f->require_float("phi3.rope.freq_base"), 10000.0);
  EXPECT_EQ(f->require_uint("tokenizer.ggml.eos_token_id"), 32000u);
  EXPECT_EQ(f->require_array("tokenizer.ggml.tokens", ValueType::STRING).array_size(), 32064u);
  const Value& scores = f->require_array("tokenizer.ggml.scores", ValueType::F32);
  EXPECT_EQ(std::vector<double>(scores.floats.begin(), scores.floats.begin() + 4),
            (std::vector<double>{-1000.0, -1000.0, -1000.0, 0.0}));
  EXPECT_EQ(f->require_string("tokenizer.chat_template").substr(0, 17), "{{ bos_token }}{%");
}

TEST(GgufRealFiles, GettersRejectMissingAndMistypedKeys) {
  const std::string path = test::source_path("models/stories260K.gguf");
  auto f = GgufFile::open(path);
  auto expect_error = [&](auto fn, std::vector<std::string> words) {
    words.push_back(path + ": ");
    test_util::expect_bad_input(fn, words);
  };
  expect_error([&] { f->require_uint("llama.no_such_key"); }, {"llama.no_such_key", "missing"});
  expect_error([&] { f->require_uint("general.name"); }, {"general.name", "string"});
  expect_error([&] { f->get_uint("general.name", 1); }, {"general.name", "integer"});
  expect_error([&] { f->get_int("llama.attention.layer_norm_rms_epsilon", 1); },
               {"layer_norm_rms_epsilon", "f32"});
  expect_error([&] { f->require_float("llama.block_count"); }, {"llama.block_count", "u32"});
  expect_error([&] { f->get_float("general.name", 1); }, {"general.name"});
  expect_error([&] { f->get_bool("llama.block_count", true); }, {"llama.block_count", "bool"});
  expect_error([&] { f->require_string("llama.block_count"); }, {"llama.block_count", "string"});
  expect_error([&] { f->get_string("llama.block_count", ""); }, {"llama.block_count"});
  expect_error([&] { f->require_array("tokenizer.ggml.token_type", ValueType::U32); },
               {"tokenizer.ggml.token_type", "array of u32", "array of i32"});
  expect_error([&] { f->require_array("general.name", ValueType::STRING); },
               {"general.name", "array of string"});
  expect_error(
      [&] {
        f->require_tensor("blk.9.attn_q.weight", std::vector<uint64_t>{64, 64});
      },
      {"blk.9.attn_q.weight", "missing"});
  expect_error(
      [&] {
        f->require_tensor("blk.0.attn_k.weight", std::vector<uint64_t>{64, 64});
      },
      {"blk.0.attn_k.weight", "[64, 64]", "[64, 32]"});
  expect_error(
      [&] {
        f->require_tensor("output_norm.weight", std::vector<uint64_t>{64, 1});
      },
      {"output_norm.weight", "[64, 1]", "[64]"});
  // Defaults apply only to missing keys.
  EXPECT_EQ(f->get_uint("missing.key", 7), 7u);
  EXPECT_EQ(f->get_int("missing.key", -7), -7);
  EXPECT_EQ(f->get_float("missing.key", 0.5), 0.5);
  EXPECT_TRUE(f->get_bool("missing.key", true));
  EXPECT_EQ(f->find_tensor("missing"), nullptr);
}

}  // namespace
}  // namespace wgllm::gguf
