#include "kernels/kernel_sources.hpp"

#include <string>

#include "core/error.hpp"

namespace wgllm::kernels {

std::string_view source(std::string_view name) {
  for (const auto& k : all_sources())
    if (k.name == name) return k.wgsl;
  fail_runtime("no embedded WGSL kernel named '" + std::string(name) + "'");
}

}  // namespace wgllm::kernels
