// The Llama forward pass on the GPU over a batch of tokens, as fixed lists of dispatches built at load.
// A pass takes up to max_batch tokens, each (slot, position, id) of any KV-cache slot: prompt chunks of one
// sequence, or one decode token for each of several. Recording a pass creates nothing (after the first use
// of a batch width): it writes the pass's token list, replays the list into the device's current command
// buffer, and computes logits (and samples) only for the tokens that ask for them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "gpu/device.hpp"
#include "kernels/matvec.hpp"
#include "model/llama.hpp"
#include "runtime/gpu_weights.hpp"
#include "runtime/step_params.hpp"

namespace wgllm::runtime {

struct ForwardOptions {
  uint32_t n_ctx = 0;         // positions per KV-cache slot; 0 = min(model context, 4096)
  uint32_t n_seq = 1;         // KV-cache slots (sequences in flight)
  uint32_t max_batch = 0;     // tokens per pass; 0 = min(512, n_ctx), and at least n_seq
  uint32_t max_logits = 0;    // logits rows per pass; 0 = n_seq (at most one sampled row per slot and pass)
  bool use_subgroups = true;  // take the subgroup kernel variants when the adapter has them
  // Prefill passes (more than kMaxWidth tokens, all of one slot) use the tiled GEMM (matmul.wgsl; int8
  // activations, as llama.cpp's q8_1, where every projection of a group reads a quantized type) instead
  // of the batched GEMV. Decode passes (one token per slot) never do: their arithmetic stays the GEMV's.
  bool prefill_matmul = true;
  // Projections over quantized weights quantize their inputs to int8 per 32 elements (act_quant.wgsl, as
  // llama.cpp's q8_1) and multiply by dot4I8Packed: the prefill GEMM (twice the f32 rate) and the decode
  // GEMV, which quantizes as it stages its inputs (a quarter of the f32 path's instructions per weight;
  // docs/perf.md). Off: f32 inputs everywhere, the float reference's arithmetic.
  bool int8_activations = true;
  // A pipeline stage holds layers [first_layer, last_layer) (last 0: to the end). Only the first stage
  // embeds tokens, only the last has the LM head and the sampler; the others take and leave their hidden
  // states in hidden().
  uint32_t first_layer = 0, last_layer = 0;
  // The device's memory in bytes when the host knows it (mesh::device_memory_bytes); 0: unknown, and only
  // the per-buffer limit is checked before anything is allocated.
  uint64_t device_memory = 0;
};

// The id a token takes from the GPU: the one the sampler last left for its slot (run-ahead decoding).
constexpr int32_t kSampledId = -1;

struct PassToken {
  uint32_t slot = 0;
  uint32_t pos = 0;
  int32_t id = kSampledId;
  bool logits = false;  // compute this token's logits: the pass's r-th such token fills logits row r
};

struct RowSampling {
  SamplingParams params;
  uint32_t sample_index = 0;  // tokens the sequence sampled before: its RNG stream position
};

class Forward {
 public:
  // What the GPU runs beyond plain llama; a model needing more is refused with the features named.
  static constexpr model::Features kFeatures =
      model::kAttnBias | model::kNeoxRope | model::kQkNorm | model::kSlidingWindow | model::kNoRopeLayers |
      model::kChunkedAttention | model::kL2QkNorm | model::kAttnTemperature | model::kMoe;

  Forward(gpu::Device& device, const gguf::GgufFile& file, const ForwardOptions& options = {});

  const model::LlamaConfig& config() const { return config_; }
  uint32_t n_ctx() const { return n_ctx_; }
  uint32_t n_seq() const { return n_seq_; }
  uint32_t max_batch() const { return max_batch_; }
  uint32_t max_logits() const { return max_rows_; }
  uint32_t first_layer() const { return first_layer_; }
  uint32_t last_layer() const { return last_layer_; }
  bool first_stage() const { return first_layer_ == 0; }
  bool last_stage() const { return last_layer_ == config_.n_layers; }
  gpu::Device& device() { return device_; }

  // Seeds slot's penalty history with the tokens already in its context (e.g. the prompt).
  void set_history(uint32_t slot, std::span<const int32_t> tokens);

