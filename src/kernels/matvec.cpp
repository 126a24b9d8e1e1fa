#include "kernels/matvec.hpp"

#include <algorithm>
#include <string>

#include "core/error.hpp"

namespace wgllm::kernels {

uint32_t matvec_workgroup_bytes(bool quant, uint32_t columns) {
  constexpr uint32_t kWorkgroup = 256, kLanesPerRow = 32;
  // `partial`: the reduction of up to 8 columns at once.
  const uint32_t partial = kWorkgroup * std::min(columns, 8u) * 4;
  // `xt`: 8 vec4 of each lane's chunk per column, TPR + 1 slots per vector.
  const uint32_t tile = quant ? columns * 8 * (kLanesPerRow + 1) * 16 : 0;
  return partial + tile;
}

uint32_t matvec_columns(bool quant, uint32_t width, uint32_t workgroup_bytes) {
  uint32_t columns = 1;
  while (columns * 2 <= width && matvec_workgroup_bytes(quant, columns * 2) <= workgroup_bytes) columns *= 2;
  if (matvec_workgroup_bytes(quant, columns) > workgroup_bytes)
    fail_runtime("matvec needs " + std::to_string(matvec_workgroup_bytes(quant, columns)) +
                 " bytes of workgroup memory; the adapter's maxComputeWorkgroupStorageSize is " +
                 std::to_string(workgroup_bytes));
  return columns;
}

}  // namespace wgllm::kernels
