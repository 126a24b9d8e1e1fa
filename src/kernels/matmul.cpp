#include "kernels/matmul.hpp"

#include <cstdio>
#include <span>
#include <string>

#include "core/error.hpp"

namespace wgllm::kernels {

namespace {

uint32_t ceil_div(uint32_t a, uint32_t b) {
  return (a + b - 1) / b;
}

bool is_quant(const KernelDefines& weight) {
  return weight.contains("QUANT");
}

std::string describe(const MatmulTile& t) {
  return "matmul tile BM " + std::to_string(t.bm) + " BN " + std::to_string(t.bn) + " TM " +
         std::to_string(t.tm) + " TN " + std::to_string(t.tn) + " KC " + std::to_string(t.kc);
}

// Why the kernel can't run `tile` on `shape`, or empty.
std::string misfit(const MatmulShape& shape, const MatmulTile& t) {
  if (t.tm == 0 || t.tn == 0 || t.kc == 0 || t.bm % t.tm != 0 || t.bn % t.tn != 0 || t.bm < t.tm ||
      t.bn < t.tn)
    return "BM, BN must be non-zero multiples of TM, TN";
  const uint32_t wg = t.invocations();
  if (wg > 256) return std::to_string(wg) + " invocations per workgroup (at most 256)";
  if (shape.int8) {
    if (!matmul_int8_supported(shape.weight, shape.cols)) return "the INT8 path reads quantized types only";
    if (shape.cols % (32 * t.kc) != 0)
      return "cols " + std::to_string(shape.cols) + " is not a multiple of 32 KC";
  } else if (t.tm % 4 != 0 || t.tn % 4 != 0) {
    return "TM and TN must be multiples of 4 on the f32 path";
  }
  return {};
}

}  // namespace

bool matmul_int8_supported(const KernelDefines& weight, uint32_t cols) {
  return is_quant(weight) && cols % 32 == 0;
}

uint32_t matmul_workgroup_bytes(const MatmulTile& t, bool int8) {
  if (int8) return 16 * ((t.bm + t.bn) * (2 * t.kc + 1) + (t.bm + t.bn) * t.kc);  // codes and scales
  return 4 * 32 * t.kc * (t.bm + t.bn);
}

MatmulTile matmul_tile(const MatmulShape& shape, uint32_t workgroup_bytes) {
  // Measured on the H100 (docs/perf.md, "Prefill GEMM"): the large tile where it makes about two
  // workgroups per SM of the H100's 132, the small one for narrow products (k, v; the 1B shapes), where
  // the large one leaves SMs idle. Then smaller ones for adapters with less workgroup memory.
  constexpr uint32_t kManyGroups = 256;
  static const MatmulTile kInt8Large = {128, 64, 8, 4, 2}, kF32Large = {64, 128, 8, 8, 1};
  static const MatmulTile kInt8Small[] = {{64, 64, 4, 4, 2}, {64, 64, 4, 4, 1}, {32, 32, 4, 4, 1}};
  static const MatmulTile kF32Small[] = {{64, 64, 4, 4, 1}, {32, 32, 4, 4, 1}};
  const MatmulTile& large = shape.int8 ? kInt8Large : kF32Large;
  auto fits = [&](const MatmulTile& t) {
    return misfit(shape, t).empty() && matmul_workgroup_bytes(t, shape.int8) <= workgroup_bytes;
  };
  if (ceil_div(shape.rows, large.bn) * ceil_div(shape.max_tokens, large.bm) >= kManyGroups && fits(large))
    return large;
  for (const MatmulTile& t :
       shape.int8 ? std::span<const MatmulTile>(kInt8Small) : std::span<const MatmulTile>(kF32Small))
    if (fits(t)) return t;
  fail_runtime("no matmul tile fits " + std::to_string(workgroup_bytes) + " bytes of workgroup memory");
}

KernelDispatch matmul_dispatch(const MatmulShape& shape, const MatmulTile& t) {
  if (std::string why = misfit(shape, t); !why.empty()) fail_runtime(describe(t) + ": " + why);
  KernelDispatch d;
  d.defines = shape.weight;
  d.defines["ROWS"] = u32(shape.rows);
  d.defines["COLS"] = u32(shape.cols);
  d.defines["Y_STRIDE"] = u32(shape.y_stride ? shape.y_stride : shape.rows);
  d.defines["Y_OFFSET"] = u32(shape.y_offset);
  if (shape.int8)
    d.defines["INT8"] = "1";
  else
    d.defines["X_STRIDE"] = u32(shape.x_stride ? shape.x_stride : shape.cols);
  if (shape.accumulate) d.defines["ACCUMULATE"] = "1";
  d.defines["BM"] = u32(t.bm);
  d.defines["BN"] = u32(t.bn);
  d.defines["TM"] = u32(t.tm);
  d.defines["TN"] = u32(t.tn);
  d.defines["KC"] = u32(t.kc);
  d.groups_x = ceil_div(shape.rows, t.bn);
  d.groups_y = ceil_div(shape.max_tokens, t.bm);
  return d;
}

KernelDispatch quantize_act_dispatch(uint32_t cols, uint32_t max_tokens, uint32_t x_stride, bool norm,
                                     double norm_eps) {
  if (cols % 32 != 0 || (x_stride ? x_stride : cols) % 4 != 0)
    fail_runtime("quantize_act: cols " + std::to_string(cols) + " (x_stride " + std::to_string(x_stride) +
                 ") must be a multiple of 32 (4)");
  KernelDispatch d;
  d.defines["COLS"] = u32(cols);
  d.defines["X_STRIDE"] = u32(x_stride ? x_stride : cols);
  if (norm) {
    d.defines["NORM"] = "1";
    d.defines["EPS"] = f32(norm_eps);
  }
  d.groups_x = 1;
  d.groups_y = max_tokens;
  return d;
}

uint64_t act_codes_bytes(uint32_t tokens, uint32_t cols) {
  return uint64_t(tokens) * cols;
}

uint64_t act_scales_bytes(uint32_t tokens, uint32_t cols) {
  return uint64_t(tokens) * (cols / 32) * 16;
}

}  // namespace wgllm::kernels
