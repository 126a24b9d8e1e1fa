// How rope_kv.wgsl spreads a token's heads over workgroups.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/kernel_sources.hpp"

namespace wgllm::kernels {

// Sets rope_kv's layout in its defines `d` (which already say whether heads are normalised: QK_NORM,
// L2_NORM) and returns its workgroups per token. One head per workgroup of 64 where a head is normalised
// (its reduction spans the workgroup); otherwise HEADS_PER_WG heads, as many as 256 invocations have pairs
// for, one pair each: a workgroup per head left half of its 64 invocations idle for heads of 64 elements, and
// its launches, not its bytes, bounded the kernel (the 1B's pp512 pass: 23.5 us per layer for 12.6 MB,
// docs/perf.md).
inline uint32_t set_rope_kv_layout(KernelDefines& d, uint32_t n_heads, uint32_t n_kv, uint32_t head_dim) {
  const uint32_t heads = n_heads + 2 * n_kv;
  const bool per_head_norm = d.contains("QK_NORM") || d.contains("L2_NORM");
  if (per_head_norm || head_dim > 256) return heads;
  const uint32_t per_wg = 512 / head_dim;
  d["HEADS_PER_WG"] = std::to_string(per_wg);
  return (heads + per_wg - 1) / per_wg;
}

}  // namespace wgllm::kernels
