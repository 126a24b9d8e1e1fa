// How many token columns one workgroup of matvec.wgsl (the GEMV of decode passes) takes. Quantized weights
// stage a tile of every column's inputs in workgroup memory, so a pass wider than the adapter's
// maxComputeWorkgroupStorageSize allows runs as several column tiles (workgroups along x), each reading
// the weights again; every column's arithmetic is the same either way (batch invariance).
#pragma once

#include <cstdint>

namespace wgllm::kernels {

// Workgroup memory matvec.wgsl declares for `columns` columns (its BATCH) over quantized (`quant`) or
// float weights.
uint32_t matvec_workgroup_bytes(bool quant, uint32_t columns);

// The widest power of two <= `width` whose matvec fits `workgroup_bytes`. Throws Error when not even one
// column fits.
uint32_t matvec_columns(bool quant, uint32_t width, uint32_t workgroup_bytes);

}  // namespace wgllm::kernels
