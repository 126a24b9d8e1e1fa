// The memory bandwidth a plain copy kernel reaches on this device: the ceiling decode speed is judged by.
#pragma once

#include <cstdint>

#include "gpu/device.hpp"

namespace wgllm::runtime {

// Copies a buffer of `bytes` (capped by the adapter's binding limit) `reps` times after a warm-up; returns
// the median GB/s counting read + write, measured from submit to completion.
double copy_bandwidth_gbps(gpu::Device& device, uint64_t bytes, int reps);

}  // namespace wgllm::runtime