  // Records one pass over `tokens` (1..max_batch of them; any slots and positions, each token's K/V written
  // before any attends, so a prompt chunk attends causally within the pass). `sampling`, when given, has
  // one entry per logits row: each row is sampled into sampled()[slot] and the slot's history (at most one
  // sampled row per slot). Throws Error(BadInput) for a slot, position or id out of range; never wraps.
  // Passes recorded before one submit() run in order; a pass's token list goes through its own region of
  // a staging buffer, so up to kPassesPerSubmit passes share a command buffer (more submit in between).
  void record(std::span<const PassToken> tokens, std::span<const RowSampling> sampling = {});
  static constexpr uint32_t kPassesPerSubmit = 4;

  gpu::Buffer logits() const { return logits_; }    // [max_logits, n_vocab] f32: row r of the last pass
  gpu::Buffer sampled() const { return sampled_; }  // [n_seq] u32: the last id sampled for each slot
  // [max_batch, dim] f32: the residual stream of the pass's tokens; a later stage's input (written before
  // record()) and an earlier stage's output (read after it).
  gpu::Buffer hidden() const { return x_; }
  // Mixture-of-experts layer `layer`'s choice for the last pass's tokens, written by the pass: token i's
  // n_expert_used experts in rank order at [i, slot], each (expert id u32, weight f32); an empty slice for
  // other layers and those of other stages.
  gpu::BufferSlice route(uint32_t layer) const;
  uint64_t weight_bytes() const { return weight_bytes_; }          // the weights' size in the file
  uint64_t weight_gpu_bytes() const { return weight_gpu_bytes_; }  // the GPU buffers that hold them
  // Bytes one decode step must read at position `pos`: every GEMV's matrix once (the LM head included, the
  // embedding table only one row) plus the K and V cache rows 0..pos of every layer (of this stage).
  uint64_t bytes_per_token(uint32_t pos) const;
  // Dispatches of a pass of `tokens` tokens of different slots (the GEMV plan) with `rows` logits rows
  // (and the sampler), and of a one-token pass with logits (a decode step), at positions of the first
  // attention span (past it, split attention adds a merge dispatch per layer).
  uint32_t dispatches(uint32_t tokens, uint32_t rows, bool sample);
  uint32_t dispatches_per_token(bool sample) { return dispatches(1, 1, sample); }

  // Batch widths of the projections (tokens per workgroup tile): a pass of M tokens takes the smallest
  // width >= M, or the largest in tiles. Each width's dispatch list is built on its first use.
  static constexpr uint32_t kWidths[] = {1, 2, 4, 8, 16};
  static constexpr uint32_t kMaxWidth = 16;
  static uint32_t width_for(uint32_t tokens);

