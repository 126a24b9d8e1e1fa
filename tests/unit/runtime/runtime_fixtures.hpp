// Shared pieces of the runtime and mesh tests: one GPU device per process, the synthetic model shape the
// issue asks for, the GPU side of a logits comparison against cpu::ReferenceModel, stories260K with the
// reference's greedy text, and a driver of runtime::Generator.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "cpu/reference_model.hpp"
#include "gpu/device.hpp"
#include "runtime/forward.hpp"
#include "runtime/generator.hpp"
#include "runtime/session.hpp"
#include "support/test_device.hpp"
#include "support/test_support.hpp"
#include "tokenizer/tokenizer.hpp"
#include "unit/cli/wgllm_process.hpp"
#include "unit/model/tiny_llama.hpp"

namespace wgllm::test {

inline gpu::Device& device() {
  return test_device();
}

// dim 256, 4 layers, GQA 8 query heads over 4 KV heads of 32 dims, ffn 352 (11 blocks of 32: not a multiple
// of 256, so the GEMV's partial tiles run), vocab 500. Weights N(0, 0.3^2): logits far from flat.
inline TinyLlamaShape model_shape(gguf::TensorType type) {
  return {.dim = 256,
          .n_layers = 4,
          .n_heads = 8,
          .n_kv_heads = 4,
          .ffn_dim = 352,
          .n_vocab = 500,
          .context = 64,
          .weight_type = type};
}

// CONTRACTS.md / the issue: F32 weights agree to 1e-4, the other types (whose GPU path may round
// differently, e.g. f16 products) to 1e-3.
inline double tolerance(gguf::TensorType type) {
  return type == gguf::TensorType::F32 ? 1e-4 : 1e-3;
}

inline std::vector<int32_t> random_tokens(size_t n, uint32_t n_vocab, uint64_t salt) {
  std::mt19937_64 gen = rng(salt);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(n_vocab) - 1);
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = dist(gen);
  return tokens;
}

inline std::vector<float> floats_of(const std::vector<uint8_t>& bytes) {
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

// Every position's logits [tokens.size()][n_vocab] from Session::evaluate. All positions are submitted
// before the first wait, as `wgllm logits` does.
inline std::vector<std::vector<float>> gpu_logits(const gguf::GgufFile& file, std::span<const int32_t> tokens,
                                                  runtime::ForwardOptions options) {
  runtime::Forward forward(device(), file, options);
  runtime::Session session(forward, runtime::SamplingParams{.temperature = 0});
  std::vector<gpu::ReadTicket> tickets;
  for (int32_t t : tokens) tickets.push_back(session.evaluate(t));
  std::vector<std::vector<float>> out;
  for (gpu::ReadTicket t : tickets) out.push_back(floats_of(device().wait(t)));
  return out;
}

// The logits rows of the last recorded pass: [rows][n_vocab].
inline std::vector<std::vector<float>> read_rows(runtime::Forward& forward, uint32_t rows) {
  const uint32_t vocab = forward.config().n_vocab;
  gpu::Device& device = forward.device();
  gpu::ReadTicket t = device.read(forward.logits(), 0, uint64_t(rows) * vocab * 4);
  device.submit();
  const std::vector<float> all = floats_of(device.wait(t));
  std::vector<std::vector<float>> out;
  for (uint32_t r = 0; r < rows; ++r)
    out.emplace_back(all.begin() + size_t(r) * vocab, all.begin() + size_t(r + 1) * vocab);
  return out;
}

// Random q/k/v biases in every layer (and the attention output's with `bo`).
inline void add_biases(TinyLlama& m, bool bo) {
  const TinyLlamaShape& s = m.shape();
  const uint32_t head_dim = s.dim / s.n_heads;
  for (uint32_t l = 0; l < s.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    m.add(b + "attn_q.bias", gguf::TensorType::F32, {s.n_heads * head_dim});
    m.add(b + "attn_k.bias", gguf::TensorType::F32, {s.n_kv_heads * head_dim});
    m.add(b + "attn_v.bias", gguf::TensorType::F32, {s.n_kv_heads * head_dim});
    if (bo) m.add(b + "attn_output.bias", gguf::TensorType::F32, {s.dim});
  }
}

// The model's weights under another architecture's name: general.architecture and the hyperparameters
// from_gguf reads under that prefix.
inline void set_arch(TinyLlama& m, const std::string& arch) {
  const TinyLlamaShape& s = m.shape();
  m.set_string("general.architecture", arch);
  m.set_u32(arch + ".embedding_length", s.dim);
  m.set_u32(arch + ".block_count", s.n_layers);
  m.set_u32(arch + ".attention.head_count", s.n_heads);
  m.set_u32(arch + ".attention.head_count_kv", s.n_kv_heads);
  m.set_u32(arch + ".feed_forward_length", s.ffn_dim);
  m.set_u32(arch + ".context_length", s.context);
  m.set_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
}

// Mixture-of-experts layers on m's weights, m's architecture already `arch` (set_arch) (docs/models.md):
// every layer for qwen3moe (which also gets its q/k norm weights), every `step`-th for llama4 (with a shared
// expert as wide as an expert); n_expert experts of f rows, k of them used, stored as `type`; the router f32,
// as converters store it, N(0, 0.05^2): logits of a few units, so that the chosen experts' softmax weights
// are far from 0 and 1 (renormalisation matters) and the sigmoid's too.
inline void add_experts(TinyLlama& m, const std::string& arch, uint32_t n_expert, uint32_t k, uint32_t f,
                        uint32_t step, gguf::TensorType type) {
  const TinyLlamaShape& s = m.shape();
  m.set_u32(arch + ".expert_count", n_expert);
  m.set_u32(arch + ".expert_used_count", k);
  m.set_u32(arch + ".expert_feed_forward_length", f);
  if (arch == "llama4") m.set_u32("llama4.interleave_moe_layer_step", step);
  for (uint32_t l = 0; l < s.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    if (arch == "qwen3moe") {
      m.add(b + "attn_q_norm.weight", gguf::TensorType::F32, {s.dim / s.n_heads}, 1.0f);
      m.add(b + "attn_k_norm.weight", gguf::TensorType::F32, {s.dim / s.n_heads}, 1.0f);
    }
    if ((l + 1) % step != 0) continue;
    for (const char* dense : {"ffn_gate", "ffn_up", "ffn_down"}) m.erase_tensor(b + dense + ".weight");
    std::mt19937_64 gen = rng(900 + l);
    std::normal_distribution<float> router(0.0f, 0.05f);
    std::vector<float> values(size_t(s.dim) * n_expert);
    for (float& v : values) v = router(gen);
    m.add_values(b + "ffn_gate_inp.weight", gguf::TensorType::F32, {s.dim, n_expert}, values);
    m.add(b + "ffn_gate_exps.weight", type, {s.dim, f, n_expert});
    m.add(b + "ffn_up_exps.weight", type, {s.dim, f, n_expert});
    m.add(b + "ffn_down_exps.weight", type, {f, s.dim, n_expert});
    if (arch == "llama4") {
      m.add(b + "ffn_gate_shexp.weight", type, {s.dim, f});
      m.add(b + "ffn_up_shexp.weight", type, {s.dim, f});
      m.add(b + "ffn_down_shexp.weight", type, {f, s.dim});
    }
  }
}

// `f` throws Error(BadInput) whose message mentions `mentions`.
template <typename F>
void expect_bad_input(F&& f, const std::string& mentions) {
  try {
    f();
    FAIL() << "expected Error(BadInput) mentioning '" << mentions << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput) << e.what();
    EXPECT_THAT(e.what(), ::testing::HasSubstr(mentions));
  }
}

