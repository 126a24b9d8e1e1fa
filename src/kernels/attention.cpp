#include "kernels/attention.hpp"

namespace wgllm::kernels {

uint32_t attention_heads_per_workgroup(uint32_t n_heads, uint32_t n_kv, uint32_t head_dim) {
  const uint32_t group = n_kv ? n_heads / n_kv : 1;
  for (uint32_t h = head_dim > 128 ? 2 : 4; h > 1; --h)
    if (group % h == 0) return h;
  return 1;
}

}  // namespace wgllm::kernels
