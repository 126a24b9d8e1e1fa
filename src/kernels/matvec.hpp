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

constexpr uint32_t kMatvecLanesPerRow = 32;     // matvec.wgsl's TPR
constexpr uint32_t kMatvecWorkgroup = 256;      // its WG unless WG_SIZE says otherwise
constexpr uint32_t kMatvecMaxWorkgroup = 1024;  // the largest WG_SIZE matvec_workgroup_size picks
constexpr uint32_t kMatvecMaxStageRows = 4;     // the most rows per lane group (STAGE_ROWS) the runtime uses

// Workgroup memory matvec.wgsl declares for `columns` columns (its BATCH) and, on the INT8 path,
// `lane_chunks` chunks per lane and tile (its LANE_CHUNKS), in workgroups of `workgroup` invocations; with
// `row_sums`, ROPE_KV's or GLU's row sums too (at most kMatvecMaxStageRows rows per lane group).
uint32_t matvec_workgroup_bytes(MatvecInput input, uint32_t columns, uint32_t lane_chunks = 1,
                                bool row_sums = false, uint32_t workgroup = kMatvecWorkgroup);

struct MatvecTiling {
  uint32_t columns = 1;      // BATCH
  uint32_t lane_chunks = 1;  // LANE_CHUNKS (INT8)
};

// The widest power of two <= `width` columns whose matvec fits `workgroup_bytes`, then on the INT8 path up
// to 4 chunks per lane and tile (more weight loads in flight per lane, fewer barriers; no more than a row
// of `row_chunks` chunks needs). Throws Error when not even one column fits.
MatvecTiling matvec_tiling(MatvecInput input, uint32_t width, uint32_t row_chunks, uint32_t workgroup_bytes,
                           bool row_sums = false);

// Invocations per workgroup (WG_SIZE) for a GEMV of `rows` rows, `rows_per_lane_group` each, over the
// tiling `t`: one-column GEMVs of tall matrices take workgroups of 512 or 1024 (16 or 32 lane groups), so
// that fewer workgroups each stage (and normalise) the input for more rows, as long as that leaves at
// least 192 workgroups and the adapter allows it; everything else 256. (8B Q4_0 tg128 +3 % on the H100,
// docs/perf.md.)
uint32_t matvec_workgroup_size(MatvecInput input, const MatvecTiling& t, bool row_sums, uint32_t rows,
                               uint32_t rows_per_lane_group, uint32_t max_invocations,
                               uint32_t workgroup_bytes);

// How many invocations split each chunk of a GEMV that quantizes its inputs as it stages them (INT8, not
// PREQUANT; matvec.wgsl's STAGE_PARTS): for one column, as many of 8, 4 or 2 as the workgroup has per
// chunk of the tile, so that the whole tile is quantized at once with every invocation busy; 0 (one
// invocation per chunk) for several columns or fewer than 2 invocations per chunk.
uint32_t matvec_stage_parts(const MatvecTiling& t, uint32_t workgroup);

}  // namespace wgllm::kernels
