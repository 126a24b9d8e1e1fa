// The one GPU device of a test binary. WGLLM_TEST_BACKEND=gl runs the tests on Dawn's OpenGL ES backend (no
// subgroups, another shader compiler) instead of the default (Vulkan).
#pragma once

#include <cstdlib>
#include <memory>
#include <string_view>

#include "gpu/device.hpp"

namespace wgllm::test {

inline gpu::Device& test_device() {
  static std::unique_ptr<gpu::Device> d = [] {
    gpu::DeviceOptions o;
    const char* b = std::getenv("WGLLM_TEST_BACKEND");
    if (b && std::string_view(b) == "gl") o.backend = gpu::Backend::OpenGL;
    return gpu::open_device(o);
  }();
  return *d;
}

}  // namespace wgllm::test
