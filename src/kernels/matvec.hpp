// How one workgroup of matvec.wgsl (the GEMV of decode passes) stages its inputs, and how many token
// columns it takes. Quantized weights stage a tile of every column's inputs in workgroup memory (f32, or
// int8 codes with their scales on the INT8 path), so a pass wider than the adapter's
// maxComputeWorkgroupStorageSize allows runs as several column tiles (workgroups along x), each reading
// the weights again; every column's arithmetic is the same either way (batch invariance).
#pragma once

#include <cstdint>

namespace wgllm::kernels {

enum class MatvecInput : uint8_t {
  Direct,  // float weights: inputs read from global memory, no tile
  F32,     // quantized weights, f32 inputs staged 32 chunks at a time
  Int8,    // quantized weights, inputs quantized to int8 per 32-element chunk as they are staged
};

// The most rows one matvec workgroup computes: 8 lane groups of at most 4 rows (STAGE_ROWS).
constexpr uint32_t kMatvecMaxRowsPerWorkgroup = 32;

// Workgroup memory matvec.wgsl declares for `columns` columns (its BATCH) and, on the INT8 path,
// `lane_chunks` chunks per lane and tile (its LANE_CHUNKS); with `rope_kv`, ROPE_KV's row sums too.
uint32_t matvec_workgroup_bytes(MatvecInput input, uint32_t columns, uint32_t lane_chunks = 1,
                                bool rope_kv = false);

struct MatvecTiling {
  uint32_t columns = 1;      // BATCH
  uint32_t lane_chunks = 1;  // LANE_CHUNKS (INT8)
};

// The widest power of two <= `width` columns whose matvec fits `workgroup_bytes`, then on the INT8 path up
// to 4 chunks per lane and tile (more weight loads in flight per lane, fewer barriers; no more than a row
// of `row_chunks` chunks needs). Throws Error when not even one column fits.
MatvecTiling matvec_tiling(MatvecInput input, uint32_t width, uint32_t row_chunks, uint32_t workgroup_bytes,
                           bool rope_kv = false);

}  // namespace wgllm::kernels
