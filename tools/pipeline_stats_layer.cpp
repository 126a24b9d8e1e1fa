// A Vulkan layer that asks the driver, for every compute pipeline an application creates, for the
// statistics of what it compiled (VK_KHR_pipeline_executable_properties: NVIDIA's driver reports registers
// per thread, among others), saves the pipeline's SPIR-V and whatever internal representations the driver
// offers. A measurement aid for reading what the driver
// made of a WGSL kernel that Dawn translated (docs/perf.md); not part of the build.
//
// Build (Vulkan headers from Debian's libvulkan-dev):
//   g++ -std=c++20 -O2 -shared -fPIC -I<headers> tools/pipeline_stats_layer.cpp -o libwgllm_stats_layer.so
// Use: a manifest naming the library as the layer VK_LAYER_WGLLM_pipeline_stats in a folder on
// VK_LAYER_PATH, and VK_INSTANCE_LAYERS=VK_LAYER_WGLLM_pipeline_stats. Each pipeline prints one line on
// stderr: "pipeline_stats: <n>.spv local_size X Y Z sdot <count> | <statistic>=<value> ...", and its
// module's SPIR-V is written to $PIPELINE_STATS_DIR/<n>.spv (default /tmp), for spirv-dis.
// One instance at a time (Dawn makes one); devices are told apart.
#include <vulkan/vk_layer.h>
#include <vulkan/vulkan.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

constexpr const char* kExtension = VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME;

struct Module {
  int number = 0;
  uint32_t local_size[3] = {0, 0, 0};
  int sdot = 0;  // OpSDot / OpSDotAccSat instructions: the int8 dot products
};

struct Device {
  PFN_vkGetDeviceProcAddr next_gdpa = nullptr;
  PFN_vkCreateShaderModule create_module = nullptr;
  PFN_vkCreateComputePipelines create_compute = nullptr;
  PFN_vkGetPipelineExecutablePropertiesKHR properties = nullptr;
  PFN_vkGetPipelineExecutableStatisticsKHR statistics = nullptr;
  PFN_vkGetPipelineExecutableInternalRepresentationsKHR representations = nullptr;
  bool capture = false;  // the extension was available and is enabled
};

std::mutex mu;
VkInstance instance = VK_NULL_HANDLE;
PFN_vkGetInstanceProcAddr next_gipa = nullptr;
std::map<VkDevice, Device> devices;
std::map<VkShaderModule, Module> modules;
int modules_seen = 0;

template <typename Link>
Link* find_link(const void* chain, VkStructureType type) {
  for (auto* p = static_cast<const VkBaseInStructure*>(chain); p; p = p->pNext) {
    auto* link = reinterpret_cast<Link*>(const_cast<VkBaseInStructure*>(p));
    if (p->sType == type && link->function == VK_LAYER_LINK_INFO) return link;
  }
  return nullptr;
}

// The entry's workgroup size (OpExecutionMode LocalSize) and the count of int8 dot products.
Module scan(const uint32_t* code, size_t words) {
  Module m;
  for (size_t i = 5; i < words;) {
    const uint32_t op = code[i] & 0xFFFF, n = code[i] >> 16;
    if (n == 0 || i + n > words) break;
    if (op == 16 && n >= 6 && code[i + 2] == 17) {  // OpExecutionMode %entry LocalSize x y z
      for (int k = 0; k < 3; ++k) m.local_size[k] = code[i + 3 + k];
    }
    if (op == 4450 || op == 4453) ++m.sdot;  // OpSDot, OpSDotAccSat
    i += n;
  }
  return m;
}

VKAPI_ATTR VkResult VKAPI_CALL CreateShaderModule(VkDevice device, const VkShaderModuleCreateInfo* info,
                                                  const VkAllocationCallbacks* alloc, VkShaderModule* out) {
  Device d;
  {
    std::lock_guard lock(mu);
    d = devices[device];
  }
  const VkResult r = d.create_module(device, info, alloc, out);
  if (r != VK_SUCCESS) return r;
  Module m = scan(info->pCode, info->codeSize / 4);
  std::lock_guard lock(mu);
  m.number = ++modules_seen;
  const char* dir = std::getenv("PIPELINE_STATS_DIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/" + std::to_string(m.number) + ".spv";
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(info->pCode, 1, info->codeSize, f);
    std::fclose(f);
  }
  modules[*out] = m;
  return r;
}

