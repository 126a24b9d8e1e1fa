#include "model/convert_hf.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numbers>
#include <set>

#include "core/error.hpp"
#include "core/mapped_file.hpp"
#include "quant/codec.hpp"
#include "tokenizer/pre_tokenizer.hpp"
#include "tokenizer/vocab.hpp"

namespace wgllm::model {

namespace {

namespace fs = std::filesystem;
using Entry = hf::TensorSet::Entry;
using Shape = std::vector<uint64_t>;

struct Arch {
  const char* hf;
  const char* gguf;
};
constexpr Arch kArchs[] = {
    {"LlamaForCausalLM", "llama"},       {"MistralForCausalLM", "llama"},
    {"Llama4ForCausalLM", "llama4"},     {"Llama4ForConditionalGeneration", "llama4"},
    {"Qwen2ForCausalLM", "qwen2"},       {"Qwen3ForCausalLM", "qwen3"},
    {"Qwen3MoeForCausalLM", "qwen3moe"},
};

std::string shape_text(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Builds the plan for one folder: the checks, the metadata and the row readers.
class Builder {
 public:
  Builder(const hf::Config& cfg, const hf::TensorSet& weights, std::string arch, std::string prefix,
          gguf::GgufWriter& meta, std::vector<ConvertTensor>& out)
      : cfg_(cfg), weights_(weights), arch_(std::move(arch)), p_(std::move(prefix)), meta_(meta), out_(out) {}

  void build();
  void check_all_used() const;

 private:
  // The Hugging Face tensor `name` with PyTorch shape `shape`; marks it used.
  const Entry& take(const std::string& name, const Shape& shape) {
    const Entry& e = weights_.require(name);
    if (e.info->shape != shape) {
      fail_input(e.file->path() + ": tensor '" + name + "' has shape " + shape_text(e.info->shape) +
                 ", but " + cfg_.path() + " makes it " + shape_text(shape));
    }
    used_.insert(name);
    return e;
  }
  bool exists(const std::string& name) const { return weights_.find(name) != nullptr; }

  void add(std::string name, Shape dims, bool keep_f32, std::string source,
           std::function<void(uint64_t, float*)> read) {
    out_.push_back(
        ConvertTensor{std::move(name), std::move(dims), keep_f32, std::move(source), std::move(read)});
  }
  // A matrix or vector stored as it is: GGUF's dims are the PyTorch shape reversed.
  void direct(const std::string& gguf_name, const std::string& hf_name, const Shape& shape,
              bool keep_f32 = false) {
    const Entry e = take(hf_name, shape);
    const uint64_t len = shape.back();
    add(gguf_name, Shape(shape.rbegin(), shape.rend()), keep_f32 || shape.size() == 1, hf_name,
        [e, len](uint64_t r, float* out) { e.file->read_f32(*e.info, r * len, len, out); });
  }
  // Q/K rows (or bias elements) reordered from Hugging Face's rotate-half layout into GGUF's interleaved
  // pairs, as convert_hf_to_gguf.py's LlamaModel.permute: within each head, row 2i + t <- row t * d/2 + i.
  void permuted(const std::string& gguf_name, const std::string& hf_name, const Shape& shape,
                uint32_t heads) {
    const Entry e = take(hf_name, shape);
    const uint64_t rows = shape[0], d = rows / heads;
    const auto src = [d](uint64_t r) { return r / d * d + (r % d % 2) * (d / 2) + r % d / 2; };
    if (shape.size() == 1) {
      add(gguf_name, {rows}, true, hf_name, [e, rows, src](uint64_t, float* out) {
        std::vector<float> v(rows);
        e.file->read_f32(*e.info, 0, rows, v.data());
        for (uint64_t r = 0; r < rows; ++r) out[r] = v[src(r)];
      });
      return;
    }
    const uint64_t len = shape[1];
    add(gguf_name, {len, rows}, false, hf_name,
        [e, len, src](uint64_t r, float* out) { e.file->read_f32(*e.info, src(r) * len, len, out); });
  }
  // A row of `len` elements that starts at element first(r) and steps by `stride` (a column of a
  // transposed matrix when stride > 1).
  void strided(const std::string& gguf_name, const std::string& hf_name, const Entry& e, Shape dims,
               uint64_t stride, std::function<uint64_t(uint64_t)> first) {
    const uint64_t len = dims[0];
    add(gguf_name, std::move(dims), false, hf_name, [e, len, stride, first](uint64_t r, float* out) {
      e.file->read_strided(*e.info, first(r), stride, len, out);
    });
  }

  void attention(uint32_t l, const std::string& b);
  void dense_ffn(uint32_t l, const std::string& b, const std::string& mlp, uint32_t ffn);
  void qwen3moe_experts(uint32_t l, const std::string& b);
  void llama4_moe(uint32_t l, const std::string& b);
  void rope_metadata();
  void llama4_metadata();

  const hf::Config& cfg_;
  const hf::TensorSet& weights_;
  std::string arch_, p_;
  gguf::GgufWriter& meta_;
  std::vector<ConvertTensor>& out_;
  std::set<std::string> used_;

  uint32_t n_layers_ = 0, dim_ = 0, n_heads_ = 0, n_kv_ = 0, head_dim_ = 0, vocab_ = 0;
  uint32_t n_expert_ = 0, expert_ffn_ = 0, moe_step_ = 0;
};

void Builder::build() {
  const hf::Config& c = cfg_;
  const std::string k = arch_ + ".";
  const std::string act = c.string("hidden_act", "silu");
  if (act != "silu") c.fail("hidden_act", "= \"" + act + "\" is not supported (supported: silu)");
  if (c.boolean("mlp_bias", false)) c.fail("mlp_bias", "= true is not supported");
  n_layers_ = c.u32("num_hidden_layers");
  dim_ = c.u32("hidden_size");
  n_heads_ = c.u32("num_attention_heads");
  n_kv_ = c.u32("num_key_value_heads", n_heads_);
  vocab_ = c.u32("vocab_size");
  if (n_layers_ == 0 || dim_ == 0 || n_heads_ == 0 || n_kv_ == 0 || vocab_ == 0) {
    fail_input(c.path() +
               ": num_hidden_layers, hidden_size, num_attention_heads, num_key_value_heads and "
               "vocab_size must all be at least 1");
  }
  if (n_heads_ % n_kv_ != 0) c.fail("num_attention_heads", "is not a multiple of num_key_value_heads");
  if (!c.has("head_dim") && dim_ % n_heads_ != 0)
    c.fail("hidden_size", "is not a multiple of num_attention_heads");
  head_dim_ = c.u32("head_dim", dim_ / n_heads_);
  if (head_dim_ == 0 || head_dim_ % 2 != 0) c.fail("head_dim", "must be even and at least 2");
  const uint32_t ffn = arch_ == "llama4" ? c.u32("intermediate_size_mlp") : c.u32("intermediate_size");

  meta_.set_uint32(k + "context_length", c.u32("max_position_embeddings"));
  meta_.set_uint32(k + "embedding_length", dim_);
  meta_.set_uint32(k + "block_count", n_layers_);
  meta_.set_uint32(k + "feed_forward_length", ffn);
  meta_.set_uint32(k + "attention.head_count", n_heads_);
  meta_.set_uint32(k + "attention.head_count_kv", n_kv_);
  meta_.set_float32(k + "attention.layer_norm_rms_epsilon", static_cast<float>(c.number("rms_norm_eps")));
  if (c.has("head_dim")) {
    meta_.set_uint32(k + "attention.key_length", head_dim_);
    meta_.set_uint32(k + "attention.value_length", head_dim_);
  }
  if (arch_ == "llama" || arch_ == "llama4") meta_.set_uint32(k + "vocab_size", vocab_);
  rope_metadata();
  if (arch_ == "llama" && c.has("sliding_window")) {
    meta_.set_uint32(k + "attention.sliding_window", c.u32("sliding_window"));
  }
  if (arch_ == "qwen2" || arch_ == "qwen3" || arch_ == "qwen3moe") {
    if (c.boolean("use_sliding_window", false)) c.fail("use_sliding_window", "= true is not supported");
    for (const std::string& t : c.strings("layer_types")) {
      if (t != "full_attention")
        c.fail("layer_types", "holds \"" + t + "\"; only full_attention is supported");
    }
  }
  if (arch_ == "qwen3moe") {
    // 5.x writes num_local_experts, 4.x num_experts.
    n_expert_ = c.has("num_local_experts") ? c.u32("num_local_experts") : c.u32("num_experts");
    expert_ffn_ = c.u32("moe_intermediate_size");
    if (c.u32("decoder_sparse_step", 1) != 1 || !c.ints("mlp_only_layers").empty()) {
      c.fail("decoder_sparse_step",
             "/ mlp_only_layers make some layers dense, which qwen3moe GGUF files cannot "
             "express (every layer is a mixture of experts)");
    }
    meta_.set_uint32(k + "expert_count", n_expert_);
    meta_.set_uint32(k + "expert_used_count", c.u32("num_experts_per_tok"));
    meta_.set_uint32(k + "expert_feed_forward_length", expert_ffn_);
    meta_.set_bool(k + "expert_weights_norm", c.boolean("norm_topk_prob", false));
    moe_step_ = 1;
  }
  if (arch_ == "llama4") llama4_metadata();

  direct("token_embd.weight", p_ + "embed_tokens.weight", {vocab_, dim_});
  for (uint32_t l = 0; l < n_layers_; ++l) {
    const std::string b = p_ + "layers." + std::to_string(l) + ".";
    const std::string g = "blk." + std::to_string(l) + ".";
    direct(g + "attn_norm.weight", b + "input_layernorm.weight", {dim_});
    attention(l, b);
    direct(g + "ffn_norm.weight", b + "post_attention_layernorm.weight", {dim_});
    if (arch_ == "qwen3moe") {
      qwen3moe_experts(l, b);
    } else if (arch_ == "llama4" && moe_step_ && (l + 1) % moe_step_ == 0) {
      llama4_moe(l, b);
    } else {
      dense_ffn(l, b, arch_ == "llama4" ? "feed_forward." : "mlp.", ffn);
    }
  }
  direct("output_norm.weight", p_ + "norm.weight", {dim_});
  const std::string lm_head =
      (p_.starts_with("language_model.") ? "language_model." : "") + std::string("lm_head.weight");
  const bool tied = c.boolean("tie_word_embeddings", !exists(lm_head));
  if (tied) {
    used_.insert(lm_head);  // transformers ignores a stored copy too
  } else {
    direct("output.weight", lm_head, {vocab_, dim_});
  }
}

void Builder::attention(uint32_t l, const std::string& b) {
  const std::string g = "blk." + std::to_string(l) + ".";
  const std::string a = b + "self_attn.";
  const uint32_t q_dim = n_heads_ * head_dim_, kv_dim = n_kv_ * head_dim_;
  // llama's GGUF turns adjacent pairs; Hugging Face's LlamaForCausalLM rotates halves. Llama 4's checkpoints
  // already pair adjacent elements (complex RoPE) and Qwen's GGUF uses NEOX: neither is permuted.
  const bool permute = arch_ == "llama";
  for (const auto& [name, gname, rows, heads] :
       {std::tuple{"q_proj", "attn_q", q_dim, n_heads_}, std::tuple{"k_proj", "attn_k", kv_dim, n_kv_},
        std::tuple{"v_proj", "attn_v", kv_dim, 0u}}) {
    const std::string w = a + name + ".weight", bias = a + name + ".bias";
    if (permute && heads) {
      permuted(g + gname + ".weight", w, {rows, dim_}, heads);
    } else {
      direct(g + gname + ".weight", w, {rows, dim_});
    }
    if (arch_ == "qwen2" || exists(bias)) {
      if (permute && heads) {
        permuted(g + gname + ".bias", bias, {rows}, heads);
      } else {
        direct(g + gname + ".bias", bias, {rows});
      }
    }
  }
  direct(g + "attn_output.weight", a + "o_proj.weight", {dim_, q_dim});
  if (exists(a + "o_proj.bias")) direct(g + "attn_output.bias", a + "o_proj.bias", {dim_});
  if (arch_ == "qwen3" || arch_ == "qwen3moe") {
    direct(g + "attn_q_norm.weight", a + "q_norm.weight", {head_dim_});
    direct(g + "attn_k_norm.weight", a + "k_norm.weight", {head_dim_});
  }
}

void Builder::dense_ffn(uint32_t l, const std::string& b, const std::string& mlp, uint32_t ffn) {
  const std::string g = "blk." + std::to_string(l) + ".";
  direct(g + "ffn_gate.weight", b + mlp + "gate_proj.weight", {ffn, dim_});
  direct(g + "ffn_up.weight", b + mlp + "up_proj.weight", {ffn, dim_});
  direct(g + "ffn_down.weight", b + mlp + "down_proj.weight", {dim_, ffn});
}

// Qwen3-MoE experts: one matrix per expert (checkpoints; transformers 5 fuses them in memory but saves them
// so), stacked into llama.cpp's [in, out, n_expert] tensors.
void Builder::qwen3moe_experts(uint32_t l, const std::string& b) {
  const std::string g = "blk." + std::to_string(l) + ".";
  const uint64_t E = n_expert_, I = expert_ffn_, H = dim_;
  const Entry router = take(b + "mlp.gate.weight", {E, H});
  add(g + "ffn_gate_inp.weight", {H, E}, true, b + "mlp.gate.weight",
      [router, H](uint64_t r, float* out) { router.file->read_f32(*router.info, r * H, H, out); });
  const std::string x = b + "mlp.experts.";
  for (const auto& [name, gname, rows, len] :
       {std::tuple{"gate_proj", "ffn_gate_exps", I, H}, std::tuple{"up_proj", "ffn_up_exps", I, H},
        std::tuple{"down_proj", "ffn_down_exps", H, I}}) {
    std::vector<Entry> experts;
    for (uint64_t e = 0; e < E; ++e)
      experts.push_back(take(x + std::to_string(e) + "." + name + ".weight", {rows, len}));
    add(g + gname + ".weight", {len, rows, E}, false, x + "*." + name + ".weight",
        [experts, rows, len](uint64_t r, float* out) {
          const Entry& e = experts[r / rows];
          e.file->read_f32(*e.info, r % rows * len, len, out);
        });
  }
}

// Llama 4: router [E, H]; experts.gate_up_proj [E, H, 2 * I] and experts.down_proj [E, I, H], both stored
// (in, out), so each GGUF row is a column of theirs; the shared expert is a plain MLP.
void Builder::llama4_moe(uint32_t l, const std::string& b) {
  const std::string g = "blk." + std::to_string(l) + ".";
  const std::string f = b + "feed_forward.";
  const uint64_t E = n_expert_, I = expert_ffn_, H = dim_;
  const Entry router = take(f + "router.weight", {E, H});
  add(g + "ffn_gate_inp.weight", {H, E}, true, f + "router.weight",
      [router, H](uint64_t r, float* out) { router.file->read_f32(*router.info, r * H, H, out); });
  const Entry gu = take(f + "experts.gate_up_proj", {E, H, 2 * I});
  const Entry down = take(f + "experts.down_proj", {E, I, H});
  strided(g + "ffn_gate_exps.weight", f + "experts.gate_up_proj", gu, {H, I, E}, 2 * I,
          [I, H](uint64_t r) { return r / I * H * 2 * I + r % I; });
  strided(g + "ffn_up_exps.weight", f + "experts.gate_up_proj", gu, {H, I, E}, 2 * I,
          [I, H](uint64_t r) { return r / I * H * 2 * I + I + r % I; });
  strided(g + "ffn_down_exps.weight", f + "experts.down_proj", down, {I, H, E}, H,
          [I, H](uint64_t r) { return r / H * I * H + r % H; });
  direct(g + "ffn_gate_shexp.weight", f + "shared_expert.gate_proj.weight", {static_cast<uint64_t>(I), H});
  direct(g + "ffn_up_shexp.weight", f + "shared_expert.up_proj.weight", {static_cast<uint64_t>(I), H});
  direct(g + "ffn_down_shexp.weight", f + "shared_expert.down_proj.weight", {H, static_cast<uint64_t>(I)});
}

// RoPE: the base, the rotated fraction, and the scaling llama.cpp can express (linear as metadata, llama3
// as the rope_freqs factors its converter computes).
void Builder::rope_metadata() {
  const std::string k = arch_ + ".";
  const hf::Rope r = cfg_.rope();
  meta_.set_float32(k + "rope.freq_base", static_cast<float>(r.theta));
  const uint32_t rope_dim = static_cast<uint32_t>(head_dim_ * r.partial_rotary_factor);
  if (rope_dim == 0 || rope_dim % 2 != 0 || rope_dim > head_dim_) {
    cfg_.fail("partial_rotary_factor", "gives " + std::to_string(rope_dim) + " rotated dims of " +
                                           std::to_string(head_dim_) + "; they must be even and at least 2");
  }
  if (arch_ == "llama" || arch_ == "llama4" || rope_dim != head_dim_) {
    meta_.set_uint32(k + "rope.dimension_count", rope_dim);
  }
  if (r.type == "default") return;
  if (r.type == "linear") {
    meta_.set_string(k + "rope.scaling.type", "linear");
    meta_.set_float32(k + "rope.scaling.factor", static_cast<float>(r.factor));
    return;
  }
  if (r.type != "llama3") {
    cfg_.fail("rope_parameters", "has rope type \"" + r.type +
                                     "\", which is not supported (supported: default, "
                                     "linear, llama3)");
  }
  if (!r.original_max_position_embeddings) {
    cfg_.fail("rope_parameters.original_max_position_embeddings",
              "is missing (llama3 rope scaling needs it)");
  }
  const double old_ctx = *r.original_max_position_embeddings;
  const double low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
  std::vector<float> factors;  // [rope_dim / 2]
  for (uint32_t i = 0; i < rope_dim / 2; ++i) {
    const double freq = 1.0 / std::pow(r.theta, 2.0 * i / rope_dim);
    const double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      factors.push_back(static_cast<float>(r.factor));
    } else {
      const double smooth =
          (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      factors.push_back(static_cast<float>(1.0 / ((1 - smooth) / r.factor + smooth)));
    }
  }
  out_.insert(out_.begin(), ConvertTensor{"rope_freqs.weight",
                                          {rope_dim / 2},
                                          true,
                                          "rope_parameters (llama3)",
                                          [factors](uint64_t, float* out) {
                                            std::copy(factors.begin(), factors.end(), out);
                                          }});
}

// Llama 4's MoE interleave, NoPE layers, chunked attention, q/k norm and temperature tuning. llama.cpp
// reads only the interleave step and (for 0) sliding_window, and hard-codes the rest for Meta's models;
// the keys below carry every value, so that other configurations (the fixtures) round-trip.
void Builder::llama4_metadata() {
  const hf::Config& c = cfg_;
  const std::string k = "llama4.";
  n_expert_ = c.u32("num_local_experts");
  expert_ffn_ = c.u32("intermediate_size");
  const uint32_t step = c.u32("interleave_moe_layer_step", 1);
  std::vector<int64_t> expected;
  for (uint32_t l = step ? step - 1 : n_layers_; l < n_layers_; l += step) expected.push_back(l);
  if (c.has("moe_layers") && c.ints("moe_layers") != expected) {
    c.fail("moe_layers",
           "is not every interleave_moe_layer_step-th layer, which llama4 GGUF files cannot express");
  }
  moe_step_ = n_expert_ ? step : 0;
  if (n_expert_) {
    meta_.set_uint32(k + "expert_count", n_expert_);
    meta_.set_uint32(k + "expert_used_count", c.u32("num_experts_per_tok"));
    meta_.set_uint32(k + "expert_feed_forward_length", expert_ffn_);
    meta_.set_uint32(k + "interleave_moe_layer_step", step);
  }

  // no_rope_layers[l] = 1: layer l uses RoPE. Only a period (every step-th layer NoPE) is expressible.
  std::vector<int64_t> rope_layers = c.ints("no_rope_layers");
  const uint32_t interval = c.u32("no_rope_layer_interval", 4);
  if (rope_layers.empty()) {
    for (uint32_t l = 0; l < n_layers_; ++l) rope_layers.push_back((l + 1) % interval != 0);
  }
  if (rope_layers.size() < n_layers_) c.fail("no_rope_layers", "has fewer entries than num_hidden_layers");
  uint32_t nope_step = 0;
  for (uint32_t l = 0; l < n_layers_ && !nope_step; ++l)
    if (rope_layers[l] == 0) nope_step = l + 1;
  for (uint32_t l = 0; l < n_layers_; ++l) {
    if ((rope_layers[l] != 0) != (nope_step == 0 || (l + 1) % nope_step != 0)) {
      c.fail("no_rope_layers",
             "is not periodic (every n-th layer without RoPE), which llama4 GGUF files cannot "
             "express");
    }
  }
  const uint32_t chunk = c.u32("attention_chunk_size", 0);
  const std::vector<std::string> types = c.strings("layer_types");
  for (uint32_t l = 0; l < types.size() && l < n_layers_; ++l) {
    const bool chunked = chunk && (nope_step == 0 || (l + 1) % nope_step != 0);
    if (types[l] != (chunked ? "chunked_attention" : "full_attention")) {
      c.fail("layer_types", "[" + std::to_string(l) + "] = \"" + types[l] +
                                "\" differs from what attention_chunk_size and no_rope_layers give");
    }
  }
  meta_.set_uint32(k + "attention.sliding_window", chunk);
  meta_.set_uint32(k + "no_rope_layer_step", nope_step);
  meta_.set_bool(k + "use_kq_norm", c.boolean("use_qk_norm", true));
  const bool tuning = c.boolean("attn_temperature_tuning", true);
  meta_.set_float32(k + "attention.temperature_scale",
                    tuning ? static_cast<float>(c.number("attn_scale", 0.1)) : 0.0f);
  meta_.set_uint32(k + "attention.temperature_length", c.u32("floor_scale", 8192));
}

void Builder::check_all_used() const {
  for (const std::string& name : weights_.names()) {
    if (used_.count(name) || name.ends_with("rotary_emb.inv_freq") || name.starts_with("vision_model.") ||
        name.starts_with("multi_modal_projector.")) {
      continue;
    }
    const Entry* e = weights_.find(name);
    fail_input(e->file->path() + ": tensor '" + name + "' maps to nothing in a " + arch_ +
               " GGUF file (is config.json's architecture right?)");
  }
}

std::string read_text(const fs::path& p) {
  const MappedFile f(p.string());
  return std::string(f.bytes().begin(), f.bytes().end());
}

// tokenizer.ggml.pre: the llama.cpp pre-tokenizer whose expressions and ignore_merges are the tokenizer's.
std::string pre_tokenizer_name(const tokenizer::Vocab& v, const std::string& path) {
  const std::string all = tokenizer::supported_pre_tokenizers();
  for (size_t start = 0; start < all.size();) {
    size_t end = all.find(", ", start);
    if (end == std::string::npos) end = all.size();
    const std::string name = all.substr(start, end - start);
    start = end + 2;
    const auto cfg = tokenizer::pre_tokenizer_config(name);
    if (cfg && cfg->regexes == v.pre_regexes && cfg->ignore_merges == v.ignore_merges) return name;
  }
  fail_input(path +
             ": the pre-tokenizer (its Split expressions and model.ignore_merges) matches none of "
             "llama.cpp's named pre-tokenizers (" +
             all + ")");
}

void write_tokenizer(const std::string& dir, uint32_t n_vocab, gguf::GgufWriter& meta,
                     std::vector<std::string>& files) {
  const fs::path json_path = fs::path(dir) / "tokenizer.json";
  if (!fs::exists(json_path)) {
    fail_input(dir +
               ": no tokenizer.json (byte-level BPE tokenizers are supported; a SentencePiece "
               "tokenizer.model alone is not)");
  }
  files.push_back(json_path.string());
  tokenizer::Vocab v = tokenizer::vocab_from_hf_json(json_path.string());
  if (v.tokens.size() > n_vocab) {
    fail_input(json_path.string() + ": " + std::to_string(v.tokens.size()) +
               " tokens, more than config.json's "
               "vocab_size " +
               std::to_string(n_vocab));
  }
  std::vector<std::string> tokens = v.tokens;
  std::vector<int32_t> types;
  for (tokenizer::TokenType t : v.types) types.push_back(static_cast<int32_t>(t));
  // As llama.cpp's converter: embedding rows beyond the tokenizer become unused [PADn] tokens.
  for (uint32_t i = static_cast<uint32_t>(tokens.size()); i < n_vocab; ++i) {
    tokens.push_back("[PAD" + std::to_string(i) + "]");
    types.push_back(static_cast<int32_t>(tokenizer::TokenType::Unused));
  }
  std::vector<std::string> merges;
  for (const tokenizer::Merge& m : v.merges) merges.push_back(v.tokens[m.left] + " " + v.tokens[m.right]);
  meta.set_string("tokenizer.ggml.model", "gpt2");
  meta.set_string("tokenizer.ggml.pre", pre_tokenizer_name(v, json_path.string()));
  meta.set_strings("tokenizer.ggml.tokens", tokens);
  meta.set_int32s("tokenizer.ggml.token_type", types);
  meta.set_strings("tokenizer.ggml.merges", merges);
  for (auto [key, id] : {std::pair{"tokenizer.ggml.bos_token_id", v.bos},
                         {"tokenizer.ggml.eos_token_id", v.eos},
                         {"tokenizer.ggml.unknown_token_id", v.unk},
                         {"tokenizer.ggml.padding_token_id", v.pad}}) {
    if (id >= 0) meta.set_uint32(key, static_cast<uint32_t>(id));
  }
  meta.set_bool("tokenizer.ggml.add_bos_token", v.add_bos);
  meta.set_bool("tokenizer.ggml.add_eos_token", v.add_eos);

  // The chat template: chat_template.jinja (transformers 5 saves it there), else tokenizer_config.json's
  // chat_template, a string or a list of named templates ("default" -> tokenizer.chat_template).
  const fs::path jinja = fs::path(dir) / "chat_template.jinja";
  const fs::path config_path = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(jinja)) {
    files.push_back(jinja.string());
    meta.set_string("tokenizer.chat_template", read_text(jinja));
  } else if (fs::exists(config_path)) {
    files.push_back(config_path.string());
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(read_text(config_path));
    } catch (const nlohmann::json::exception& e) {
      fail_input(config_path.string() + ": not valid JSON: " + e.what());
    }
    auto t = config.is_object() ? config.find("chat_template") : config.end();
    if (t == config.end() || t->is_null()) return;
    if (t->is_string()) return meta.set_string("tokenizer.chat_template", t->get<std::string>());
    if (!t->is_array()) fail_input(config_path.string() + ": chat_template is neither a string nor a list");
    for (size_t i = 0; i < t->size(); ++i) {
      const auto& entry = (*t)[i];
      if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
          !entry.contains("template") || !entry["template"].is_string()) {
        fail_input(config_path.string() + ": chat_template[" + std::to_string(i) +
                   "] is not {name, template}");
      }
      const std::string name = entry["name"].get<std::string>();
      meta.set_string(name == "default" ? "tokenizer.chat_template" : "tokenizer.chat_template." + name,
                      entry["template"].get<std::string>());
    }
  }
}

}  // namespace

