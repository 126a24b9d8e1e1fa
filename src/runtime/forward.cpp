#include "runtime/forward.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.hpp"

namespace wgllm::runtime {

namespace {

std::string u32(uint64_t v) { return std::to_string(v) + "u"; }

std::string f32(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  std::string s = buf;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

template <typename T>
std::span<const uint8_t> as_bytes(const T& v) {
  return {reinterpret_cast<const uint8_t*>(&v), sizeof v};
}

}  // namespace

Forward::Forward(gpu::Device& device, const gguf::GgufFile& file, const ForwardOptions& options)
    : device_(device), config_(model::LlamaConfig::from_gguf(file)) {
  const model::LlamaWeights weights = model::LlamaWeights::map(file, config_);
  const auto& c = config_;
  n_ctx_ = options.n_ctx ? options.n_ctx : std::min<uint32_t>(c.context_length, 4096);
  subgroups_ = options.use_subgroups && device.features().subgroups;
  auto storage = [&](uint64_t floats, const char* label) { return device.buffer(floats * 4, gpu::kStorage, label); };

  step_ = device.buffer(sizeof(StepParams), gpu::kUniform, "step params");
  token_ = storage(1, "token");
  history_ = storage(kPenaltyHistory + 1, "penalty history");
  x_ = storage(c.dim, "x");
  xb_ = storage(c.dim, "xb");
  qkv_ = storage(c.q_dim() + 2ull * c.kv_dim(), "qkv");
  attn_ = storage(c.q_dim(), "attention out");
  scores_ = storage(uint64_t(c.n_heads) * n_ctx_, "attention scores");
  gate_up_ = storage(2ull * c.ffn_dim, "ffn gate|up");
  logits_ = storage(c.n_vocab, "logits");
  // cos/sin of every (position, pair) angle, in double like the CPU reference: [n_ctx, rope_dim / 2, 2].
  std::vector<float> inv_freq = model::rope_inv_freq(c, weights.rope_freq_factors);
  std::vector<float> table(uint64_t(n_ctx_) * inv_freq.size() * 2);
  for (uint64_t p = 0; p < n_ctx_; ++p)
    for (size_t j = 0; j < inv_freq.size(); ++j) {
      double theta = double(p) * double(inv_freq[j]);
      table[(p * inv_freq.size() + j) * 2] = static_cast<float>(std::cos(theta));
      table[(p * inv_freq.size() + j) * 2 + 1] = static_cast<float>(std::sin(theta));
    }
  rope_table_ = storage(table.size(), "rope cos/sin");
  device.write(rope_table_, 0, {reinterpret_cast<const uint8_t*>(table.data()), table.size() * 4});

  auto matrix = [&](const gguf::TensorInfo* t) {
    GpuMatrix m = upload_matrix(device, file, *t);
    weight_bytes_ += t->n_bytes;
    weight_gpu_bytes_ += m.gpu_bytes();
    return m;
  };
  auto vec = [&](const gguf::TensorInfo* t) {
    gpu::Buffer b = upload_f32(device, file, *t);
    weight_bytes_ += t->n_bytes;
    weight_gpu_bytes_ += b.size;
    return b;
  };

  gpu::KernelDefines heads = {{"N_HEADS", u32(c.n_heads)}, {"N_KV", u32(c.n_kv_heads)}, {"HEAD_DIM", u32(c.head_dim)}};

  // token id (GPU) -> embedding row
  GpuMatrix embd = matrix(weights.token_embd);
  {
    gpu::KernelDefines d = weight_defines(embd.type);
    d["EMBED"] = "1";
    for (const auto& ch : embd.chunks) {  // only the chunk holding the token's row writes
      d["COLS"] = u32(embd.cols);
      d["ROWS"] = u32(ch.rows);
      d["Y_OFFSET"] = u32(ch.first_row);
      std::vector<gpu::BufferSlice> b = {{ch.quants}};
      if (ch.scales) b.push_back({ch.scales});
      b.push_back({token_});
      b.push_back({x_});
      add(forward_ops_, "matvec", d, b, embd.cols, 256);
    }
  }

  for (uint32_t l = 0; l < c.n_layers; ++l) {
    const model::LayerWeights& lw = weights.layers[l];
    k_cache_.push_back(storage(uint64_t(n_ctx_) * c.kv_dim(), "k cache"));
    v_cache_.push_back(storage(uint64_t(n_ctx_) * c.kv_dim(), "v cache"));
    gpu::Buffer attn_norm = vec(lw.attn_norm), ffn_norm = vec(lw.ffn_norm);
    GpuMatrix wq = matrix(lw.wq), wk = matrix(lw.wk), wv = matrix(lw.wv), wo = matrix(lw.wo);
    GpuMatrix w_gate = matrix(lw.ffn_gate), w_up = matrix(lw.ffn_up), w_down = matrix(lw.ffn_down);

    // attention block: x += Wo · attention(rope(Wq·norm(x)), cache(rope(Wk·norm(x)), Wv·norm(x)))
    add_normed(forward_ops_, {&wq, &wk, &wv}, qkv_, attn_norm);
    gpu::KernelDefines rope = heads;
    rope["ROPE_DIM"] = u32(c.rope_dim);
    add(forward_ops_, "rope_kv", rope, {{step_}, {rope_table_}, {qkv_}, {k_cache_[l]}, {v_cache_[l]}},
        (c.n_heads + c.n_kv_heads) * c.head_dim / 2 + c.kv_dim() / 2, 64);
    gpu::KernelDefines att = heads;
    att["CTX"] = u32(n_ctx_);
    att["SCALE"] = f32(1.0 / std::sqrt(double(c.head_dim)));
    add(forward_ops_, "attention", att, {{step_}, {qkv_}, {k_cache_[l]}, {v_cache_[l]}, {scores_}, {attn_}},
        c.n_heads * 256, 256);
    add_matvec(forward_ops_, wo, attn_, x_, true);

    // feed-forward block: x += W_down · (silu(W_gate·norm(x)) * W_up·norm(x))
    add_normed(forward_ops_, {&w_gate, &w_up}, gate_up_, ffn_norm);
    add(forward_ops_, "silu_mul", {{"N", u32(c.ffn_dim)}}, {{gate_up_}}, c.ffn_dim, 256);
    add_matvec(forward_ops_, w_down, gate_up_, x_, true);
  }

  // final norm -> LM head
  gpu::Buffer out_norm = vec(weights.output_norm);
  GpuMatrix head = weights.output == weights.token_embd ? embd : matrix(weights.output);
  add_normed(forward_ops_, {&head}, logits_, out_norm);

  // sampler -> the next token id, left on the GPU
  add(sample_ops_, "sample", {{"N_VOCAB", u32(c.n_vocab)}, {"HISTORY", u32(kPenaltyHistory)}},
      {{step_}, {logits_}, {history_}, {token_}}, 1);
}

gpu::KernelDefines Forward::variant(gpu::KernelDefines defines) const {
  if (subgroups_) defines["SUBGROUPS"] = "1";
  return defines;
}

void Forward::add(std::vector<Op>& ops, std::string_view kernel, const gpu::KernelDefines& defines,
                  std::vector<gpu::BufferSlice> bindings, uint32_t threads_x, uint32_t workgroup) {
  gpu::Kernel k = device_.kernel(kernel, variant(defines));
  gpu::BindGroup g = device_.bind(k, bindings);
  uint32_t groups = (threads_x + workgroup - 1) / workgroup;
  // Past the per-dimension limit the grid folds into y; kernels recompute the linear index.
  uint32_t max_x = std::max<uint32_t>(1, device_.limits().max_compute_workgroups_per_dimension);
  uint32_t x = std::min(groups, max_x);
  ops.push_back({k, g, x, (groups + x - 1) / x});
}

bool Forward::can_stage(const GpuMatrix& m) const {
  constexpr uint64_t kReductionBytes = 256 * 4;  // matvec.wgsl's `partial`
  return weight_defines(m.type).contains("QUANT") && m.cols % 4 == 0 &&
         uint64_t(m.cols) * 4 + kReductionBytes <= device_.limits().max_compute_workgroup_storage_size;
}

void Forward::add_normed(std::vector<Op>& ops, std::vector<const GpuMatrix*> ms, gpu::Buffer y, gpu::Buffer norm) {
  bool fused = std::all_of(ms.begin(), ms.end(), [&](const GpuMatrix* m) { return can_stage(*m); });
  if (!fused)
    add(ops, "rms_norm", {{"N", u32(config_.dim)}, {"EPS", f32(config_.rms_eps)}}, {{x_}, {norm}, {xb_}}, 1);
  uint32_t offset = 0;
  for (const GpuMatrix* m : ms) {
    if (fused) add_matvec(ops, *m, x_, y, false, norm, offset);
    else add_matvec(ops, *m, xb_, y, false, {}, offset);
    offset += m->rows;
  }
}

uint64_t Forward::bytes_per_token(uint32_t pos) const {
  return gemv_bytes_ + 2ull * config_.n_layers * (pos + 1ull) * config_.kv_dim() * 4;
}

void Forward::add_matvec(std::vector<Op>& ops, const GpuMatrix& m, gpu::Buffer x, gpu::Buffer y, bool accumulate,
                         gpu::Buffer norm, uint32_t y_offset) {
  gemv_bytes_ += m.bytes;
  for (const auto& ch : m.chunks) {
    gpu::KernelDefines d = weight_defines(m.type);
    d["ROWS"] = u32(ch.rows);
    d["COLS"] = u32(m.cols);
    d["Y_OFFSET"] = u32(y_offset + ch.first_row);
    if (accumulate) d["ACCUMULATE"] = "1";
    if (can_stage(m)) d["STAGE_X"] = "1";
    if (norm) {
      d["NORM"] = "1";
      d["EPS"] = f32(config_.rms_eps);
    }
    std::vector<gpu::BufferSlice> b = {{ch.quants}};
    if (ch.scales) b.push_back({ch.scales});
    b.push_back({x});
    b.push_back({y});
    if (norm) b.push_back({norm});
    constexpr uint32_t kRowsPerWorkgroup = 8;  // matvec.wgsl: WG / TPR
    add(ops, "matvec", d, b, (ch.rows + kRowsPerWorkgroup - 1) / kRowsPerWorkgroup, 1);
  }
}

void Forward::set_token(int32_t id) {
  uint32_t v = static_cast<uint32_t>(id);
  device_.write(token_, 0, as_bytes(v));
}

void Forward::set_step(const StepParams& params) { device_.write(step_, 0, as_bytes(params)); }

void Forward::set_history(std::span<const int32_t> tokens) {
  std::vector<uint32_t> ring(kPenaltyHistory + 1, 0);
  size_t n = tokens.size();
  for (size_t i = n > kPenaltyHistory ? n - kPenaltyHistory : 0; i < n; ++i)
    ring[i % kPenaltyHistory] = static_cast<uint32_t>(tokens[i]);
  ring[kPenaltyHistory] = static_cast<uint32_t>(n);
  device_.write(history_, 0, {reinterpret_cast<const uint8_t*>(ring.data()), ring.size() * 4});
}

void Forward::record(bool sample) {
  for (const Op& op : forward_ops_) device_.dispatch(op.kernel, op.group, op.x, op.y);
  if (sample)
    for (const Op& op : sample_ops_) device_.dispatch(op.kernel, op.group, op.x, op.y);
}

uint32_t Forward::dispatches_per_token(bool sample) const {
  return static_cast<uint32_t>(forward_ops_.size() + (sample ? sample_ops_.size() : 0));
}

}  // namespace wgllm::runtime