 private:
  // How many workgroups an op runs along its `along` axis (0: x, 1: y): one per token (or logits row), or
  // per tile of `width` of them; a and b are the other two axes' counts, in order.
  enum class Over : uint8_t { Tokens, Rows };
  // Split attention's dispatches: the spans one runs (heads x spans along y) and whether the merge runs
  // follow the pass's largest position, so a pass of short positions costs what unsplit attention did;
  // a token's bits do not change, since its spans past its position exit and one span needs no merge.
  // While a pass's spans give few workgroups, the Spans dispatch runs as SpansOneHead instead: one query
  // head per workgroup (HEADS 1), 4x the workgroups, each key read once per head (the same bits).
  enum class Split : uint8_t { None, Spans, SpansOneHead, Merge };
  // Below this many workgroups of the grouped dispatch, SpansOneHead: on the H100, 8B Q4_0 tg128 +2.8 % at
  // depth 0 (8 workgroups against 32), +2.2 % at depth 512 (48), equal at 1024 (72-80), -2.9 % at 2048
  // (136-144; docs/perf.md).
  static constexpr uint32_t kOneHeadBelowWorkgroups = 64;
  struct Op {
    gpu::Kernel kernel;
    gpu::BindGroup group;
    uint32_t a, b;
    Over over;
    uint32_t width;
    uint8_t along = 0;
    // limit > 0: the op covers the pass's tokens first..first+limit-1 only (skipped when the pass has no
    // token there), its bindings offset to them.
    uint32_t first = 0, limit = 0;
    Split split = Split::None;
    uint32_t per_token = 1;  // workgroups along the axis per token (a mixture of experts' slots)
  };
  using Ops = std::vector<Op>;
  struct Layer {
    gpu::Buffer attn_norm, ffn_norm;
    // The projections of the normed input, stacked into one matrix where they can be (upload_stacked), so
    // that one GEMV computes them: rows [q | k | v] and [gate | up].
    // In mixture-of-experts layers gate_up and down hold the shared expert (llama4), or nothing.
    std::vector<GpuMatrix> qkv, gate_up;
    GpuMatrix wo, down;
    gpu::Buffer k_cache, v_cache;  // [n_seq * n_ctx, kv_dim]
    gpu::Buffer attn_extra;        // rope_kv's `extra`: [bq | bk | bv] (biases), [q_norm | k_norm] (qk norm)
    gpu::Buffer bo;                // [dim] or none
    // Mixture-of-experts layers: the router [n_expert rows, dim] and the experts' matrices, expert e's rows
    // at e * (its rows); a chunk holds whole experts (upload_matrix's group_rows).
    GpuMatrix router, gate_exps, up_exps, down_exps;
    gpu::BufferSlice route;  // this layer's region of route_
  };
  struct Projection {
    gpu::Buffer x, y;
    uint32_t x_stride, y_stride, y_offset;
    bool accumulate;
    gpu::Buffer norm;  // fused RMSNorm of x (width 1, stageable matrices only)
    // experts > 0: an expert GEMV (matvec.wgsl's EXPERTS) of each token's `experts` slots, slot s
    // computing the rows of the expert route[token, s] chose into y's row token * experts + s; x's row is
    // the token's with token_input, else the slot's.
    gpu::BufferSlice route = {};
    uint32_t experts = 0;
    bool token_input = false;
    // The input as int8 codes and scales that quantize_act left in xq_, xs_ (matvec.wgsl's PREQUANT), not x.
    bool prequant = false;
    // A q|k|v projection that also does rope_kv's work (matvec.wgsl's ROPE_KV): the layer whose caches
    // take k and v; null otherwise.
    const Layer* rope_kv = nullptr;
    // A stacked gate|up projection (one token) whose epilogue also leaves silu(gate) * up as int8 codes in
    // xq_, xs_ for the down GEMV (matvec.wgsl's GLU), so that no silu_mul runs.
    bool glu = false;
  };
  // How add_projection runs matvec for `rows` rows of m.
  struct MatvecPlan {
    kernels::MatvecInput input;
    kernels::MatvecTiling tiling;
    uint32_t rows_per_lane_group;  // STAGE_ROWS
    uint32_t workgroup;            // WG_SIZE
  };
  MatvecPlan matvec_plan(const GpuMatrix& m, uint32_t rows, const Projection& p, uint32_t width) const;
  // Whether l's gate|up GEMV can do silu_mul's work in its epilogue (GLU) in a pass of `width` tokens:
  // one token, a stacked gate|up in one chunk, each workgroup's rows whole chunks of down's input.
  bool glu_fits_gemv(const Layer& l, uint32_t width) const;

