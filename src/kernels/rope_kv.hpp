// How rope_kv.wgsl spreads a token's heads over workgroups.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/kernel_sources.hpp"

namespace wgllm::kernels {

struct RopeKvLayout {
  uint32_t heads_per_workgroup = 1;  // rope_kv.wgsl's HEADS_PER_WG where above 1 (left undefined at 1)
  uint32_t groups_y = 1;             // workgroups per token
};

// One head per workgroup of 64 where a head is normalised (QK_NORM, L2_NORM: its reduction spans the
// workgroup); otherwise as many heads as 256 invocations have pairs for, one pair each: a workgroup per head
// left half of its 64 invocations idle for heads of 64 elements, and its launches, not its bytes, bounded the
// kernel (the 1B's pp512 pass: 23.5 us per layer for 12.6 MB, docs/perf.md).
inline RopeKvLayout rope_kv_layout(uint32_t n_heads, uint32_t n_kv, uint32_t head_dim, bool per_head_norm) {
  const uint32_t heads = n_heads + 2 * n_kv;
  const uint32_t per_wg = per_head_norm || head_dim > 256 ? 1 : 512 / head_dim;
  return {per_wg, (heads + per_wg - 1) / per_wg};
}

// Adds the layout's define to rope_kv's.
inline void add_rope_kv_layout(KernelDefines& d, const RopeKvLayout& layout) {
  if (layout.heads_per_workgroup > 1) d["HEADS_PER_WG"] = std::to_string(layout.heads_per_workgroup);
}

}  // namespace wgllm::kernels
