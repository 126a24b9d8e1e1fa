// The WGSL sources embedded at build time (cmake/embed_kernels.cmake), one per src/kernels/*.wgsl.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace wgllm::kernels {

struct KernelSource {
  std::string_view name;  // file base name, e.g. "rms_norm"
  std::string_view wgsl;
};

const std::vector<KernelSource>& all_sources();
// Throws Error naming the kernel when no such file was embedded.
std::string_view source(std::string_view name);

// Compile-time parameters of a kernel template. Each define becomes `const NAME = VALUE;` (appended at the
// end: WGSL module-scope declarations are order-independent, so line numbers in compiler messages stay those
// of the .wgsl file), and selects lines between `#if NAME` (or `#if !NAME`), `#else` and `#endif`; an absent
// define, "0" and "false" are off. Removed lines become empty lines, again to keep line numbers.
// `#use NAME` appends the shared declarations of NAME.wgsl (e.g. the per-step uniform's struct, or the weight
// decoding of weight_decode.wgsl) at the end, specialised by the same defines, once per NAME.
using KernelDefines = std::map<std::string, std::string>;
std::string specialise(std::string_view name, std::string_view wgsl, const KernelDefines& defines);

// Define values as WGSL literals: 12 -> "12u", 1e-5 -> "1.00000001e-05" (9 digits: the f32 of `v`), 2 ->
// "2.0".
std::string u32(uint64_t v);
std::string f32(double v);

// Adds the defines of a kernel's subgroup variant on an adapter whose subgroups have at least
// `min_subgroup_size` lanes: SUBGROUPS, and SUM_LANES (row_sum.wgsl's butterflies: the largest power of
// two up to 32 that fits that size) where it is 8 or more.
void add_subgroup_defines(KernelDefines& defines, uint32_t min_subgroup_size);

}  // namespace wgllm::kernels
