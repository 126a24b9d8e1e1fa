#include "mesh/device_memory.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace wgllm::mesh {

namespace {

// The few Vulkan 1.0 declarations needed (vulkan_core.h), so that no Vulkan headers are required.
using VkInstance = struct VkInstance_T*;
using VkPhysicalDevice = struct VkPhysicalDevice_T*;
using VkResult = int32_t;
struct VkInstanceCreateInfo {
  int32_t sType = 1;  // VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
  const void* pNext = nullptr;
  uint32_t flags = 0;
  const void* pApplicationInfo = nullptr;
  uint32_t enabledLayerCount = 0;
  const char* const* ppEnabledLayerNames = nullptr;
  uint32_t enabledExtensionCount = 0;
  const char* const* ppEnabledExtensionNames = nullptr;
};
struct VkPhysicalDevicePropertiesHead {  // the leading fields of VkPhysicalDeviceProperties (824 bytes)
  uint32_t apiVersion, driverVersion, vendorID, deviceID;
};
struct VkMemoryHeap {
  uint64_t size;
  uint32_t flags;
};
struct VkPhysicalDeviceMemoryProperties {
  uint32_t memoryTypeCount;
  uint32_t memoryTypes[32][2];  // propertyFlags, heapIndex
  uint32_t memoryHeapCount;
  VkMemoryHeap memoryHeaps[16];
};
static_assert(offsetof(VkPhysicalDeviceMemoryProperties, memoryHeaps) == 264);
static_assert(sizeof(VkPhysicalDeviceMemoryProperties) == 520);
constexpr uint32_t kHeapDeviceLocal = 1;  // VK_MEMORY_HEAP_DEVICE_LOCAL_BIT

using CreateInstance = VkResult (*)(const VkInstanceCreateInfo*, const void*, VkInstance*);
using DestroyInstance = void (*)(VkInstance, const void*);
using EnumeratePhysicalDevices = VkResult (*)(VkInstance, uint32_t*, VkPhysicalDevice*);
using GetProperties = void (*)(VkPhysicalDevice, void*);
using GetMemoryProperties = void (*)(VkPhysicalDevice, VkPhysicalDeviceMemoryProperties*);

}  // namespace

uint64_t device_memory_bytes(const gpu::AdapterInfo& adapter) {
  if (adapter.backend != "vulkan") return 0;
  void* lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return 0;
  auto create = reinterpret_cast<CreateInstance>(dlsym(lib, "vkCreateInstance"));
  auto destroy = reinterpret_cast<DestroyInstance>(dlsym(lib, "vkDestroyInstance"));
  auto enumerate = reinterpret_cast<EnumeratePhysicalDevices>(dlsym(lib, "vkEnumeratePhysicalDevices"));
  auto properties = reinterpret_cast<GetProperties>(dlsym(lib, "vkGetPhysicalDeviceProperties"));
  auto memory = reinterpret_cast<GetMemoryProperties>(dlsym(lib, "vkGetPhysicalDeviceMemoryProperties"));
  uint64_t best = 0;
  VkInstance instance = nullptr;
  VkInstanceCreateInfo info;
  if (create && destroy && enumerate && properties && memory && create(&info, nullptr, &instance) == 0) {
    uint32_t count = 0;
    enumerate(instance, &count, nullptr);
    std::vector<VkPhysicalDevice> devices(count);
    if (count > 0 && enumerate(instance, &count, devices.data()) >= 0) {
      for (VkPhysicalDevice d : devices) {
        alignas(8) unsigned char props[4096] = {};  // room for VkPhysicalDeviceProperties
        properties(d, props);
        VkPhysicalDevicePropertiesHead head;
        std::copy_n(props, sizeof head, reinterpret_cast<unsigned char*>(&head));
        if (head.vendorID != adapter.vendor_id || head.deviceID != adapter.device_id) continue;
        VkPhysicalDeviceMemoryProperties mem{};
        memory(d, &mem);
        for (uint32_t h = 0; h < std::min<uint32_t>(mem.memoryHeapCount, 16); ++h)
          if (mem.memoryHeaps[h].flags & kHeapDeviceLocal) best = std::max(best, mem.memoryHeaps[h].size);
      }
    }
    destroy(instance, nullptr);
  }
  dlclose(lib);
  return best;
}

}  // namespace wgllm::mesh