  void add(Ops& ops, std::string_view kernel, const gpu::KernelDefines& defines,
           std::vector<gpu::BufferSlice> bindings, uint32_t groups_y, Over over = Over::Tokens,
           uint32_t width = 1);
  // y (+)= W · x over a tile of `width` tokens (x and y [tokens, stride]), and with `norm` W · rmsnorm(x)
  // * norm, normalised while staged in workgroup memory (width 1).
  void add_projection(Ops& ops, const GpuMatrix& m, const Projection& p, uint32_t width, Over over);
  // Whether matvec stages m's inputs in workgroup memory (quantized weights), which lets it fuse the norm.
  bool can_stage(const GpuMatrix& m) const;
  // Prefill's GEMMs: y (+)= W · x for the pass's tokens through matmul.wgsl, from f32 x or (int8) from the
  // activations quantize_act left in xq_, xs_.
  void add_matmul(Ops& ops, const GpuMatrix& m, const Projection& p, bool int8);
  // x [tokens, stride] (its first `cols`), RMS-normalised by `norm` when given, quantized into xq_, xs_;
  // over the pass's logits rows instead of its tokens with Over::Rows.
  void add_quantize(Ops& ops, gpu::Buffer x, uint32_t cols, uint32_t stride, gpu::Buffer norm,
                    Over over = Over::Tokens);
  // The projections of `ms` over input x (normed by `norm` when given) into y, for a prefill pass.
  void add_prefill_group(Ops& ops, std::vector<const GpuMatrix*> ms, gpu::Buffer x, uint32_t cols,
                         uint32_t x_stride, gpu::Buffer norm, const Projection& out);
  static constexpr uint32_t kPrefill = 0;  // body() key of prefill passes' GEMM plan
  // The GEMV projections of `ms` over input x [tokens, x_stride] (its first `cols`), RMS-normalised by
  // `norm` when given, into out.y, each matrix's rows after the previous one's:
  // - width 1 with a norm, every matrix stageable: one GEMV each with the norm fused;
  // - wider passes on the int8 path, every matrix stageable: quantize_act once (with the norm), then GEMVs
  //   that stage the codes (a workgroup quantizing every column of its input again cost ~37 % of an
  //   8-token step on the H200, docs/perf.md); the codes equal those the GEMV would make, so a token's
  //   bits do not depend on the width;
  // - otherwise rms_norm into xb_ when normed, then plain projections.
  // With out.rope_kv, the GEMVs also rotate q and k into the caches where they stage their inputs (the
  // first two cases); returns whether they did, else rope_kv.wgsl must run after them.
  bool add_gemv_group(Ops& ops, std::vector<const GpuMatrix*> ms, gpu::Buffer x, uint32_t cols,
                      uint32_t x_stride, gpu::Buffer norm, Projection out, uint32_t width,
                      Over over = Over::Tokens);
  // Whether layer's rotation is the plain one that matvec.wgsl's ROPE_KV epilogue does (no biases, head
  // norms, NEOX pairs or NoPE) and the adapter binds the storage buffers it needs.
  bool rope_fits_gemv(uint32_t layer) const;
  // rope_kv.wgsl over the pass's q|k|v rows: q rotated in place, k rotated and v copied into the caches.
  void add_rope_kv(Ops& ops, const Layer& l, uint32_t layer);
  const Ops& body(uint32_t width);  // the layers, over tiles of `width` tokens (or kPrefill)
  // Attention of a layer's tokens: over spans of keys then merged (attention.wgsl's SPANS) for GEMV passes,
  // in chunks of kMaxWidth tokens so that the partials' buffer holds only one chunk; one workgroup per
  // (token, head) for prefill passes.
  void add_attention(Ops& ops, const Layer& l, uint32_t layer, uint32_t width);
  // x += W_down · (silu(W_gate·h) * W_up·h) over the pass's tokens, ffn wide: h = norm(x) * ffn_norm, or
  // with `normed` the h already in xb_ (a mixture-of-experts layer's shared expert).
  void add_ffn(Ops& ops, const Layer& l, uint32_t width, uint32_t ffn, bool normed);
  // A mixture-of-experts layer: h = norm(x) * ffn_norm into xb_, the router's logits, moe_route's choice,
  // the chosen experts' GEMVs (per token, any pass width), the shared expert, and x += the experts'
  // outputs (moe_combine).
  void add_moe(Ops& ops, const Layer& l, uint32_t width);
  // y (+)= the expert GEMV of m for each (token, slot) of route_: x [tokens, x_stride] with `token_input`
  // (every slot reads its token's row), else [tokens, slots, x_stride]; y [tokens, slots, y_stride].
  void add_experts(Ops& ops, const GpuMatrix& m, gpu::BufferSlice route, gpu::Buffer x, uint32_t x_stride,
                   bool token_input, gpu::Buffer y, uint32_t y_stride, uint32_t y_offset);
  const Ops& body_for(std::span<const PassToken> tokens);
  // Final norm of the logits rows and the LM head over tiles of `width` rows; width 0: one token's, the
  // norm fused into the LM head.
  const Ops& head(uint32_t width);
  const Ops& head_for(uint32_t tokens, uint32_t rows);
  gpu::KernelDefines variant(gpu::KernelDefines defines) const;
  void replay(const Ops& ops, uint32_t tokens, uint32_t rows);

