// `wgllm devices`: the adapters Dawn offers, with backend, vendor, limits and features.
#include <cstdio>

#include "cli/commands.hpp"

namespace wgllm::cli {

Action add_devices(CLI::App&) {
  return [] {
    auto adapters = gpu::list_adapters();
    if (adapters.empty()) {
      std::printf("no WebGPU adapters found (run scripts/install-deps.sh for the software Vulkan driver)\n");
      return 1;
    }
    for (size_t i = 0; i < adapters.size(); ++i) {
      const auto& a = adapters[i];
      std::printf("[%zu] %s\n", i,
                  a.info.device.empty() ? a.info.description.c_str() : a.info.device.c_str());
      std::printf("    backend %s, %s, vendor %s (0x%04x), device 0x%04x, architecture '%s'\n",
                  a.info.backend.c_str(), a.info.adapter_type.c_str(), a.info.vendor.c_str(),
                  a.info.vendor_id, a.info.device_id, a.info.architecture.c_str());
      if (!a.info.description.empty()) std::printf("    driver: %s\n", a.info.description.c_str());
      std::printf("    subgroup size %u..%u\n", a.info.subgroup_min_size, a.info.subgroup_max_size);
      std::printf(
          "    limits: maxStorageBufferBindingSize %llu, maxBufferSize %llu, workgroup storage %u B, "
          "%u invocations/workgroup, %u storage buffers/stage, %u workgroups/dimension\n",
          static_cast<unsigned long long>(a.limits.max_storage_buffer_binding_size),
          static_cast<unsigned long long>(a.limits.max_buffer_size),
          a.limits.max_compute_workgroup_storage_size, a.limits.max_compute_invocations_per_workgroup,
          a.limits.max_storage_buffers_per_shader_stage, a.limits.max_compute_workgroups_per_dimension);
      std::printf("    features:");
      for (const auto& n : a.features.names) std::printf(" %s", n.c_str());
      std::printf("\n    WGSL: packed_4x8_integer_dot_product %s\n",
                  a.features.dot4_i8_packed ? "yes" : "no");
    }
    return 0;
  };
}

}  // namespace wgllm::cli
