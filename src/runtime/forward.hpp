// The Llama forward pass on the GPU as a fixed list of dispatches, built once at load. Recording a step
// creates nothing: it replays the list into the device's current command buffer.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "gpu/device.hpp"
#include "model/llama.hpp"
#include "runtime/gpu_weights.hpp"
#include "runtime/step_params.hpp"

namespace wgllm::runtime {

struct ForwardOptions {
  uint32_t n_ctx = 0;  // KV cache positions; 0 = min(model context, 4096)
  bool use_subgroups = true;  // take the subgroup kernel variants when the adapter has them
};

class Forward {
 public:
  Forward(gpu::Device& device, const gguf::GgufFile& file, const ForwardOptions& options = {});

  const model::LlamaConfig& config() const { return config_; }
  uint32_t n_ctx() const { return n_ctx_; }
  gpu::Device& device() { return device_; }

  // The token the next recorded step embeds: written by the sampler, or by set_token for prompt tokens.
  void set_token(int32_t id);
  void set_step(const StepParams& params);
  // Seeds the repetition-penalty history with tokens already in the context (e.g. the prompt).
  void set_history(std::span<const int32_t> tokens);

  // Records one token's pass (embedding .. logits) and, if `sample`, the sampler after it.
  void record(bool sample);

  gpu::Buffer logits() const { return logits_; }   // [n_vocab] f32
  gpu::Buffer token() const { return token_; }     // [1] u32: the last sampled id
  uint64_t weight_bytes() const { return weight_bytes_; }          // the weights' size in the file
  uint64_t weight_gpu_bytes() const { return weight_gpu_bytes_; }  // the GPU buffers that hold them
  // Bytes one decode step must read at position `pos`: every GEMV's matrix once (the LM head included, the
  // embedding table only one row) plus the K and V cache rows 0..pos of every layer.
  uint64_t bytes_per_token(uint32_t pos) const;
  uint32_t dispatches_per_token(bool sample) const;

 private:
  struct Op {
    gpu::Kernel kernel;
    gpu::BindGroup group;
    uint32_t x, y;
  };
  void add(std::vector<Op>& ops, std::string_view kernel, const gpu::KernelDefines& defines,
           std::vector<gpu::BufferSlice> bindings, uint32_t threads_x, uint32_t workgroup = 1);
  // y (+)= W · x, or with `norm` W · rmsnorm(x) * norm (fused into the GEMV where it can stage x in
  // workgroup memory, else a separate rms_norm into xb_ first).
  void add_matvec(std::vector<Op>& ops, const GpuMatrix& m, gpu::Buffer x, gpu::Buffer y, bool accumulate,
                  gpu::Buffer norm = {}, uint32_t y_offset = 0);
  bool can_stage(const GpuMatrix& m) const;
  // The projections that read norm(x): one fused GEMV each, or rms_norm once and plain GEMVs.
  // Each matrix writes its rows into `y` after the previous one's.
  void add_normed(std::vector<Op>& ops, std::vector<const GpuMatrix*> ms, gpu::Buffer y, gpu::Buffer norm);
  gpu::KernelDefines variant(gpu::KernelDefines defines) const;

  gpu::Device& device_;
  model::LlamaConfig config_;
  uint32_t n_ctx_ = 0;
  bool subgroups_ = false;
  uint64_t weight_bytes_ = 0;
  uint64_t weight_gpu_bytes_ = 0;
  uint64_t gemv_bytes_ = 0;

  gpu::Buffer step_, token_, history_;
  gpu::Buffer x_;       // [dim] residual stream
  gpu::Buffer xb_;      // [dim] normed input of a sub-block
  gpu::Buffer qkv_;     // [q (n_heads * head_dim) | k | v (n_kv_heads * head_dim each)] this position's
  gpu::Buffer attn_;    // [n_heads * head_dim] attention output
  gpu::Buffer scores_;  // [n_heads, n_ctx] attention probabilities
  gpu::Buffer gate_up_;    // [gate (ffn_dim) | up (ffn_dim)]
  gpu::Buffer logits_;     // [n_vocab]
  gpu::Buffer rope_table_;  // [n_ctx, rope_dim / 2] (cos, sin)
  std::vector<gpu::Buffer> k_cache_, v_cache_;  // per layer [n_ctx, n_kv_heads * head_dim]

  std::vector<Op> forward_ops_;
  std::vector<Op> sample_ops_;
};

}  // namespace wgllm::runtime