std::string value_text(const VkPipelineExecutableStatisticKHR& s) {
  switch (s.format) {
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR:
      return s.value.b32 ? "true" : "false";
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
      return std::to_string(s.value.i64);
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR:
      return std::to_string(s.value.u64);
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_FLOAT64_KHR:
      return std::to_string(s.value.f64);
    default:
      return "?";
  }
}

// The driver's internal representations of an executable (whatever it offers: text or binary), each to
// <n>.<executable>.<k>.txt or .bin beside the SPIR-V; their names join the line.
void save_representations(VkDevice device, const Device& d, const VkPipelineExecutableInfoKHR& exec,
                          int number, uint32_t e, std::string& line) {
  uint32_t n = 0;
  if (d.representations(device, &exec, &n, nullptr) != VK_SUCCESS || n == 0) return;
  VkPipelineExecutableInternalRepresentationKHR blank{};
  blank.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INTERNAL_REPRESENTATION_KHR;
  std::vector<VkPipelineExecutableInternalRepresentationKHR> reps(n, blank);
  if (d.representations(device, &exec, &n, reps.data()) != VK_SUCCESS) return;  // sizes only
  std::vector<std::vector<char>> data(n);
  for (uint32_t k = 0; k < n; ++k) {
    data[k].resize(reps[k].dataSize);
    reps[k].pData = data[k].data();
  }
  if (d.representations(device, &exec, &n, reps.data()) != VK_SUCCESS) return;
  const char* dir = std::getenv("PIPELINE_STATS_DIR");
  for (uint32_t k = 0; k < n; ++k) {
    const std::string path = std::string(dir ? dir : "/tmp") + "/" + std::to_string(number) + "." +
                             std::to_string(e) + "." + std::to_string(k) + (reps[k].isText ? ".txt" : ".bin");
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
      std::fwrite(data[k].data(), 1, reps[k].isText && !data[k].empty() ? data[k].size() - 1 : data[k].size(),
                  f);
      std::fclose(f);
    }
    line += " [" + std::string(reps[k].name) + ": " + path + "]";
  }
}

void report(VkDevice device, const Device& d, VkPipeline pipeline, const Module& m) {
  std::string line = "pipeline_stats: " + std::to_string(m.number) + ".spv local_size " +
                     std::to_string(m.local_size[0]) + " " + std::to_string(m.local_size[1]) + " " +
                     std::to_string(m.local_size[2]) + " sdot " + std::to_string(m.sdot);
  VkPipelineInfoKHR info{VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR, nullptr, pipeline};
  uint32_t executables = 0;
  if (d.capture && d.properties(device, &info, &executables, nullptr) == VK_SUCCESS) {
    for (uint32_t e = 0; e < executables; ++e) {
      VkPipelineExecutableInfoKHR exec{VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR, nullptr, pipeline, e};
      uint32_t n = 0;
      if (d.statistics(device, &exec, &n, nullptr) != VK_SUCCESS) continue;
      VkPipelineExecutableStatisticKHR blank{};
      blank.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR;
      std::vector<VkPipelineExecutableStatisticKHR> stats(n, blank);
      if (d.statistics(device, &exec, &n, stats.data()) != VK_SUCCESS) continue;
      line += " |";
      for (const auto& s : stats) line += " " + std::string(s.name) + "=" + value_text(s);
      save_representations(device, d, exec, m.number, e, line);
    }
  } else {
    line += " | (no statistics: the driver lacks " + std::string(kExtension) + ")";
  }
  std::fprintf(stderr, "%s\n", line.c_str());
}

