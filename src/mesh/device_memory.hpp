// How much memory an adapter's device has. WebGPU does not say; on the Vulkan backend the Vulkan loader
// does (the device-local heaps of the physical device with the adapter's vendor and device ids), so it is
// asked directly, through dlopen so that nothing links against it.
#pragma once

#include <cstdint>

#include "gpu/device.hpp"

namespace wgllm::mesh {

// Bytes of the largest device-local heap, or 0 when unknown (another backend, no Vulkan loader, no match).
// Call after gpu::open_device(): the device layer points the loader at its bundled software driver then.
uint64_t device_memory_bytes(const gpu::AdapterInfo& adapter);

}  // namespace wgllm::mesh
