#include "kernels/matvec.hpp"

#include <algorithm>
#include <string>

#include "core/error.hpp"

namespace wgllm::kernels {

uint32_t matvec_workgroup_bytes(MatvecInput input, uint32_t columns, uint32_t lane_chunks, bool rope_kv) {
  constexpr uint32_t kWorkgroup = 256, kLanesPerRow = 32;
  // `partial`: the reduction of up to 8 columns at once; `pending`: ROPE_KV's row sums of every column.
  const uint32_t partial =
      kWorkgroup * std::min(columns, 8u) * 4 + (rope_kv ? kMatvecMaxRowsPerWorkgroup * columns * 4 : 0);
  switch (input) {
    case MatvecInput::Direct:
      return partial;
    case MatvecInput::F32:  // `xt`: 8 vec4 of each lane's chunk per column, TPR + 1 slots per vector
      return partial + columns * 8 * (kLanesPerRow + 1) * 16;
    case MatvecInput::Int8:  // `xq_t`, `xs_t`: 2 vec4 of codes and a vec4 of scales per chunk and column
      return partial + columns * kLanesPerRow * lane_chunks * 48;
  }
  return partial;
}

MatvecTiling matvec_tiling(MatvecInput input, uint32_t width, uint32_t row_chunks, uint32_t workgroup_bytes,
                           bool rope_kv) {
  MatvecTiling t;
  if (matvec_workgroup_bytes(input, 1, 1, rope_kv) > workgroup_bytes)
    fail_runtime("matvec needs " + std::to_string(matvec_workgroup_bytes(input, 1, 1, rope_kv)) +
                 " bytes of workgroup memory; the adapter's maxComputeWorkgroupStorageSize is " +
                 std::to_string(workgroup_bytes));
  while (t.columns * 2 <= width &&
         matvec_workgroup_bytes(input, t.columns * 2, 1, rope_kv) <= workgroup_bytes)
    t.columns *= 2;
  if (input == MatvecInput::Int8) {
    const uint32_t wanted = std::clamp((row_chunks + 31) / 32, 1u, 4u);
    while (t.lane_chunks < wanted &&
           matvec_workgroup_bytes(input, t.columns, t.lane_chunks + 1, rope_kv) <= workgroup_bytes)
      ++t.lane_chunks;
  }
  return t;
}

}  // namespace wgllm::kernels
