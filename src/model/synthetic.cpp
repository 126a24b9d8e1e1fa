#include "model/synthetic.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "core/error.hpp"
#include "quant/half.hpp"
#include "tokenizer/byte_level.hpp"
#include "tokenizer/chat_template.hpp"
#include "tokenizer/vocab.hpp"

namespace wgllm::model {

const std::vector<SyntheticShape>& synthetic_shapes() {
  // Published configurations (Meta's config.json files).
  static const std::vector<SyntheticShape> shapes = {
      {"llama-3.2-1b", 2048, 16, 32, 8, 8192, 128256, true, 500000.f},
      {"llama-3.2-3b", 3072, 28, 24, 8, 8192, 128256, true, 500000.f},
      {"llama-3-8b", 4096, 32, 32, 8, 14336, 128256, false, 500000.f},
      {"llama-2-7b", 4096, 32, 32, 32, 11008, 32000, false, 10000.f},
      {"llama-3-70b", 8192, 80, 64, 8, 28672, 128256, false, 500000.f},
      {"tiny", 256, 4, 8, 4, 640, 1024, false, 10000.f},
  };
  return shapes;
}

std::pair<SyntheticShape, gguf::TensorType> parse_synthetic(const std::string& spec) {
  auto colon = spec.find(':');
  std::string shape = spec.substr(0, colon),
              type = colon == std::string::npos ? "q4_0" : spec.substr(colon + 1);
  std::string known;
  for (const auto& s : synthetic_shapes()) {
    known += (known.empty() ? "" : ", ") + s.name;
    if (s.name != shape) continue;
    using T = gguf::TensorType;
    for (T t : {T::F32, T::F16, T::Q8_0, T::Q4_0})
      if (gguf::type_name(t) == type) return {s, t};
    fail_input("--synthetic " + spec + ": unknown weight type '" + type + "' (f32, f16, q8_0, q4_0)");
  }
  fail_input("--synthetic " + spec + ": unknown shape '" + shape + "' (known: " + known + ")");
}

namespace {

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Random tensor bytes; rows split over threads, each from its own stream, so the result does not depend on
// the thread count.
std::vector<uint8_t> random_tensor(gguf::TensorType type, uint64_t rows, uint64_t cols, uint64_t seed) {
  using T = gguf::TensorType;
  const auto traits = *gguf::type_traits(static_cast<uint32_t>(type));
  const uint64_t row_bytes = cols / traits.block_elements * traits.block_bytes;
  std::vector<uint8_t> out(rows * row_bytes);
  const float std_target = 0.02f;
  auto fill_rows = [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r) {
      uint64_t s = seed ^ (r * 0xD1B54A32D192ED03ull);
      uint8_t* row = out.data() + r * row_bytes;
      auto uniform = [&] { return (splitmix(s) >> 40) * (1.0f / 16777216.0f); };  // [0, 1)
      switch (type) {
        case T::F32:
        case T::F16:
          for (uint64_t c = 0; c < cols; ++c) {
            float v = (uniform() * 2 - 1) * std_target * 1.7320508f;  // uniform with the target std
            if (type == T::F32) {
              std::memcpy(row + c * 4, &v, 4);
            } else {
              uint16_t h = quant::f32_to_f16(v);
              std::memcpy(row + c * 2, &h, 2);
            }
          }
          break;
        case T::Q8_0:
        case T::Q4_0: {
          // Uniform quants have std ~ 73.3 (q8) / 4.6 (q4) steps: pick the scale for the target std.
          float d_mean = type == T::Q8_0 ? std_target / 73.3f : std_target / 4.6f;
          for (uint64_t b = 0; b < cols / 32; ++b) {
            uint8_t* blk = row + b * traits.block_bytes;
            uint16_t d = quant::f32_to_f16(d_mean * (0.5f + uniform()));
            std::memcpy(blk, &d, 2);
            for (uint32_t i = 2; i < traits.block_bytes; i += 8) {
              uint64_t bits = splitmix(s);
              std::memcpy(blk + i, &bits, std::min<uint32_t>(8, traits.block_bytes - i));
            }
          }
          break;
        }
        default:
          fail_input("synthetic weights of type " + std::string(gguf::type_name(type)) +
                     " are not supported");
      }
    }
  };
  unsigned n = std::max(1u, std::min(std::thread::hardware_concurrency(), 32u));
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < n; ++i) threads.emplace_back(fill_rows, rows * i / n, rows * (i + 1) / n);
  for (auto& t : threads) t.join();
  return out;
}

constexpr uint32_t kFirstControl = 256;  // BOS, EOS, <|im_start|>, <|im_end|>

}  // namespace