inline const runtime::SamplingParams kGreedy{.temperature = 0};

// Drives `g` with greedy requests until request i has want[i] new tokens (or fills its context); request i
// starts before step arrivals[i], or as soon after as a slot is free. Returns each request's tokens.
inline std::vector<std::vector<int32_t>> generate(runtime::Generator& g,
                                                  const std::vector<std::vector<int32_t>>& prompts,
                                                  const std::vector<size_t>& want,
                                                  const std::vector<int>& arrivals) {
  std::vector<std::vector<int32_t>> out(prompts.size());
  std::map<uint32_t, size_t> request_of;  // slot -> request
  size_t next = 0;
  for (int step = 0; next < prompts.size() || g.busy(); ++step) {
    while (next < prompts.size() && arrivals[next] <= step) {
      const auto started = g.start(prompts[next], kGreedy);
      if (!started) break;
      request_of[started->slot] = next++;
    }
    for (const runtime::Generator::Sampled& s : g.step()) {
      const size_t r = request_of.at(s.slot);
      out[r].push_back(s.token);
      if (out[r].size() == want[r] || s.context_full) {
        g.finish(s.slot);
        request_of.erase(s.slot);
      }
    }
  }
  return out;
}

inline std::string stories260k_path() {
  return source_path("models/stories260K.gguf");
}

// llama2.c's greedy story from BOS with stories260K (200 tokens), without its final newline.
inline std::string llama2c_story() {
  return without_final_newline(
      read_file(testdata_path("karpathy-llama2.c/expected_stories260K_t0_n200.txt")));
}

// The float64 CPU reference's greedy continuation of `prompt`: n_new ids (the first of the largest logit),
// or fewer when `eog_of` is given and an end-of-generation token of it would come next.
inline std::vector<int32_t> reference_greedy(const gguf::GgufFile& file, std::span<const int32_t> prompt,
                                             size_t n_new, const tokenizer::Tokenizer* eog_of = nullptr) {
  cpu::ReferenceModel ref(file);
  std::vector<double> logits = ref.forward(prompt).back();
  std::vector<int32_t> ids;
  for (size_t i = 0; i < n_new; ++i) {
    const auto id = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (eog_of && eog_of->is_eog(id)) break;
    ids.push_back(id);
    if (i + 1 < n_new) logits = ref.step(id);
  }
  return ids;
}

// The text `ids` stream as (tokenizer::StreamDecoder, flushed at the end).
inline std::string text_of(const tokenizer::Tokenizer& tok, std::span<const int32_t> ids,
                           bool strip_leading_space) {
  tokenizer::StreamDecoder decoder(tok, strip_leading_space);
  std::string text;
  for (int32_t id : ids) text += decoder.push(id);
  return text + decoder.flush();
}

}  // namespace wgllm::test
