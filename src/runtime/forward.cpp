#include "runtime/forward.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>

#include "core/error.hpp"
#include "kernels/attention.hpp"
#include "kernels/kernel_sources.hpp"
#include "kernels/matmul.hpp"
#include "kernels/matvec.hpp"
#include "kernels/rope_kv.hpp"
#include "kernels/sample.hpp"
#include "runtime/memory_plan.hpp"

namespace wgllm::runtime {

namespace {

using kernels::f32;
using kernels::u32;

template <typename T>
std::span<const uint8_t> bytes_of(std::span<const T> v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size_bytes()};
}

uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) / a * a;
}

// Rows each lane group of a quantized GEMV computes from one read of each chunk's staged inputs
// (matvec.wgsl's STAGE_ROWS). More rows cut the workgroup-memory reads per weight byte and the staging
// (and fused norm) each workgroup repeats, and put more loads in flight per lane, which pays on tall
// matrices (FFN, LM head: 4) and middling ones (8B's q|k|v, wo, down: 2) but starves short ones of
// workgroups (1024 rows: 32), so those keep 1; passes of several tokens hold a row's accumulators per
// column, so passes of 16 take at most 2 (32 sums per lane, what the butterfly reduction takes at once;
// 4 rows at 8 columns: 8-token steps -9 % on the H100, docs/perf.md).
uint32_t stage_rows(uint32_t rows, uint32_t columns) {
  if (rows < 4096) return 1;
  if (rows < 8192) return 2;
  return columns <= 8 ? 4 : 2;
}
// The matrices of some lists and single ones, in order.
std::vector<const GpuMatrix*> pointers(const std::vector<GpuMatrix>& a, const std::vector<GpuMatrix>& b = {},
                                       std::initializer_list<const GpuMatrix*> more = {}) {
  std::vector<const GpuMatrix*> p;
  for (const GpuMatrix& m : a) p.push_back(&m);
  for (const GpuMatrix& m : b) p.push_back(&m);
  p.insert(p.end(), more);
  return p;
}
static_assert(Forward::kMaxWidth == Forward::kWidths[std::size(Forward::kWidths) - 1]);

}  // namespace

uint32_t Forward::width_for(uint32_t tokens) {
  for (uint32_t w : kWidths)
    if (w >= tokens) return w;
  return kMaxWidth;
}