std::vector<uint8_t> ConvertTensor::encode(gguf::TensorType type, unsigned threads,
                                           const std::function<void(uint64_t)>& done) const {
  const int64_t row_len = static_cast<int64_t>(dims[0]);
  const int64_t n_rows = static_cast<int64_t>(rows());
  const std::string what = "tensor '" + name + "' (from " + source + ")";
  return quant::quantize_rows_parallel(
      type, n_rows, row_len, 65536, threads,
      [&](int64_t first, int64_t n, float* out) {
        for (int64_t r = 0; r < n; ++r) read_row(static_cast<uint64_t>(first + r), out + r * row_len);
      },
      done, what);
}

uint64_t ConvertTensor::rows() const {
  uint64_t r = 1;
  for (size_t i = 1; i < dims.size(); ++i) r *= dims[i];
  return r;
}

std::string supported_hf_architectures() {
  std::string s;
  for (const Arch& a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a.hf);
  return s;
}

std::unique_ptr<HfModel> HfModel::open(const std::string& dir) {
  auto m = std::unique_ptr<HfModel>(new HfModel);
  m->dir_ = dir;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(config_path)) fail_input(dir + ": no config.json (is this a Hugging Face model folder?)");
  m->extra_files_.push_back(config_path);
  const hf::Config cfg = hf::Config::read(config_path);
  const std::string hf_arch = cfg.architecture();
  for (const Arch& a : kArchs)
    if (hf_arch == a.hf) m->arch_ = a.gguf;
  if (m->arch_.empty()) {
    fail_input(config_path + ": architecture '" + hf_arch +
               "' is not supported (supported: " + supported_hf_architectures() + ")");
  }
  m->weights_ = hf::TensorSet::open(dir);
  m->meta_.set_string("general.architecture", m->arch_);
  m->meta_.set_string("general.name", fs::path(dir).lexically_normal().filename().string());

  const std::string prefix = hf_arch == "Llama4ForConditionalGeneration" ? "language_model.model." : "model.";
  Builder b(cfg, *m->weights_, m->arch_, prefix, m->meta_, m->tensors_);
  b.build();
  b.check_all_used();
  write_tokenizer(dir, cfg.u32("vocab_size"), m->meta_, m->extra_files_);

  m->info_.arch = m->arch_;
  m->info_.n_layer = cfg.u32("num_hidden_layers");
  m->info_.n_head = cfg.u32("num_attention_heads");
  m->info_.n_head_kv = cfg.u32("num_key_value_heads", m->info_.n_head);
  m->info_.n_expert = m->arch_ == "qwen3moe" ? (cfg.has("num_local_experts") ? cfg.u32("num_local_experts")
                                                                             : cfg.u32("num_experts"))
                      : m->arch_ == "llama4" ? cfg.u32("num_local_experts")
                                             : 0;
  return m;
}

std::vector<std::string> HfModel::input_files() const {
  std::vector<std::string> files = extra_files_;
  for (const auto& f : weights_->files()) files.push_back(f->path());
  const fs::path index = fs::path(dir_) / "model.safetensors.index.json";
  if (fs::exists(index)) files.push_back(index.string());
  return files;
}

}  // namespace wgllm::model
