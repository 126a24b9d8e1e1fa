// How to run matmul.wgsl (prefill's batched Y (+)= X W^T for one weight matrix) and quantize_act.wgsl
// (the int8 activations of its INT8 path): their defines and workgroup counts. The kernels' headers give
// the bindings. A forward pass records, per matrix chunk (runtime::GpuMatrix), either
//   matmul (default path) over x, or
//   quantize_act once per distinct input, then matmul with int8 = true over its xq and xs,
// each with a "batch" uniform whose first u32 is the number of tokens (at most max_tokens).
#pragma once

#include <cstdint>

#include "kernels/kernel_sources.hpp"

namespace wgllm::kernels {

// BM tokens x BN rows of W per workgroup, TM x TN outputs per invocation, KC 32-element chunks of K per
// step: (BM / TM) (BN / TN) invocations.
struct MatmulTile {
  uint32_t bm = 0, bn = 0, tm = 0, tn = 0, kc = 0;

  uint32_t invocations() const { return (bm / tm) * (bn / tn); }
  bool operator==(const MatmulTile&) const = default;
};

struct MatmulShape {
  KernelDefines weight;     // the matrix's weight-type defines, as for matvec (runtime::weight_defines)
  uint32_t rows = 0;        // N: rows of W in the bound buffers (one chunk of a split matrix)
  uint32_t cols = 0;        // K
  uint32_t max_tokens = 0;  // the largest batch the dispatch covers
  uint32_t y_stride = 0;    // floats from one token's outputs to the next's; 0: rows
  uint32_t y_offset = 0;    // column of row 0 within a token's outputs
  uint32_t x_stride = 0;    // default path: floats from one token's inputs to the next's; 0: cols
  bool accumulate = false;  // y += instead of y =
  bool int8 = false;        // the INT8 path (matmul_int8_supported), x quantized by quantize_act
};

struct KernelDispatch {
  KernelDefines defines;
  uint32_t groups_x = 1, groups_y = 1;
};

// Whether the INT8 path reads this weight type: every quantized type (QUANT), with cols a multiple of 32.
bool matmul_int8_supported(const KernelDefines& weight, uint32_t cols);

// Workgroup memory a tile takes, to be checked against the adapter's maxComputeWorkgroupStorageSize.
uint32_t matmul_workgroup_bytes(const MatmulTile& tile, bool int8);

// The tile for a shape: the fastest measured on the H100 (docs/perf.md, "Prefill GEMM") among those that
// fit `workgroup_bytes` (the adapter's maxComputeWorkgroupStorageSize) and 256 invocations.
MatmulTile matmul_tile(const MatmulShape& shape, uint32_t workgroup_bytes);

// Defines and workgroup counts of kernel "matmul". Throws Error naming the problem when the tile does not
// fit the shape (TM, TN multiples of 4 on the default path, cols a multiple of 32 KC on the INT8 path) or
// the shape is not one the path reads.
KernelDispatch matmul_dispatch(const MatmulShape& shape, const MatmulTile& tile);

// Kernel "quantize_act" for rows of `cols` (a multiple of 32) `x_stride` floats apart (0: cols; a multiple of
// 4); with `norm`, RMS-normalised by the bound norm weights first (EPS = norm_eps).
KernelDispatch quantize_act_dispatch(uint32_t cols, uint32_t max_tokens, uint32_t x_stride = 0,
                                     bool norm = false, double norm_eps = 0.0);
// Sizes of quantize_act's outputs for `tokens` rows of `cols`.
uint64_t act_codes_bytes(uint32_t tokens, uint32_t cols);   // xq: one byte per element
uint64_t act_scales_bytes(uint32_t tokens, uint32_t cols);  // xs: 16 bytes per 32 elements

}  // namespace wgllm::kernels
