#include "kernels/attention.hpp"

#include <initializer_list>

namespace wgllm::kernels {

uint32_t attention_heads_per_workgroup(uint32_t n_heads, uint32_t n_kv, uint32_t head_dim) {
  const uint32_t group = n_kv ? n_heads / n_kv : 1;
  for (uint32_t h = head_dim > 128 ? 2 : 4; h > 1; --h)
    if (group % h == 0) return h;
  return 1;
}

uint32_t attention_prefill_halves(uint32_t head_dim) {
  // With 2 invocations per row, the 8B's pp512 pass had ~8 warps per SM of the H100, each tile's loads and
  // barriers exposed; 4 per row: attention 19.7 -> 14.4 us per token (docs/perf.md). Heads of 96 have an
  // odd number of 32-element chunks to share; heads of 64 were not measured with it (64 rows fit without).
  return head_dim == 128 ? 2 : 1;
}

uint32_t attention_prefill_bytes(uint32_t head_dim, uint32_t rows) {
  constexpr uint32_t kTile = 32;  // keys per tile
  // q [head_dim][rows], a tile's k or v [head_dim * kTile], scores [halves][rows][kTile + 4], weights
  // [kTile][rows], two scales per row.
  return 4 * (head_dim * rows + head_dim * kTile + attention_prefill_halves(head_dim) * rows * (kTile + 4) +
              kTile * rows + 2 * rows);
}

uint32_t attention_prefill_rows(uint32_t head_dim, uint32_t workgroup_bytes) {
  // An invocation keeps 4 rows' outputs at head_dim / 8 elements each in registers.
  if (head_dim % 32 != 0 || head_dim > 128) return 0;
  for (uint32_t rows : {64u, 32u, 16u})
    if (attention_prefill_bytes(head_dim, rows) <= workgroup_bytes) return rows;
  return 0;
}

}  // namespace wgllm::kernels
