// Shared by the kernel tests: one device for the whole binary, upload/download of typed vectors, running
// one kernel, and the two kernel variants (with and without subgroups) every kernel test is run under.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gpu/device.hpp"
#include "kernels/kernel_sources.hpp"
#include "runtime/step_params.hpp"
#include "support/test_device.hpp"
#include "support/test_support.hpp"

namespace wgllm::kernels_test {

inline gpu::Device& device() {
  return test::test_device();
}

using kernels::f32;
using kernels::u32;

template <typename T>
std::span<const uint8_t> bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

template <typename T>
gpu::Buffer upload(const std::vector<T>& v, const char* label) {
  gpu::Buffer b = device().buffer(v.size() * sizeof(T), gpu::kStorage, label);
  device().write(b, 0, bytes_of(v));
  return b;
}

// The `batch` uniform of matmul.wgsl and quantize_act.wgsl: the pass's token count first.
inline gpu::Buffer upload_batch(uint32_t tokens) {
  const uint32_t b[4] = {tokens, 0, 0, 0};
  gpu::Buffer buf = device().buffer(sizeof b, gpu::kUniform, "batch");
  device().write(buf, 0, {reinterpret_cast<const uint8_t*>(b), sizeof b});
  return buf;
}

// Submits everything recorded so far and returns `n` elements of `b`.
template <typename T>
std::vector<T> download(gpu::Buffer b, size_t n) {
  gpu::ReadTicket t = device().read(b, 0, n * sizeof(T));
  device().submit();
  std::vector<uint8_t> bytes = device().wait(t);
  std::vector<T> v(n);
  std::memcpy(v.data(), bytes.data(), n * sizeof(T));
  return v;
}

// Records one dispatch of `name` specialised by `defines` over `slices` (in binding order).
inline void dispatch(std::string_view name, const gpu::KernelDefines& defines,
                     std::vector<gpu::BufferSlice> slices, uint32_t x, uint32_t y = 1, uint32_t z = 1) {
  gpu::Kernel k = device().kernel(name, defines);
  device().dispatch(k, device().bind(k, slices), x, y, z);
}

// Bit patterns, so that "untouched" and "exactly equal" checks also hold for NaN sentinels.
inline std::vector<uint32_t> bits_of(const std::vector<float>& v) {
  std::vector<uint32_t> b(v.size());
  std::memcpy(b.data(), v.data(), v.size() * 4);
  return b;
}

// Every kernel test runs twice: with SUBGROUPS defined (when the adapter has them) and without, as
// runtime/forward.cpp chooses per device. Parameter: whether to define SUBGROUPS.
class KernelVariantTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam() && !device().features().subgroups) GTEST_SKIP() << "adapter has no subgroups";
  }
  gpu::KernelDefines variant(gpu::KernelDefines d) const {
    if (GetParam()) kernels::add_subgroup_defines(d, device().info().subgroup_min_size);
    return d;
  }
};

inline std::string variant_name(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "Subgroups" : "Plain";
}

}  // namespace wgllm::kernels_test

#define WGLLM_KERNEL_VARIANTS(suite)                                        \
  INSTANTIATE_TEST_SUITE_P(Variants, suite, ::testing::Values(false, true), \
                           ::wgllm::kernels_test::variant_name)