VKAPI_ATTR VkResult VKAPI_CALL CreateComputePipelines(VkDevice device, VkPipelineCache cache, uint32_t count,
                                                      const VkComputePipelineCreateInfo* infos,
                                                      const VkAllocationCallbacks* alloc, VkPipeline* out) {
  Device d;
  {
    std::lock_guard lock(mu);
    d = devices[device];
  }
  std::vector<VkComputePipelineCreateInfo> copy(infos, infos + count);
  if (d.capture) {
    for (auto& c : copy) {
      c.flags |= VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR |
                 VK_PIPELINE_CREATE_CAPTURE_INTERNAL_REPRESENTATIONS_BIT_KHR;
    }
  }
  const VkResult r = d.create_compute(device, cache, count, copy.data(), alloc, out);
  if (r != VK_SUCCESS) return r;
  for (uint32_t i = 0; i < count; ++i) {
    Module m;
    {
      std::lock_guard lock(mu);
      m = modules[infos[i].stage.module];
    }
    report(device, d, out[i], m);
  }
  return r;
}

VKAPI_ATTR VkResult VKAPI_CALL CreateInstance(const VkInstanceCreateInfo* info,
                                              const VkAllocationCallbacks* alloc, VkInstance* out) {
  auto* link =
      find_link<VkLayerInstanceCreateInfo>(info->pNext, VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO);
  if (!link) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  link->u.pLayerInfo = link->u.pLayerInfo->pNext;
  auto create = reinterpret_cast<PFN_vkCreateInstance>(gipa(VK_NULL_HANDLE, "vkCreateInstance"));
  const VkResult r = create(info, alloc, out);
  if (r == VK_SUCCESS) {
    std::lock_guard lock(mu);
    instance = *out;
    next_gipa = gipa;
  }
  return r;
}

// PIPELINE_STATS_NO_ROBUST_ACCESS (an experiment, never for use): the device without the driver's robust
// buffer access (robustBufferAccess, robustBufferAccess2), to tell its cost from that of the bounds clamps
// the shader compiler writes into the SPIR-V. Writes into the application's feature structs.
void strip_robust_access(VkDeviceCreateInfo& info, VkPhysicalDeviceFeatures& features) {
  std::string stripped;
  if (info.pEnabledFeatures && info.pEnabledFeatures->robustBufferAccess) {
    features = *info.pEnabledFeatures;
    features.robustBufferAccess = VK_FALSE;
    info.pEnabledFeatures = &features;
    stripped += " robustBufferAccess";
  }
  for (auto* p = static_cast<const VkBaseInStructure*>(info.pNext); p; p = p->pNext) {
    auto* q = const_cast<VkBaseInStructure*>(p);
    if (p->sType == VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2) {
      auto* f = reinterpret_cast<VkPhysicalDeviceFeatures2*>(q);
      if (f->features.robustBufferAccess) stripped += " robustBufferAccess (features2)";
      f->features.robustBufferAccess = VK_FALSE;
    } else if (p->sType == VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ROBUSTNESS_2_FEATURES_EXT) {
      auto* f = reinterpret_cast<VkPhysicalDeviceRobustness2FeaturesEXT*>(q);
      if (f->robustBufferAccess2) stripped += " robustBufferAccess2";
      f->robustBufferAccess2 = VK_FALSE;
    }
  }
  std::fprintf(stderr, "pipeline_stats: robust access off:%s\n",
               stripped.empty() ? " (none was on)" : stripped.c_str());
}