Forward::Forward(gpu::Device& device, const gguf::GgufFile& file, const ForwardOptions& options)
    : device_(device), config_(model::LlamaConfig::from_gguf(file, kFeatures)) {
  const model::LlamaWeights weights = model::LlamaWeights::map(file, config_);
  const auto& c = config_;
  if (c.head_dim % 4 != 0 || c.head_dim > 256)
    fail_input(file.path() + ": head dimension " + std::to_string(c.head_dim) +
               " is not supported (the attention kernel needs a multiple of 4, at most 256)");
  first_layer_ = options.first_layer;
  last_layer_ = options.last_layer ? options.last_layer : c.n_layers;
  if (first_layer_ >= last_layer_ || last_layer_ > c.n_layers)
    fail_input("layers " + std::to_string(first_layer_) + " to " + std::to_string(last_layer_) +
               " are not a range of the model's " + std::to_string(c.n_layers));
  n_ctx_ = options.n_ctx ? options.n_ctx : std::min<uint32_t>(c.context_length, 4096);
  n_seq_ = std::max<uint32_t>(1, options.n_seq);
  max_batch_ = std::max(options.max_batch ? options.max_batch : std::min<uint32_t>(512, n_ctx_), n_seq_);
  max_rows_ = std::max(options.max_logits ? options.max_logits : n_seq_, 1u);
  tile_rows_ = static_cast<uint32_t>(align_up(max_batch_, kMaxWidth));
  subgroups_ = options.use_subgroups && device.features().subgroups;
  prefill_matmul_ = options.prefill_matmul && max_batch_ > kMaxWidth;
  int8_activations_ = options.int8_activations;
  const gpu::Limits& limits = device.limits();
  auto storage = [&](uint64_t floats, const char* label) {
    return device.buffer(floats * 4, gpu::kStorage, label);
  };

  // A model the device cannot hold fails here, with the bytes needed and available, before any upload.
  check_memory(plan_memory(file, c, {n_ctx_, n_seq_, max_batch_, max_rows_}),
               {limits.max_buffer_size, options.device_memory}, file.path());
  // Quantized matrices are repacked on the GPU (kernels/repack.wgsl) unless the adapter is a CPU, where the
  // C++ repack is faster (docs/quantization.md), or the host already set up its own upload (the browser).
  std::optional<WeightUpload> upload;
  if (!WeightUpload::active()) upload.emplace(device, WeightUpload::Options{});

  const uint64_t cache_bytes = uint64_t(n_seq_) * n_ctx_ * c.kv_dim() * 4;
  if (cache_bytes > limits.max_storage_buffer_binding_size)
    fail_input(
        "a KV cache of " + std::to_string(n_seq_) + " slots x " + std::to_string(n_ctx_) +
        " positions needs " + std::to_string(cache_bytes) + " bytes per layer, more than this GPU binds (" +
        std::to_string(limits.max_storage_buffer_binding_size) + "): use fewer slots or a smaller context");

  // Pass metadata: header [16 B] | tokens [max_batch] | rows [max_rows], each part at a binding offset.
  const uint64_t align = std::max<uint64_t>(limits.min_storage_buffer_offset_alignment, 16);
  tokens_offset_ = align_up(16, align);
  rows_offset_ = align_up(tokens_offset_ + uint64_t(max_batch_) * sizeof(GpuToken), align);
  pass_bytes_ = align_up(rows_offset_ + uint64_t(max_rows_) * sizeof(GpuRow), align);
  staging_ = device.buffer(pass_bytes_ * kPassesPerSubmit, gpu::kStorage, "pass metadata staging");
  pass_ = device.buffer(pass_bytes_, gpu::kStorage | gpu::kUniform, "pass metadata");
  tokens_slice_ = {pass_, tokens_offset_, uint64_t(max_batch_) * sizeof(GpuToken)};
  rows_slice_ = {pass_, rows_offset_, uint64_t(max_rows_) * sizeof(GpuRow)};
  header_slice_ = {pass_, 0, 16};  // matmul's and quantize_act's `batch` uniform: the token count first

  sampled_ = storage(n_seq_, "sampled ids");
  history_ = storage(uint64_t(n_seq_) * (kPenaltyHistory + 1), "penalty history");
  x_ = storage(uint64_t(tile_rows_) * c.dim, "x");
  xb_ = storage(uint64_t(std::max<uint32_t>(tile_rows_, align_up(max_rows_, kMaxWidth))) * c.dim, "xb");
  qkv_ = storage(uint64_t(tile_rows_) * (c.q_dim() + 2ull * c.kv_dim()), "qkv");
  attn_ = storage(uint64_t(tile_rows_) * c.q_dim(), "attention out");
  {
    const AttentionSpans spans = attention_spans(n_ctx_);
    span_ = spans.span;
    spans_ = spans.count;
    if (spans_ > 1) part_ = storage(attention_partials_bytes(c, n_ctx_, kMaxWidth) / 4, "attention partials");
    attention_heads_ = kernels::attention_heads_per_workgroup(c.n_heads, c.n_kv_heads, c.head_dim);
  }
  // The dense FFN's gate|up, or a mixture-of-experts layer's chosen experts' (then its shared expert's).
  const uint32_t ffn_width = std::max({c.ffn_dim, c.n_expert_used * c.expert_ffn_dim, c.shexp_ffn_dim});
  gate_up_ = storage(uint64_t(tile_rows_) * 2 * ffn_width, "ffn gate|up");
  if (c.moe_layer_step) {
    // A pass's expert GEMVs run one workgroup per (token, slot) along x.
    if (uint64_t(max_batch_) * c.n_expert_used > limits.max_compute_workgroups_per_dimension)
      fail_input("passes of " + std::to_string(max_batch_) + " tokens with " +
                 std::to_string(c.n_expert_used) + " experts each exceed this GPU's " +
                 std::to_string(limits.max_compute_workgroups_per_dimension) +
                 " workgroups per dimension: use a smaller batch");
    moe_logits_ = storage(uint64_t(tile_rows_) * c.n_expert, "router logits");
    // Each MoE layer's routes stay until the next pass (route()), at bindable offsets.
    uint32_t moe_layers = 0;
    for (uint32_t l = first_layer_; l < last_layer_; ++l) moe_layers += c.layer_is_moe(l) ? 1 : 0;
    route_bytes_ = uint64_t(tile_rows_) * c.n_expert_used * 8;
    route_stride_ = align_up(route_bytes_, align);
    route_ = device.buffer(std::max<uint64_t>(route_stride_ * moe_layers, 4), gpu::kStorage, "routes");
    moe_out_ = storage(uint64_t(tile_rows_) * c.n_expert_used * c.dim, "experts' outputs");
  }
  logits_ = storage(align_up(max_rows_, kMaxWidth) * c.n_vocab, "logits");
  if (prefill_matmul_ || int8_activations_) {
    // Rows: the pass's tokens, or its logits rows, in whole GEMV tiles.
    const uint32_t widest = std::max({c.dim, c.q_dim(), c.ffn_dim, c.shexp_ffn_dim});
    const uint32_t rows = std::max<uint32_t>(tile_rows_, align_up(max_rows_, kMaxWidth));
    xq_ = device.buffer(kernels::act_codes_bytes(rows, widest), gpu::kStorage, "int8 activations");
    xs_ = device.buffer(kernels::act_scales_bytes(rows, widest), gpu::kStorage, "int8 activation scales");
  }
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
  device.write(rope_table_, 0, bytes_of(std::span<const float>(table)));
  // NoPE layers scale q by the attention temperature of each position, computed in double as the CPU
  // reference does (the same on every NoPE layer).
  for (uint32_t l = first_layer_; l < last_layer_ && !q_scale_; ++l) {
    if (c.layer_uses_rope(l)) continue;
    std::vector<float> scale(n_ctx_);
    for (uint32_t p = 0; p < n_ctx_; ++p) scale[p] = static_cast<float>(c.attention_temperature(l, p));
    q_scale_ = storage(scale.size(), "q scale (attention temperature)");
    device.write(q_scale_, 0, bytes_of(std::span<const float>(scale)));
  }

  auto matrix = [&](const gguf::TensorInfo* t) {
    GpuMatrix m = upload_matrix(device, file, *t);
    weight_bytes_ += t->n_bytes;
    weight_gpu_bytes_ += m.gpu_bytes();
    return m;
  };
  auto stacked = [&](std::vector<const gguf::TensorInfo*> ts) {
    std::vector<GpuMatrix> ms;
    if (std::optional<GpuMatrix> m = upload_stacked(device, file, ts)) {
      weight_bytes_ += m->bytes;
      weight_gpu_bytes_ += m->gpu_bytes();
      ms.push_back(std::move(*m));
    } else {
      for (const gguf::TensorInfo* t : ts) ms.push_back(matrix(t));
    }
    return ms;
  };
  auto experts = [&](const gguf::TensorInfo* t) {  // [in, rows, n_expert]: chunks of whole experts
    GpuMatrix m = upload_matrix(device, file, *t, static_cast<uint32_t>(t->dims[1]));
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
  auto vecs = [&](std::span<const gguf::TensorInfo* const> ts) {
    gpu::Buffer b = upload_f32s(device, file, ts);
    for (const gguf::TensorInfo* t : ts) weight_bytes_ += t->n_bytes;
    weight_gpu_bytes_ += b.size;
    return b;
  };

  if (first_stage() || (last_stage() && weights.output == weights.token_embd))
    embd_ = matrix(weights.token_embd);
  for (uint32_t l = first_layer_; l < last_layer_; ++l) {
    const model::LayerWeights& lw = weights.layers[l];
    Layer layer{vec(lw.attn_norm),
                vec(lw.ffn_norm),
                stacked({lw.wq, lw.wk, lw.wv}),
                {},
                matrix(lw.wo),
                {},
                storage(cache_bytes / 4, "k cache"),
                storage(cache_bytes / 4, "v cache")};
    if (lw.ffn_gate) {
      layer.gate_up = stacked({lw.ffn_gate, lw.ffn_up});
      layer.down = matrix(lw.ffn_down);
    } else {
      layer.route = {route_, route_stride_ * moe_layers_++, route_bytes_};
      layer.router = matrix(lw.ffn_gate_inp);
      layer.gate_exps = experts(lw.ffn_gate_exps);
      layer.up_exps = experts(lw.ffn_up_exps);
      layer.down_exps = experts(lw.ffn_down_exps);
      // A decode step reads the router and, on average, n_expert_used of the n_expert experts.
      gemv_bytes_ +=
          layer.router.bytes + (layer.gate_exps.bytes + layer.up_exps.bytes + layer.down_exps.bytes) *
                                   c.n_expert_used / c.n_expert;
      if (lw.ffn_gate_shexp) {
        layer.gate_up = stacked({lw.ffn_gate_shexp, lw.ffn_up_shexp});
        layer.down = matrix(lw.ffn_down_shexp);
      }
    }
    std::vector<const gguf::TensorInfo*> extra;  // rope_kv's: biases, then q/k norm weights
    if (lw.bq) extra.insert(extra.end(), {lw.bq, lw.bk, lw.bv});
    if (lw.attn_q_norm) extra.insert(extra.end(), {lw.attn_q_norm, lw.attn_k_norm});
    if (!extra.empty()) layer.attn_extra = vecs(extra);
    if (lw.bo) layer.bo = vec(lw.bo);
    for (const GpuMatrix* m : pointers(layer.qkv, layer.gate_up, {&layer.wo, &layer.down}))
      gemv_bytes_ += m->bytes;
    layers_.push_back(std::move(layer));
  }
  if (last_stage()) {
    out_norm_ = vec(weights.output_norm);
    head_ = weights.output == weights.token_embd ? embd_ : matrix(weights.output);
    gemv_bytes_ += head_.bytes;
    // sampler -> the next token id of each sampled row's slot, left on the GPU: the parts of every row
    // reduced by workgroups of their own, then merged per row. A pass samples at most one row per slot.
    const kernels::SampleKernels sample = kernels::sample_kernels(c.n_vocab, kPenaltyHistory);
    sample_parts_ =
        device.buffer(sample.partials_bytes(std::min(n_seq_, max_rows_)), gpu::kStorage, "sampler partials");
    add(sample_ops_, "sample", sample.reduce, {rows_slice_, {logits_}, {history_}, {sample_parts_}},
        sample.parts, Over::Rows);
    add(sample_ops_, "sample", sample.merge, {rows_slice_, {sample_parts_}, {history_}, {sampled_}}, 1,
        Over::Rows);
  }

  // token ids (from the pass, or the sampler's last for the slot) -> embedding rows; only the chunk of the
  // table holding a token's row writes it.
  for (const auto& ch : first_stage() ? embd_.chunks : std::vector<GpuMatrix::Chunk>{}) {
    gpu::KernelDefines d = weight_defines(embd_.type);
    d["EMBED"] = "1";
    d["COLS"] = u32(embd_.cols);
    d["ROWS"] = u32(ch.rows);
    d["Y_OFFSET"] = u32(ch.first_row);
    std::vector<gpu::BufferSlice> b = {{ch.quants}};
    if (ch.scales) b.push_back({ch.scales});
    b.push_back(tokens_slice_);
    b.push_back({x_});
    b.push_back({sampled_});
    add(embed_ops_, "matvec", d, b, (embd_.cols + 255) / 256);
  }
  // What a decode step needs is compiled at load; other widths on first use.
  body(1);
  if (last_stage()) head(0);
}

gpu::KernelDefines Forward::variant(gpu::KernelDefines defines) const {
  if (subgroups_) kernels::add_subgroup_defines(defines, device_.info().subgroup_min_size);
  return defines;
}

void Forward::add(Ops& ops, std::string_view kernel, const gpu::KernelDefines& defines,
                  std::vector<gpu::BufferSlice> bindings, uint32_t groups_y, Over over, uint32_t width) {
  gpu::Kernel k = device_.kernel(kernel, variant(defines));
  gpu::BindGroup g = device_.bind(k, bindings);
  // Past the per-dimension limit the grid folds into z; kernels recompute the linear index.
  uint32_t max = std::max<uint32_t>(1, device_.limits().max_compute_workgroups_per_dimension);
  uint32_t y = std::min(groups_y, max);
  ops.push_back({k, g, y, (groups_y + y - 1) / y, over, width, 0});
}

void Forward::add_quantize(Ops& ops, gpu::Buffer x, uint32_t cols, uint32_t stride, gpu::Buffer norm,
                           Over over) {
  const kernels::KernelDispatch d =
      kernels::quantize_act_dispatch(cols, max_batch_, stride, bool(norm), config_.rms_eps);
  std::vector<gpu::BufferSlice> b = {{x}, {xq_}, {xs_}, header_slice_};
  if (norm) b.push_back({norm});
  gpu::Kernel k = device_.kernel("quantize_act", variant(d.defines));
  ops.push_back({k, device_.bind(k, b), d.groups_x, 1, over, 1, 1});
}

void Forward::add_matmul(Ops& ops, const GpuMatrix& m, const Projection& p, bool int8) {
  for (const auto& ch : m.chunks) {
    kernels::MatmulShape shape{weight_defines(m.type),    ch.rows,    m.cols,       max_batch_, p.y_stride,
                               p.y_offset + ch.first_row, p.x_stride, p.accumulate, int8};
    const kernels::MatmulTile tile =
        kernels::matmul_tile(shape, device_.limits().max_compute_workgroup_storage_size);
    const kernels::KernelDispatch d = kernels::matmul_dispatch(shape, tile);
    std::vector<gpu::BufferSlice> b = {{ch.quants}};
    if (ch.scales) b.push_back({ch.scales});
    b.push_back({int8 ? xq_ : p.x});
    b.push_back({p.y});
    b.push_back(header_slice_);
    if (int8) b.push_back({xs_});
    gpu::Kernel k = device_.kernel("matmul", variant(d.defines));
    ops.push_back({k, device_.bind(k, b), d.groups_x, 1, Over::Tokens, tile.bm, 1});
  }
}

void Forward::add_prefill_group(Ops& ops, std::vector<const GpuMatrix*> ms, gpu::Buffer x, uint32_t cols,
                                uint32_t x_stride, gpu::Buffer norm, const Projection& out) {
  const bool int8 = int8_activations_ && std::all_of(ms.begin(), ms.end(), [&](const GpuMatrix* m) {
                      return kernels::matmul_int8_supported(weight_defines(m->type), m->cols);
                    });
  Projection p = out;
  p.x = x;
  p.x_stride = x_stride;
  if (int8) {
    add_quantize(ops, x, cols, x_stride, norm);
  } else if (norm) {
    add(ops, "rms_norm", {{"N", u32(cols)}, {"EPS", f32(config_.rms_eps)}}, {{x}, {norm}, {xb_}}, 1);
    p.x = xb_;
    p.x_stride = cols;
  }
  for (const GpuMatrix* m : ms) {
    add_matmul(ops, *m, p, int8);
    p.y_offset += m->rows;
  }
}

bool Forward::can_stage(const GpuMatrix& m) const {
  return weight_defines(m.type).contains("QUANT");
}

Forward::MatvecPlan Forward::matvec_plan(const GpuMatrix& m, uint32_t rows, const Projection& p,
                                         uint32_t width) const {
  const auto& limits = device_.limits();
  MatvecPlan plan;
  const bool quant = can_stage(m);
  plan.input = !quant              ? kernels::MatvecInput::Direct
               : int8_activations_ ? kernels::MatvecInput::Int8
                                   : kernels::MatvecInput::F32;
  const bool row_sums = p.rope_kv || p.glu;
  plan.tiling = kernels::matvec_tiling(plan.input, p.experts ? 1 : width, m.cols / 32,
                                       limits.max_compute_workgroup_storage_size, row_sums);
  plan.rows_per_lane_group = !quant ? 1 : stage_rows(rows, plan.tiling.columns);
  plan.workgroup =
      p.experts
          ? kernels::kMatvecWorkgroup
          : kernels::matvec_workgroup_size(
                plan.input, plan.tiling, row_sums, rows, plan.rows_per_lane_group,
                std::min(limits.max_compute_invocations_per_workgroup, limits.max_compute_workgroup_size_x),
                limits.max_compute_workgroup_storage_size);
  return plan;
}

bool Forward::glu_fits_gemv(const Layer& l, uint32_t width) const {
  if (width != 1 || !int8_activations_ || !can_stage(l.down) || l.gate_up.size() != 1) return false;
  const GpuMatrix& m = l.gate_up[0];
  if (!can_stage(m) || m.chunks.size() != 1 || m.rows % 2 != 0) return false;
  Projection p = {};
  p.glu = true;
  const MatvecPlan plan = matvec_plan(m, m.rows, p, width);
  // Each workgroup's gate rows (and as many up rows) must be whole chunks of the output.
  const uint32_t pairs = plan.workgroup / kernels::kMatvecLanesPerRow * plan.rows_per_lane_group / 2;
  return plan.tiling.columns == 1 && pairs % 32 == 0 && (m.rows / 2) % pairs == 0;
}

void Forward::add_projection(Ops& ops, const GpuMatrix& m, const Projection& p, uint32_t width, Over over) {
  const bool quant = can_stage(m);
  if (quant && p.x_stride % 4 != 0)
    fail_runtime("matvec input stride " + std::to_string(p.x_stride) + " is not a multiple of 4");
  // An expert GEMV's workgroups compute one expert's rows (those of the expert its slot chose).
  const uint32_t expert_rows = p.experts ? m.rows / config_.n_expert : 0;
  for (const auto& ch : m.chunks) {
    const uint32_t rows = p.experts ? expert_rows : ch.rows;
    const MatvecPlan plan = matvec_plan(m, rows, p, width);
    const kernels::MatvecInput input = plan.input;
    const kernels::MatvecTiling& tiling = plan.tiling;
    gpu::KernelDefines d = weight_defines(m.type);
    d["ROWS"] = u32(ch.rows);
    d["COLS"] = u32(m.cols);
    d["BATCH"] = u32(tiling.columns);
    d["X_STRIDE"] = u32(p.x_stride);
    d["Y_STRIDE"] = u32(p.y_stride);
    d["Y_OFFSET"] = u32(p.y_offset + (p.experts ? 0 : ch.first_row));
    if (p.accumulate) d["ACCUMULATE"] = "1";
    if (p.experts) {
      d["EXPERTS"] = u32(p.experts);
      d["EXPERT_ROWS"] = u32(expert_rows);
      d["FIRST_EXPERT"] = u32(ch.first_row / expert_rows);
      if (p.token_input) d["TOKEN_INPUT"] = "1";
    }
    const uint32_t rows_per_lane_group = plan.rows_per_lane_group, workgroup = plan.workgroup;
    if (quant) d["STAGE_ROWS"] = u32(rows_per_lane_group);
    if (workgroup != kernels::kMatvecWorkgroup) d["WG_SIZE"] = u32(workgroup);
    if (input == kernels::MatvecInput::Int8) {
      d["INT8"] = "1";
      d["LANE_CHUNKS"] = u32(tiling.lane_chunks);
      if (const uint32_t parts = kernels::matvec_stage_parts(tiling, workgroup); parts && !p.prequant)
        d["STAGE_PARTS"] = u32(parts);
    }
    if (p.norm) {
      d["NORM"] = "1";
      d["EPS"] = f32(config_.rms_eps);
    }
    if (p.prequant) d["PREQUANT"] = "1";
    std::vector<gpu::BufferSlice> b = {{ch.quants}};
    if (ch.scales) b.push_back({ch.scales});
    b.push_back({p.prequant ? xq_ : p.x});
    b.push_back({p.y});
    if (p.norm) b.push_back({p.norm});
    if (p.prequant) b.push_back({xs_});
    if (p.experts) b.push_back(p.route);
    if (p.rope_kv) {
      // Bindings 5.. after the norm's or the scales' 4; rows in pairs within every workgroup.
      if (!quant || !ch.scales || p.experts || p.accumulate || (!p.norm && !p.prequant) ||
          (p.y_offset + ch.first_row) % 2 != 0 || ch.rows % 2 != 0)
        fail_runtime("matvec: ROPE_KV does not fit this projection");
      d["ROPE_KV"] = "1";
      d["N_HEADS"] = u32(config_.n_heads);
      d["N_KV"] = u32(config_.n_kv_heads);
      d["HEAD_DIM"] = u32(config_.head_dim);
      d["ROPE_DIM"] = u32(config_.rope_dim);
      d["CTX"] = u32(n_ctx_);
      b.insert(b.end(),
               {tokens_slice_, {rope_table_}, {p.rope_kv->k_cache}, {p.rope_kv->v_cache}, header_slice_});
    }
    if (p.glu) {
      // Bindings 5, 6 after the norm's 4; glu_fits_gemv checked the shape.
      if (!p.norm || m.chunks.size() != 1 || tiling.columns != 1)
        fail_runtime("matvec: GLU does not fit this projection");
      d["GLU"] = "1";
      b.insert(b.end(), {{xq_}, {xs_}});
    }
    const uint32_t per_group = workgroup / kernels::kMatvecLanesPerRow * rows_per_lane_group;
    add(ops, "matvec", d, b, (rows + per_group - 1) / per_group, over, tiling.columns);
    if (p.experts) ops.back().per_token = p.experts;
  }
}

void Forward::add_experts(Ops& ops, const GpuMatrix& m, gpu::BufferSlice route, gpu::Buffer x,
                          uint32_t x_stride, bool token_input, gpu::Buffer y, uint32_t y_stride,
                          uint32_t y_offset) {
  Projection p{x, y, x_stride, y_stride, y_offset, false, {}};
  p.route = route;
  p.experts = config_.n_expert_used;
  p.token_input = token_input;
  add_projection(ops, m, p, 1, Over::Tokens);
}

bool Forward::add_gemv_group(Ops& ops, std::vector<const GpuMatrix*> ms, gpu::Buffer x, uint32_t cols,
                             uint32_t x_stride, gpu::Buffer norm, Projection out, uint32_t width, Over over) {
  const bool stageable = std::all_of(ms.begin(), ms.end(), [&](const GpuMatrix* m) { return can_stage(*m); });
  out.x = x;
  out.x_stride = x_stride;
  if (width == 1 && norm && stageable) {
    out.norm = norm;
  } else if (width > 1 && int8_activations_ && stageable) {
    add_quantize(ops, x, cols, x_stride, norm, over);
    out.prequant = true;
  } else {
    out.rope_kv = nullptr;
    if (norm) {
      add(ops, "rms_norm", {{"N", u32(cols)}, {"EPS", f32(config_.rms_eps)}}, {{x}, {norm}, {xb_}}, 1, over);
      out.x = xb_;
      out.x_stride = cols;
    }
  }
  for (const GpuMatrix* m : ms) {
    add_projection(ops, *m, out, width, over);
    out.y_offset += m->rows;
  }
  return out.rope_kv != nullptr;
}

bool Forward::rope_fits_gemv(uint32_t layer) const {
  const auto& c = config_;
  // matvec's bindings with ROPE_KV: codes, scales, input, y, norm or scales, tokens, rope, k, v caches.
  constexpr uint32_t kStorageBuffers = 9;
  return c.layer_uses_rope(layer) && c.rope_type != model::RopeType::Neox && !c.attn_bias && !c.qk_norm &&
         !c.l2_qk_norm && c.head_dim % 2 == 0 && c.rope_dim % 2 == 0 &&
         device_.limits().max_storage_buffers_per_shader_stage >= kStorageBuffers;
}

void Forward::add_attention(Ops& ops, const Layer& l, uint32_t layer, uint32_t width) {
  const auto& c = config_;
  gpu::KernelDefines att = {{"N_HEADS", u32(c.n_heads)},
                            {"N_KV", u32(c.n_kv_heads)},
                            {"HEAD_DIM", u32(c.head_dim)},
                            {"CTX", u32(n_ctx_)},
                            {"SCALE", f32(1.0 / std::sqrt(double(c.head_dim)))},
                            {"HEADS", u32(attention_heads_)}};
  const uint32_t head_groups = c.n_heads / attention_heads_;
  if (c.sliding_window) att["WINDOW"] = u32(c.sliding_window);
  if (c.layer_is_chunked(layer)) att["CHUNK"] = u32(c.attn_chunk_size);
  const uint32_t prefill_rows =
      kernels::attention_prefill_rows(c.head_dim, device_.limits().max_compute_workgroup_storage_size);
  if (width == kPrefill && prefill_rows) {
    // A prefill pass's tokens share one slot (body_for): blocks of query rows read each key once.
    att.erase("HEADS");
    att["ROWS"] = u32(prefill_rows);
    att["HALVES"] = u32(kernels::attention_prefill_halves(c.head_dim));
    add(ops, "attention_prefill", att,
        {tokens_slice_, header_slice_, {qkv_}, {l.k_cache}, {l.v_cache}, {attn_}}, c.n_kv_heads, Over::Tokens,
        prefill_rows);
    ops.back().per_token = c.n_heads / c.n_kv_heads;
    return;
  }
  if (width == kPrefill || spans_ == 1) {
    add(ops, "attention", att, {tokens_slice_, {qkv_}, {l.k_cache}, {l.v_cache}, {attn_}}, head_groups);
    return;
  }
  att["SPANS"] = u32(spans_);
  att["SPAN"] = u32(span_);
  gpu::KernelDefines merge = att;
  merge["MERGE"] = "1";
  const uint64_t qkv_row = uint64_t(c.q_dim() + 2 * c.kv_dim()) * 4, out_row = uint64_t(c.q_dim()) * 4;
  // A pass of width < kMaxWidth has at most `width` tokens; one of kMaxWidth up to max_batch.
  const uint32_t tokens = width == kMaxWidth ? max_batch_ : std::min(width, max_batch_);
  for (uint32_t first = 0; first < tokens; first += kMaxWidth) {
    const uint32_t n = std::min(kMaxWidth, tokens - first);
    const gpu::BufferSlice tok = {pass_, tokens_offset_ + first * sizeof(GpuToken), n * sizeof(GpuToken)};
    const gpu::BufferSlice qkv = {qkv_, first * qkv_row, kMaxWidth * qkv_row};
    const gpu::BufferSlice out = {attn_, first * out_row, kMaxWidth * out_row};
    // Each op covers the pass's tokens first..first + kMaxWidth - 1 (replay() skips or sizes it).
    auto add_split = [&](const gpu::KernelDefines& d, std::vector<gpu::BufferSlice> b, uint32_t groups,
                         Split split) {
      add(ops, "attention", d, std::move(b), groups);
      ops.back().first = first;
      ops.back().limit = kMaxWidth;
      ops.back().split = split;
    };
    const std::vector<gpu::BufferSlice> spans = {tok, qkv, {l.k_cache}, {l.v_cache}, out, {part_}};
    add_split(att, spans, head_groups * spans_, Split::Spans);
    if (attention_heads_ > 1) {
      gpu::KernelDefines one = att;
      one["HEADS"] = u32(1);
      add_split(one, spans, c.n_heads * spans_, Split::SpansOneHead);
    }
    add_split(merge, {tok, {part_}, out}, c.n_heads, Split::Merge);
  }
}

const Forward::Ops& Forward::body(uint32_t width) {
  if (auto it = body_ops_.find(width); it != body_ops_.end()) return it->second;
  const auto& c = config_;
  const uint32_t qkv = c.q_dim() + 2 * c.kv_dim();
  Ops ops;
  for (uint32_t layer = first_layer_; layer < last_layer_; ++layer) {
    const Layer& l = layers_[layer - first_layer_];
    // attention block: x += Wo · attention(rope(Wq·norm(x)), cache(rope(Wk·norm(x)), Wv·norm(x)))
    bool rotated = false;  // by the q|k|v GEMVs' epilogue
    if (width == kPrefill) {
      add_prefill_group(ops, pointers(l.qkv), x_, c.dim, c.dim, l.attn_norm,
                        {{}, qkv_, 0, qkv, 0, false, {}});
    } else {
      Projection p = {{}, qkv_, 0, qkv, 0, false, {}};
      if (rope_fits_gemv(layer)) p.rope_kv = &l;
      rotated = add_gemv_group(ops, pointers(l.qkv), x_, c.dim, c.dim, l.attn_norm, p, width);
    }
    if (!rotated) add_rope_kv(ops, l, layer);
    add_attention(ops, l, layer, width);
    if (width == kPrefill)
      add_prefill_group(ops, {&l.wo}, attn_, c.q_dim(), c.q_dim(), {}, {{}, x_, 0, c.dim, 0, true, {}});
    else
      add_gemv_group(ops, {&l.wo}, attn_, c.q_dim(), c.q_dim(), {}, {{}, x_, 0, c.dim, 0, true, {}}, width);
    if (l.bo)
      add(ops, "add_bias", {{"N", u32(c.dim)}, {"STRIDE", u32(c.dim)}}, {{x_}, {l.bo}}, (c.dim + 255) / 256);

    if (c.layer_is_moe(layer))
      add_moe(ops, l, width);
    else
      add_ffn(ops, l, width, c.ffn_dim, false);
  }
  return body_ops_.emplace(width, std::move(ops)).first->second;
}

void Forward::add_rope_kv(Ops& ops, const Layer& l, uint32_t layer) {
  const auto& c = config_;
  const bool uses_rope = c.layer_uses_rope(layer);
  gpu::KernelDefines d = {{"N_HEADS", u32(c.n_heads)},
                          {"N_KV", u32(c.n_kv_heads)},
                          {"HEAD_DIM", u32(c.head_dim)},
                          {"CTX", u32(n_ctx_)},
                          {"ROPE_DIM", u32(c.rope_dim)}};
  if (c.rope_type == model::RopeType::Neox) d["NEOX"] = "1";
  std::vector<gpu::BufferSlice> b = {
      tokens_slice_, {uses_rope ? rope_table_ : q_scale_}, {qkv_}, {l.k_cache}, {l.v_cache}};
  if (l.attn_extra) b.push_back({l.attn_extra});
  if (c.attn_bias) d["BIAS"] = "1";
  if (!uses_rope) d["NO_ROPE"] = "1";
  if (c.qk_norm || (c.l2_qk_norm && uses_rope)) d["EPS"] = f32(c.rms_eps);
  if (c.qk_norm) d["QK_NORM"] = "1";
  if (c.l2_qk_norm && uses_rope) d["L2_NORM"] = "1";
  const uint32_t groups = kernels::set_rope_kv_layout(d, c.n_heads, c.n_kv_heads, c.head_dim);
  add(ops, "rope_kv", d, b, groups);
}

void Forward::add_ffn(Ops& ops, const Layer& l, uint32_t width, uint32_t ffn, bool normed) {
  const auto& c = config_;
  const Projection gate_up = {{}, gate_up_, 0, 2 * ffn, 0, false, {}};
  if (width == kPrefill) {
    add_prefill_group(ops, pointers(l.gate_up), normed ? xb_ : x_, c.dim, c.dim,
                      normed ? gpu::Buffer{} : l.ffn_norm, gate_up);
  } else if (normed) {
    Projection p = gate_up;
    p.x = xb_;
    p.x_stride = c.dim;
    for (const GpuMatrix& m : l.gate_up) {
      add_projection(ops, m, p, width, Over::Tokens);
      p.y_offset += m.rows;
    }
  } else if (glu_fits_gemv(l, width)) {
    // silu(gate) * up as down's int8 codes, from the gate|up GEMV's epilogue: no silu_mul dispatch.
    Projection p = gate_up;
    p.x = x_;
    p.x_stride = c.dim;
    p.norm = l.ffn_norm;
    p.glu = true;
    add_projection(ops, l.gate_up[0], p, width, Over::Tokens);
    Projection q = {gate_up_, x_, 2 * ffn, c.dim, 0, true, {}};
    q.prequant = true;
    add_projection(ops, l.down, q, width, Over::Tokens);
    return;
  } else {
    add_gemv_group(ops, pointers(l.gate_up), x_, c.dim, c.dim, l.ffn_norm, gate_up, width);
  }
  const Projection down = {{}, x_, 0, c.dim, 0, true, {}};
  if (int8_activations_ && can_stage(l.down)) {
    // silu_mul leaves down's input as int8 codes at every width, the GEMM's too: quantize_act's codes
    // (the same act_quant.wgsl steps on the same f32 values) without its dispatch and the f32 round trip.
    add(ops, "silu_mul", {{"N", u32(ffn)}, {"QUANT_OUT", "1"}}, {{gate_up_}, {xq_}, {xs_}},
        (ffn / 32 + 31) / 32);
    Projection p = down;
    p.x = gate_up_;
    p.x_stride = 2 * ffn;
    p.prequant = true;
    if (width == kPrefill)
      add_matmul(ops, l.down, p, true);
    else
      add_projection(ops, l.down, p, width, Over::Tokens);
  } else if (width == kPrefill) {
    add(ops, "silu_mul", {{"N", u32(ffn)}}, {{gate_up_}}, (ffn + 255) / 256);
    add_prefill_group(ops, {&l.down}, gate_up_, ffn, 2 * ffn, {}, down);
  } else {
    add(ops, "silu_mul", {{"N", u32(ffn)}}, {{gate_up_}}, (ffn + 255) / 256);
    add_gemv_group(ops, {&l.down}, gate_up_, ffn, 2 * ffn, {}, down, width);
  }
}

void Forward::add_moe(Ops& ops, const Layer& l, uint32_t width) {
  const auto& c = config_;
  const uint32_t k = c.n_expert_used, f = c.expert_ffn_dim;
  // Prefill passes take the GEMV path here (tiles of kMaxWidth tokens; the experts per token).
  const uint32_t w = width == kPrefill ? kMaxWidth : width;
  add(ops, "rms_norm", {{"N", u32(c.dim)}, {"EPS", f32(c.rms_eps)}}, {{x_}, {l.ffn_norm}, {xb_}}, 1);
  add_projection(ops, l.router, {xb_, moe_logits_, c.dim, c.n_expert, 0, false, {}}, w, Over::Tokens);
  gpu::KernelDefines route = {{"N_EXPERT", u32(c.n_expert)}, {"K", u32(k)}};
  if (c.expert_gating == model::ExpertGating::Softmax) route["SOFTMAX"] = "1";
  if (c.expert_weights_norm) route["RENORM"] = "1";
  add(ops, "moe_route", route, {{moe_logits_}, l.route}, 1);
  // gate|up of each (token, slot): gate_up_ [tokens, k, gate (f) | up (f)]
  add_experts(ops, l.gate_exps, l.route, xb_, c.dim, true, gate_up_, 2 * f, 0);
  add_experts(ops, l.up_exps, l.route, xb_, c.dim, true, gate_up_, 2 * f, f);
  gpu::KernelDefines silu = {{"N", u32(f)}, {"SLOTS", u32(k)}};
  std::vector<gpu::BufferSlice> silu_b = {{gate_up_}};
  if (c.expert_weight_before_ffn) {
    silu["ROUTE_SCALE"] = "1";
    silu_b.push_back(l.route);
  }
  add(ops, "silu_mul", silu, silu_b, (k * f + 255) / 256);
  add_experts(ops, l.down_exps, l.route, gate_up_, 2 * f, false, moe_out_, c.dim, 0);
  // The shared expert reads h from xb_ and adds its output to x; then the chosen experts' outputs.
  if (!l.gate_up.empty()) add_ffn(ops, l, width, c.shexp_ffn_dim, true);
  gpu::KernelDefines combine = {{"DIM", u32(c.dim)}, {"K", u32(k)}};
  std::vector<gpu::BufferSlice> combine_b = {{x_}, {moe_out_}};
  if (!c.expert_weight_before_ffn) {
    combine["WEIGHTED"] = "1";
    combine_b.push_back(l.route);
  }
  add(ops, "moe_combine", combine, combine_b, (c.dim + 255) / 256);
}

const Forward::Ops& Forward::head(uint32_t width) {
  if (auto it = head_ops_.find(width); it != head_ops_.end()) return it->second;
  const auto& c = config_;
  Ops ops;
  if (width == 0 && can_stage(head_)) {
    // One token: the final norm fused into the LM head, which reads row 0 of x.
    add_projection(ops, head_, {x_, logits_, c.dim, c.n_vocab, 0, false, out_norm_}, 1, Over::Rows);
  } else {
    // The logits rows' tokens, normed into xb_ rows 0.., then the LM head over them.
    add(ops, "rms_norm", {{"N", u32(c.dim)}, {"EPS", f32(c.rms_eps)}, {"GATHER", "1"}},
        {{x_}, {out_norm_}, {xb_}, rows_slice_}, 1, Over::Rows);
    add_gemv_group(ops, {&head_}, xb_, c.dim, c.dim, {}, {{}, logits_, 0, c.n_vocab, 0, false, {}},
                   std::max(width, 1u), Over::Rows);
  }
  return head_ops_.emplace(width, std::move(ops)).first->second;
}

gpu::BufferSlice Forward::route(uint32_t layer) const {
  if (layer < first_layer_ || layer >= last_layer_ || !config_.layer_is_moe(layer)) return {};
  return layers_[layer - first_layer_].route;
}

uint64_t Forward::bytes_per_token(uint32_t pos) const {
  return gemv_bytes_ + 2ull * layers_.size() * (pos + 1ull) * config_.kv_dim() * 4;
}

void Forward::set_history(uint32_t slot, std::span<const int32_t> tokens) {
  if (slot >= n_seq_)
    fail_input("slot " + std::to_string(slot) + " is outside the " + std::to_string(n_seq_) +
               " KV-cache slots");
  std::vector<uint32_t> ring(kPenaltyHistory + 1, 0);  // [ring, count]
  size_t n = tokens.size();
  for (size_t i = n > kPenaltyHistory ? n - kPenaltyHistory : 0; i < n; ++i)
    ring[i % kPenaltyHistory] = static_cast<uint32_t>(tokens[i]);
  ring[kPenaltyHistory] = static_cast<uint32_t>(n);
  device_.write(history_, uint64_t(slot) * (kPenaltyHistory + 1) * 4,
                bytes_of(std::span<const uint32_t>(ring)));
}

void Forward::replay(const Ops& ops, uint32_t tokens, uint32_t rows) {
  for (const Op& op : ops) {
    uint32_t count = op.over == Over::Tokens ? tokens : rows;
    if (op.limit) {
      if (count <= op.first) continue;
      count = std::min(count - op.first, op.limit);
    }
    const uint32_t n = (count * op.per_token + op.width - 1) / op.width;
    uint32_t a = op.a, b = op.b;
    if (op.split == Split::Merge && pass_spans_ == 1) continue;
    if (op.split == Split::Spans || op.split == Split::SpansOneHead) {
      if ((op.split == Split::SpansOneHead) != pass_one_head_) continue;
      const uint32_t groups = config_.n_heads / (pass_one_head_ ? 1 : attention_heads_) * pass_spans_;
      a = std::min(groups, std::max<uint32_t>(1, device_.limits().max_compute_workgroups_per_dimension));
      b = (groups + a - 1) / a;
    }
    if (op.along == 0)
      device_.dispatch(op.kernel, op.group, n, a, b);
    else
      device_.dispatch(op.kernel, op.group, a, n, b);
  }
}

const Forward::Ops& Forward::body_for(std::span<const PassToken> tokens) {
  const auto n = static_cast<uint32_t>(tokens.size());
  const bool one_slot =
      std::all_of(tokens.begin(), tokens.end(), [&](const PassToken& t) { return t.slot == tokens[0].slot; });
  return body(prefill_matmul_ && n > kMaxWidth && one_slot ? kPrefill : width_for(n));
}

void Forward::record(std::span<const PassToken> tokens, std::span<const RowSampling> sampling) {
  const auto n = static_cast<uint32_t>(tokens.size());
  if (n == 0 || n > max_batch_)
    fail_input("a pass takes 1 to " + std::to_string(max_batch_) + " tokens, not " + std::to_string(n));
  std::vector<GpuToken> gpu_tokens(n);  // [tokens]
  std::vector<GpuRow> rows;             // [logits rows]
  for (uint32_t i = 0; i < n; ++i) {
    const PassToken& t = tokens[i];
    if (t.slot >= n_seq_)
      fail_input("slot " + std::to_string(t.slot) + " is outside the " + std::to_string(n_seq_) +
                 " KV-cache slots");
    if (t.pos >= n_ctx_)
      fail_input("position " + std::to_string(t.pos) + " of slot " + std::to_string(t.slot) +
                 " is outside the context of " + std::to_string(n_ctx_) +
                 " tokens: the KV cache slot is full");
    if (t.id != kSampledId && (t.id < 0 || static_cast<uint32_t>(t.id) >= config_.n_vocab))
      fail_input("token id " + std::to_string(t.id) + " is outside the vocabulary of " +
                 std::to_string(config_.n_vocab));
    gpu_tokens[i] = {t.slot, t.pos, t.id == kSampledId ? 0u : static_cast<uint32_t>(t.id),
                     t.id == kSampledId ? kFromSampler : 0u};
    if (t.logits) rows.push_back({.token = i, .slot = t.slot});
  }
  const auto n_rows = static_cast<uint32_t>(rows.size());
  if (n_rows > max_rows_)
    fail_input("a pass computes at most " + std::to_string(max_rows_) + " logits rows, not " +
               std::to_string(n_rows));
  if (!sampling.empty()) {
    if (sampling.size() != rows.size())
      fail_input("sampling settings for " + std::to_string(sampling.size()) + " rows, but the pass has " +
                 std::to_string(rows.size()) + " logits rows");
    for (uint32_t r = 0; r < n_rows; ++r) {
      for (uint32_t q = 0; q < r; ++q)
        if (rows[q].slot == rows[r].slot)
          fail_input("a pass samples at most one row per slot (slot " + std::to_string(rows[r].slot) + ")");
      rows[r] = gpu_row(sampling[r].params, rows[r].token, rows[r].slot, sampling[r].sample_index);
    }
  }

  // The metadata goes through region `region_` of the staging buffer: writes land before the next submit
  // runs, so each pass recorded into one command buffer needs a region of its own.
  if (device_.stats().submits != submits_seen_) region_ = 0;
  if (region_ == kPassesPerSubmit) {
    device_.submit();
    region_ = 0;
  }
  const uint64_t base = uint64_t(region_++) * pass_bytes_;
  const uint32_t header[4] = {n, n_rows, 0, 0};
  device_.write(staging_, base, bytes_of(std::span<const uint32_t>(header)));
  device_.write(staging_, base + tokens_offset_, bytes_of(std::span<const GpuToken>(gpu_tokens)));
  if (n_rows) device_.write(staging_, base + rows_offset_, bytes_of(std::span<const GpuRow>(rows)));
  device_.copy(staging_, base, pass_, 0,
               n_rows ? rows_offset_ + n_rows * sizeof(GpuRow) : tokens_offset_ + n * sizeof(GpuToken));

  uint32_t last = 0;
  for (const PassToken& t : tokens) last = std::max(last, t.pos);
  pass_spans_ = std::min(spans_, last / std::max(span_, 1u) + 1);
  pass_one_head_ =
      attention_heads_ > 1 && config_.n_heads / attention_heads_ * pass_spans_ < kOneHeadBelowWorkgroups;
  replay(embed_ops_, n, n_rows);
  replay(body_for(tokens), n, n_rows);
  if (n_rows && last_stage()) {
    replay(head_for(n, n_rows), n, n_rows);
    if (!sampling.empty()) replay(sample_ops_, n, n_rows);
  }
  submits_seen_ = device_.stats().submits;
}

const Forward::Ops& Forward::head_for(uint32_t tokens, uint32_t rows) {
  return tokens == 1 ? head(0) : head(width_for(rows));
}

uint32_t Forward::dispatches(uint32_t tokens, uint32_t rows, bool sample) {
  const Ops& ops = body(width_for(tokens));
  size_t n = embed_ops_.size();
  for (const Op& op : ops)
    if (op.split != Split::Merge && op.split != Split::SpansOneHead && (op.limit == 0 || op.first < tokens))
      ++n;
  if (rows && last_stage()) n += head_for(tokens, rows).size() + (sample ? sample_ops_.size() : 0);
  return static_cast<uint32_t>(n);
}

}  // namespace wgllm::runtime
