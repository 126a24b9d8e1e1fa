// The WGSL sources embedded at build time (cmake/embed_kernels.cmake), one per src/kernels/*.wgsl.
#pragma once

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

}  // namespace wgllm::kernels