void add_synthetic_tokenizer(gguf::GgufWriter& w, uint32_t n_vocab) {
  if (n_vocab < kSyntheticVocabUsed)
    fail_input("a synthetic vocabulary needs at least " + std::to_string(kSyntheticVocabUsed) +
               " tokens, not " + std::to_string(n_vocab));
  using tokenizer::TokenType;
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  tokens.reserve(n_vocab);
  types.reserve(n_vocab);
  for (uint32_t b = 0; b < 256; ++b) {
    tokens.push_back(tokenizer::byte_level::encode(std::string(1, static_cast<char>(b))));
    types.push_back(static_cast<int32_t>(TokenType::Normal));
  }
  for (const char* control : {"<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"}) {
    tokens.push_back(control);
    types.push_back(static_cast<int32_t>(TokenType::Control));
  }
  for (uint32_t id = kSyntheticVocabUsed; id < n_vocab; ++id) {
    tokens.push_back("[PAD" + std::to_string(id) + "]");
    types.push_back(static_cast<int32_t>(TokenType::Unused));
  }
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "llama-bpe");
  w.set_strings("tokenizer.ggml.tokens", tokens);
  w.set_int32s("tokenizer.ggml.token_type", types);
  w.set_strings("tokenizer.ggml.merges", {});
  w.set_uint32("tokenizer.ggml.bos_token_id", kFirstControl);
  w.set_uint32("tokenizer.ggml.eos_token_id", kFirstControl + 1);
  w.set_uint32("tokenizer.ggml.eot_token_id", kFirstControl + 3);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_string("tokenizer.chat_template", tokenizer::ChatTemplate::chatml().source());
}

gguf::GgufWriter synthetic_model(const SyntheticShape& sh, gguf::TensorType type, uint64_t seed) {
  gguf::GgufWriter w;
  const uint32_t head_dim = sh.dim / sh.n_heads;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "synthetic " + sh.name + " " + std::string(gguf::type_name(type)));
  w.set_uint32("llama.context_length", 8192);
  w.set_uint32("llama.embedding_length", sh.dim);
  w.set_uint32("llama.block_count", sh.n_layers);
  w.set_uint32("llama.feed_forward_length", sh.ffn_dim);
  w.set_uint32("llama.attention.head_count", sh.n_heads);
  w.set_uint32("llama.attention.head_count_kv", sh.n_kv_heads);
  w.set_uint32("llama.rope.dimension_count", head_dim);
  w.set_float32("llama.rope.freq_base", sh.rope_freq_base);
  w.set_float32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_uint32("llama.vocab_size", sh.n_vocab);
  add_synthetic_tokenizer(w, sh.n_vocab);
  uint64_t stream = seed;
  auto matrix = [&](const std::string& name, uint64_t in, uint64_t out) {
    w.add_tensor(name, type, {in, out}, random_tensor(type, out, in, splitmix(stream)));
  };
  // Zero bytes decode to zero in every type (a quantized block's scale is 0).
  auto lm_head = [&](const std::string& name) {
    std::vector<uint8_t> bytes = random_tensor(type, sh.n_vocab, sh.dim, splitmix(stream));
    const size_t row_bytes = bytes.size() / sh.n_vocab;
    std::fill(bytes.begin() + kFirstControl * row_bytes, bytes.begin() + kSyntheticVocabUsed * row_bytes, 0);
    w.add_tensor(name, type, {sh.dim, sh.n_vocab}, std::move(bytes));
  };
  auto ones = [&](const std::string& name, uint64_t n) {
    std::vector<uint8_t> b(n * 4);
    for (uint64_t i = 0; i < n; ++i) {
      float v = 1.0f;
      std::memcpy(b.data() + i * 4, &v, 4);
    }
    w.add_tensor(name, gguf::TensorType::F32, {n}, std::move(b));
  };
  const uint64_t q_dim = uint64_t(sh.n_heads) * head_dim, kv_dim = uint64_t(sh.n_kv_heads) * head_dim;
  if (sh.tied_output) {
    lm_head("token_embd.weight");
  } else {
    matrix("token_embd.weight", sh.dim, sh.n_vocab);
  }
  for (uint32_t l = 0; l < sh.n_layers; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    ones(p + "attn_norm.weight", sh.dim);
    matrix(p + "attn_q.weight", sh.dim, q_dim);
    matrix(p + "attn_k.weight", sh.dim, kv_dim);
    matrix(p + "attn_v.weight", sh.dim, kv_dim);
    matrix(p + "attn_output.weight", q_dim, sh.dim);
    ones(p + "ffn_norm.weight", sh.dim);
    matrix(p + "ffn_gate.weight", sh.dim, sh.ffn_dim);
    matrix(p + "ffn_up.weight", sh.dim, sh.ffn_dim);
    matrix(p + "ffn_down.weight", sh.ffn_dim, sh.dim);
  }
  ones("output_norm.weight", sh.dim);
  if (!sh.tied_output) lm_head("output.weight");
  return w;
}

}  // namespace wgllm::model
