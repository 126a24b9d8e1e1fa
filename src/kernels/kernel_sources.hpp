// The WGSL sources embedded at build time (cmake/embed_kernels.cmake), one per src/kernels/*.wgsl.
#pragma once

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

}  // namespace wgllm::kernels