VKAPI_ATTR VkResult VKAPI_CALL CreateDevice(VkPhysicalDevice physical, const VkDeviceCreateInfo* info,
                                            const VkAllocationCallbacks* alloc, VkDevice* out) {
  auto* link = find_link<VkLayerDeviceCreateInfo>(info->pNext, VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO);
  if (!link) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  PFN_vkGetDeviceProcAddr gdpa = link->u.pLayerInfo->pfnNextGetDeviceProcAddr;
  link->u.pLayerInfo = link->u.pLayerInfo->pNext;

  auto enumerate = reinterpret_cast<PFN_vkEnumerateDeviceExtensionProperties>(
      gipa(instance, "vkEnumerateDeviceExtensionProperties"));
  uint32_t n = 0;
  enumerate(physical, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> available(n);
  enumerate(physical, nullptr, &n, available.data());
  bool supported = false;
  for (const auto& e : available) supported = supported || std::strcmp(e.extensionName, kExtension) == 0;

  std::vector<const char*> names(info->ppEnabledExtensionNames,
                                 info->ppEnabledExtensionNames + info->enabledExtensionCount);
  bool present = false;
  for (const char* name : names) present = present || std::strcmp(name, kExtension) == 0;
  if (supported && !present) names.push_back(kExtension);
  VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR feature{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR,
      const_cast<void*>(info->pNext), VK_TRUE};
  VkDeviceCreateInfo changed = *info;
  VkPhysicalDeviceFeatures features{};
  if (std::getenv("PIPELINE_STATS_NO_ROBUST_ACCESS")) strip_robust_access(changed, features);
  if (supported) {
    changed.pNext = &feature;
    changed.enabledExtensionCount = static_cast<uint32_t>(names.size());
    changed.ppEnabledExtensionNames = names.data();
  }
  auto create = reinterpret_cast<PFN_vkCreateDevice>(gipa(instance, "vkCreateDevice"));
  const VkResult r = create(physical, &changed, alloc, out);
  if (r != VK_SUCCESS) return r;
  Device d;
  d.next_gdpa = gdpa;
  d.create_module = reinterpret_cast<PFN_vkCreateShaderModule>(gdpa(*out, "vkCreateShaderModule"));
  d.create_compute = reinterpret_cast<PFN_vkCreateComputePipelines>(gdpa(*out, "vkCreateComputePipelines"));
  d.properties = reinterpret_cast<PFN_vkGetPipelineExecutablePropertiesKHR>(
      gdpa(*out, "vkGetPipelineExecutablePropertiesKHR"));
  d.statistics = reinterpret_cast<PFN_vkGetPipelineExecutableStatisticsKHR>(
      gdpa(*out, "vkGetPipelineExecutableStatisticsKHR"));
  d.representations = reinterpret_cast<PFN_vkGetPipelineExecutableInternalRepresentationsKHR>(
      gdpa(*out, "vkGetPipelineExecutableInternalRepresentationsKHR"));
  d.capture = supported && d.properties && d.statistics && d.representations;
  std::fprintf(stderr, "pipeline_stats: device created, statistics %s\n", d.capture ? "on" : "unavailable");
  std::lock_guard lock(mu);
  devices[*out] = d;
  return r;
}

PFN_vkVoidFunction own(const char* name);

}  // namespace

extern "C" {

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetDeviceProcAddr(VkDevice device, const char* name) {
  if (PFN_vkVoidFunction f = own(name)) return f;
  std::lock_guard lock(mu);
  auto it = devices.find(device);
  return it == devices.end() ? nullptr : it->second.next_gdpa(device, name);
}

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetInstanceProcAddr(VkInstance inst, const char* name) {
  if (std::strcmp(name, "vkCreateInstance") == 0)
    return reinterpret_cast<PFN_vkVoidFunction>(&CreateInstance);
  if (std::strcmp(name, "vkCreateDevice") == 0) return reinterpret_cast<PFN_vkVoidFunction>(&CreateDevice);
  if (PFN_vkVoidFunction f = own(name)) return f;
  return next_gipa ? next_gipa(inst, name) : nullptr;
}

}  // extern "C"

namespace {

PFN_vkVoidFunction own(const char* name) {
  if (std::strcmp(name, "vkGetDeviceProcAddr") == 0)
    return reinterpret_cast<PFN_vkVoidFunction>(&vkGetDeviceProcAddr);
  if (std::strcmp(name, "vkGetInstanceProcAddr") == 0)
    return reinterpret_cast<PFN_vkVoidFunction>(&vkGetInstanceProcAddr);
  if (std::strcmp(name, "vkCreateShaderModule") == 0)
    return reinterpret_cast<PFN_vkVoidFunction>(&CreateShaderModule);
  if (std::strcmp(name, "vkCreateComputePipelines") == 0)
    return reinterpret_cast<PFN_vkVoidFunction>(&CreateComputePipelines);
  return nullptr;
}

}  // namespace
