#include "kernels/matvec.hpp"

#include <algorithm>
#include <string>

#include "core/error.hpp"

namespace wgllm::kernels {

uint32_t matvec_workgroup_bytes(MatvecInput input, uint32_t columns, uint32_t lane_chunks, bool row_sums,
                                uint32_t workgroup) {
  constexpr uint32_t kLanesPerRow = kMatvecLanesPerRow;
  // `partial`: the reduction of up to 8 columns at once; `pending`: ROPE_KV's or GLU's row sums.
  const uint32_t rows = workgroup / kLanesPerRow * kMatvecMaxStageRows;
  const uint32_t partial = workgroup * std::min(columns, 8u) * 4 + (row_sums ? rows * columns * 4 : 0);
  switch (input) {
    case MatvecInput::Direct:
      return partial;
    case MatvecInput::F32:  // `xt`: 8 vec4 of each lane's chunk per column, TPR + 1 slots per vector
      return partial + columns * 8 * (kLanesPerRow + 1) * 16;
    case MatvecInput::Int8:  // `xq_t`, `xs_t`: 2 vec4 of codes and a vec4 of scales per chunk and column;
      // one column may quantize through act_quant.wgsl's quantize_part (STAGE_PARTS: 2 words per invocation)
      return partial + columns * kLanesPerRow * lane_chunks * 48 + (columns == 1 ? workgroup * 8 : 0);
  }
  return partial;
}

MatvecTiling matvec_tiling(MatvecInput input, uint32_t width, uint32_t row_chunks, uint32_t workgroup_bytes,
                           bool row_sums) {
  MatvecTiling t;
  if (matvec_workgroup_bytes(input, 1, 1, row_sums) > workgroup_bytes)
    fail_runtime("matvec needs " + std::to_string(matvec_workgroup_bytes(input, 1, 1, row_sums)) +
                 " bytes of workgroup memory; the adapter's maxComputeWorkgroupStorageSize is " +
                 std::to_string(workgroup_bytes));
  while (t.columns * 2 <= width &&
         matvec_workgroup_bytes(input, t.columns * 2, 1, row_sums) <= workgroup_bytes)
    t.columns *= 2;
  if (input == MatvecInput::Int8) {
    const uint32_t wanted = std::clamp((row_chunks + 31) / 32, 1u, 4u);
    while (t.lane_chunks < wanted &&
           matvec_workgroup_bytes(input, t.columns, t.lane_chunks + 1, row_sums) <= workgroup_bytes)
      ++t.lane_chunks;
  }
  return t;
}

uint32_t matvec_workgroup_size(MatvecInput input, const MatvecTiling& t, bool row_sums, uint32_t rows,
                               uint32_t rows_per_lane_group, uint32_t max_invocations,
                               uint32_t workgroup_bytes) {
  constexpr uint32_t kMinWorkgroups = 192;
  if (input == MatvecInput::Direct || t.columns != 1) return kMatvecWorkgroup;
  for (uint32_t wg = kMatvecMaxWorkgroup; wg > kMatvecWorkgroup; wg /= 2) {
    const uint32_t per_group = wg / kMatvecLanesPerRow * rows_per_lane_group;
    if (wg <= max_invocations && (rows + per_group - 1) / per_group >= kMinWorkgroups &&
        matvec_workgroup_bytes(input, t.columns, t.lane_chunks, row_sums, wg) <= workgroup_bytes)
      return wg;
  }
  return kMatvecWorkgroup;
}

uint32_t matvec_stage_parts(const MatvecTiling& t, uint32_t workgroup) {
  if (t.columns != 1) return 0;
  const uint32_t per_chunk = workgroup / (kMatvecLanesPerRow * t.lane_chunks);
  uint32_t parts = 8;
  while (parts > per_chunk) parts /= 2;
  return parts >= 2 ? parts : 0;
}

}  // namespace wgllm::kernels