  gpu::Device& device_;
  model::LlamaConfig config_;
  uint32_t n_ctx_ = 0, n_seq_ = 1, max_batch_ = 0, max_rows_ = 0;
  uint32_t first_layer_ = 0, last_layer_ = 0;
  uint32_t tile_rows_ = 0;  // activation rows: max_batch rounded up to whole tiles of the widest width
  bool subgroups_ = false;
  bool prefill_matmul_ = false;
  bool int8_activations_ = true;
  uint64_t weight_bytes_ = 0;
  uint64_t weight_gpu_bytes_ = 0;
  uint64_t gemv_bytes_ = 0;

  // The pass's metadata (step_params.hpp): a header (tokens, rows), the tokens and the rows at aligned
  // offsets; written into region k of staging_ and copied into pass_ before the pass's dispatches.
  uint64_t tokens_offset_ = 0, rows_offset_ = 0, pass_bytes_ = 0;
  gpu::Buffer staging_, pass_;
  gpu::BufferSlice tokens_slice_, rows_slice_, header_slice_;
  uint32_t region_ = 0;
  uint64_t submits_seen_ = 0;

  gpu::Buffer sampled_;  // [n_seq] u32
  gpu::Buffer history_;  // [n_seq][kPenaltyHistory ring, count] u32
  gpu::Buffer x_;        // [tile_rows, dim] residual stream
  gpu::Buffer xb_;       // [tile_rows, dim] normed input of a sub-block (or of the logits rows)
  gpu::Buffer qkv_;      // [tile_rows, q (n_heads * head_dim) | k | v (n_kv_heads * head_dim each)]
  gpu::Buffer attn_;     // [tile_rows, n_heads * head_dim] attention output
  // Split attention's partials: [kMaxWidth, n_heads, spans, head_dim + 2]; spans of span_ keys cover n_ctx.
  gpu::Buffer part_;
  uint32_t span_ = 0, spans_ = 1;
  uint32_t pass_spans_ = 1;       // spans the recorded pass's largest position reaches
  bool pass_one_head_ = false;    // whether the recorded pass runs SpansOneHead rather than Spans
  uint32_t attention_heads_ = 1;  // query heads per attention workgroup (kernels/attention.hpp)
  gpu::Buffer gate_up_;  // [tile_rows, gate (ffn_dim) | up (ffn_dim)], or [.., n_expert_used, gate | up]
  // Mixture of experts: the router's logits [tile_rows, n_expert], the route [tile_rows, n_expert_used]
  // (expert id, weight), the chosen experts' outputs [tile_rows, n_expert_used, dim].
  gpu::Buffer moe_logits_, route_, moe_out_;
  uint64_t route_bytes_ = 0, route_stride_ = 0;  // a layer's routes, and the aligned offset between layers
  uint32_t moe_layers_ = 0;                      // of this stage
  // The int8 activations of prefill's GEMMs and of GEMV passes (PREQUANT): [rows, widest input / 4] u32,
  // [rows, widest input / 32] vec4; rows = the pass's tokens or logits rows, in whole tiles.
  gpu::Buffer xq_, xs_;
  gpu::Buffer logits_;      // [max_rows rounded to whole tiles, n_vocab]
  gpu::Buffer rope_table_;  // [n_ctx, rope_dim / 2] (cos, sin)
  gpu::Buffer q_scale_;     // [n_ctx]: q's factor on NoPE layers (attention temperature); none without
  gpu::Buffer out_norm_;
  GpuMatrix embd_, head_;
  std::vector<Layer> layers_;

  Ops embed_ops_, sample_ops_;
  gpu::Buffer sample_parts_;  // the sampler's per-part maxima or candidates of each sampled row
  std::map<uint32_t, Ops> body_ops_, head_ops_;
};

}  // namespace wgllm::runtime
