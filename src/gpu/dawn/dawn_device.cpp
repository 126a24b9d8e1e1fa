// gpu::Device over Dawn's WebGPU C API (webgpu_abi.hpp). Everything a decode step touches was created at
// load: a step only records dispatches into one command buffer, submits once, and asks for its read-backs.
#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <regex>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/error.hpp"
#include "gpu/dawn/pipeline_cache.hpp"
#include "gpu/dawn/webgpu_abi.hpp"
#include "gpu/device.hpp"
#include "kernels/kernel_sources.hpp"

namespace wgllm::gpu {
namespace {

WGPUStringView sv(std::string_view s) {
  return {s.data(), s.size()};
}
std::string str(WGPUStringView s) {
  if (!s.data) return {};
  return s.length == WGPU_STRLEN ? std::string(s.data) : std::string(s.data, s.length);
}

// The software Vulkan driver that scripts/install-deps.sh unpacks sits beside Dawn's library (lib/mesa/).
// Added to the loader's search with VK_ADD_DRIVER_FILES, so a real GPU's driver is still found and preferred;
// a user's own VK_DRIVER_FILES / VK_ICD_FILENAMES choice is left alone.
void add_bundled_software_vulkan() {
  if (std::getenv("VK_DRIVER_FILES") || std::getenv("VK_ICD_FILENAMES") || std::getenv("VK_ADD_DRIVER_FILES"))
    return;
  Dl_info dl{};
  if (!dladdr(reinterpret_cast<void*>(&wgpuCreateInstance), &dl) || !dl.dli_fname) return;
  std::error_code ec;
  auto dir = std::filesystem::canonical(dl.dli_fname, ec).parent_path();
  if (ec) return;
  auto icd = dir / "mesa" / "lvp_icd.json";
  if (std::filesystem::exists(icd, ec)) setenv("VK_ADD_DRIVER_FILES", icd.c_str(), 0);
  if (!std::getenv("XDG_RUNTIME_DIR")) setenv("XDG_RUNTIME_DIR", "/tmp", 0);  // silences Mesa's warning
}

WGPUInstance create_instance() {
  add_bundled_software_vulkan();
  WGPUInstanceDescriptor desc{};
  desc.capabilities.timedWaitAnyEnable = 1;  // else WaitAny with a timeout is refused
  desc.capabilities.timedWaitAnyMaxCount = 64;
  WGPUInstance instance = wgpuCreateInstance(&desc);
  if (!instance) fail_runtime("WebGPU: could not create a Dawn instance");
  return instance;
}

// Waits for one future; every wait is bounded so that a wedged driver becomes an error, not a hang.
void wait_future(WGPUInstance instance, WGPUFuture future, const char* what, double timeout_s = 120) {
  WGPUFutureWaitInfo info{future, 0};
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    WGPUWaitStatus st = wgpuInstanceWaitAny(instance, 1, &info, 100'000'000);  // 100 ms slices
    if (st == WGPUWaitStatus_Success && info.completed) return;
    if (st == WGPUWaitStatus_Error) fail_runtime(std::string("WebGPU: waiting for ") + what + " failed");
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > timeout_s)
      fail_runtime(std::string("WebGPU: ") + what + " did not complete within " +
                   std::to_string(int(timeout_s)) + " s");
  }
}

struct AdapterRequest {
  WGPUAdapter adapter = nullptr;
  std::string message;
};

WGPUAdapter request_adapter(WGPUInstance instance, WGPUBackendType backend, WGPUPowerPreference power,
                            bool fallback, std::string* message) {
  WGPURequestAdapterOptions opts{};
  bool gl = backend == WGPUBackendType_OpenGLES || backend == WGPUBackendType_OpenGL;
  opts.featureLevel = gl ? WGPUFeatureLevel_Compatibility : WGPUFeatureLevel_Core;
  opts.powerPreference = power;
  opts.forceFallbackAdapter = fallback;
  opts.backendType = backend;
  AdapterRequest req;
  WGPURequestAdapterCallbackInfo cb{};
  cb.mode = WGPUCallbackMode_WaitAnyOnly;
  cb.callback = [](WGPURequestAdapterStatus status, WGPUAdapter adapter, WGPUStringView msg, void* ud,
                   void*) {
    auto* r = static_cast<AdapterRequest*>(ud);
    if (status == WGPURequestAdapterStatus_Success) r->adapter = adapter;
    r->message = str(msg);
  };
  cb.userdata1 = &req;
  wait_future(instance, wgpuInstanceRequestAdapter(instance, &opts, cb), "the adapter request");
  if (message) *message = req.message;
  return req.adapter;
}

// Every adapter of one backend in Dawn's order (the driver's physical-device order, stable on a machine),
// each with a reference the caller releases.
std::vector<WGPUAdapter> enumerate_adapters(WGPUInstance instance, WGPUBackendType backend) {
  WGPURequestAdapterOptions opts{};
  bool gl = backend == WGPUBackendType_OpenGLES || backend == WGPUBackendType_OpenGL;
  opts.featureLevel = gl ? WGPUFeatureLevel_Compatibility : WGPUFeatureLevel_Core;
  opts.backendType = backend;
  dawn::native::Instance native(reinterpret_cast<dawn::native::InstanceBase*>(instance));
  std::vector<WGPUAdapter> out;
  for (const dawn::native::Adapter& a : native.EnumerateAdapters(&opts)) {
    wgpuAdapterAddRef(a.Get());
    out.push_back(a.Get());
  }
  return out;
}

std::string backend_name(WGPUBackendType t) {
  switch (t) {
    case WGPUBackendType_Vulkan:
      return "vulkan";
    case WGPUBackendType_OpenGL:
      return "opengl";
    case WGPUBackendType_OpenGLES:
      return "opengles";
    case WGPUBackendType_Metal:
      return "metal";
    case WGPUBackendType_D3D12:
      return "d3d12";
    case WGPUBackendType_D3D11:
      return "d3d11";
    case WGPUBackendType_Null:
      return "null";
    default:
      return "unknown";
  }
}

std::string adapter_type_name(WGPUAdapterType t) {
  switch (t) {
    case WGPUAdapterType_DiscreteGPU:
      return "discrete GPU";
    case WGPUAdapterType_IntegratedGPU:
      return "integrated GPU";
    case WGPUAdapterType_CPU:
      return "CPU";
    default:
      return "unknown";
  }
}

std::string feature_name(uint32_t f) {
  switch (f) {
    case 0x1:
      return "depth-clip-control";
    case 0x2:
      return "depth32float-stencil8";
    case 0x3:
      return "timestamp-query";
    case 0x4:
      return "texture-compression-bc";
    case 0x5:
      return "texture-compression-bc-sliced-3d";
    case 0x6:
      return "texture-compression-etc2";
    case 0x7:
      return "texture-compression-astc";
    case 0x8:
      return "texture-compression-astc-sliced-3d";
    case 0x9:
      return "indirect-first-instance";
    case 0xA:
      return "shader-f16";
    case 0xB:
      return "rg11b10ufloat-renderable";
    case 0xC:
      return "bgra8unorm-storage";
    case 0xD:
      return "float32-filterable";
    case 0xE:
      return "float32-blendable";
    case 0xF:
      return "clip-distances";
    case 0x10:
      return "dual-source-blending";
    case 0x11:
      return "subgroups";
    case 0x12:
      return "core-features-and-limits";
    case 0x50003:
      return "chromium-experimental-timestamp-query-inside-passes";
    case 0x50037:
      return "chromium-experimental-subgroup-matrix";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "feature-0x%x", f);
      return buf;
    }
  }
}

AdapterReport describe(WGPUInstance instance, WGPUAdapter adapter) {
  AdapterReport r;
  WGPUAdapterInfo info{};
  if (wgpuAdapterGetInfo(adapter, &info) == WGPUStatus_Success) {
    r.info.vendor = str(info.vendor);
    r.info.architecture = str(info.architecture);
    r.info.device = str(info.device);
    r.info.description = str(info.description);
    r.info.backend = backend_name(info.backendType);
    r.info.adapter_type = adapter_type_name(info.adapterType);
    r.info.vendor_id = info.vendorID;
    r.info.device_id = info.deviceID;
    r.info.subgroup_min_size = info.subgroupMinSize;
    r.info.subgroup_max_size = info.subgroupMaxSize;
    wgpuAdapterInfoFreeMembers(info);
  }
  WGPULimits lim{};
  if (wgpuAdapterGetLimits(adapter, &lim) == WGPUStatus_Success) {
    r.limits.max_storage_buffer_binding_size = lim.maxStorageBufferBindingSize;
    r.limits.max_buffer_size = lim.maxBufferSize;
    r.limits.max_compute_workgroup_storage_size = lim.maxComputeWorkgroupStorageSize;
    r.limits.max_compute_invocations_per_workgroup = lim.maxComputeInvocationsPerWorkgroup;
    r.limits.max_compute_workgroup_size_x = lim.maxComputeWorkgroupSizeX;
    r.limits.max_compute_workgroups_per_dimension = lim.maxComputeWorkgroupsPerDimension;
    r.limits.max_storage_buffers_per_shader_stage = lim.maxStorageBuffersPerShaderStage;
    r.limits.min_storage_buffer_offset_alignment = lim.minStorageBufferOffsetAlignment;
    r.limits.min_uniform_buffer_offset_alignment = lim.minUniformBufferOffsetAlignment;
  }
  WGPUSupportedFeatures feats{};
  wgpuAdapterGetFeatures(adapter, &feats);
  for (size_t i = 0; i < feats.featureCount; ++i) {
    r.features.names.push_back(feature_name(feats.features[i]));
    if (feats.features[i] == WGPUFeatureName_Subgroups) r.features.subgroups = true;
    if (feats.features[i] == WGPUFeatureName_ShaderF16) r.features.shader_f16 = true;
    if (feats.features[i] == WGPUFeatureName_TimestampQuery) r.features.timestamp_query = true;
  }
  wgpuSupportedFeaturesFreeMembers(feats);
  WGPUSupportedWGSLLanguageFeatures lang{};
  if (wgpuInstanceGetWGSLLanguageFeatures(instance, &lang) == WGPUStatus_Success) {
    for (size_t i = 0; i < lang.featureCount; ++i)
      if (lang.features[i] == WGPUWGSLLanguageFeatureName_Packed4x8IntegerDotProduct)
        r.features.dot4_i8_packed = true;
    wgpuSupportedWGSLLanguageFeaturesFreeMembers(lang);
  }
  return r;
}

// The adapters of `backends` in the order `--adapter N` and `wgllm devices` number them: per backend, GPUs
// before software ones, each group in Dawn's order. Each adapter carries a reference the caller releases.
struct OrderedAdapter {
  WGPUAdapter adapter;
  AdapterReport report;
};
std::vector<OrderedAdapter> ordered_adapters(WGPUInstance instance,
                                             const std::vector<WGPUBackendType>& backends) {
  std::vector<OrderedAdapter> out;
  for (WGPUBackendType backend : backends) {
    size_t first = out.size();
    for (WGPUAdapter a : enumerate_adapters(instance, backend)) out.push_back({a, describe(instance, a)});
    std::stable_partition(out.begin() + first, out.end(),
                          [](const OrderedAdapter& a) { return a.report.info.adapter_type != "CPU"; });
  }
  return out;
}

class DawnDevice final : public Device {
 public:
  explicit DawnDevice(const DeviceOptions& options);
  ~DawnDevice() override;

  const AdapterInfo& info() const override { return report_.info; }
  const Limits& limits() const override { return report_.limits; }
  const Features& features() const override { return report_.features; }

  Buffer buffer(uint64_t size, uint32_t usage, std::string_view label) override;
  void write(Buffer dst, uint64_t offset, std::span<const uint8_t> bytes) override;
  void write_threaded(WGPUBuffer dst, uint64_t offset, std::span<const uint8_t> bytes);
  static constexpr size_t kThreadedWriteBytes = 4u << 20;  // smaller writes: queue.writeBuffer
  static constexpr uint64_t kUploadBytes = 32ull << 20;    // each of write_threaded's staging buffers
  Kernel kernel(std::string_view name, const KernelDefines& defines) override;
  BindGroup bind(Kernel kernel, std::span<const BufferSlice> slices) override;
  void dispatch(Kernel kernel, BindGroup group, uint32_t x, uint32_t y, uint32_t z) override;
  void copy(Buffer src, uint64_t src_offset, Buffer dst, uint64_t dst_offset, uint64_t size) override;
  ReadTicket read(Buffer src, uint64_t offset, uint64_t size) override;
  void submit() override;
  bool poll(ReadTicket ticket) override;
  std::vector<uint8_t> wait(ReadTicket ticket) override;
  void simulate_loss() override;
  bool set_profiling(bool on) override;
  std::vector<KernelTime> profile() override;
  const DeviceStats& stats() const override {
    if (cache_) {
      stats_.pipeline_cache_hits = cache_->hits();
      stats_.pipeline_cache_stores = cache_->stores();
    }
    return stats_;
  }
  uint64_t allocated_bytes() const override { return allocated_; }

 private:
  struct BufferRec {
    WGPUBuffer handle = nullptr;
    uint64_t size = 0;
    std::string label;
  };
  struct KernelRec {
    WGPUComputePipeline pipeline = nullptr;
    WGPUBindGroupLayout layout = nullptr;
    std::string name;
    std::string label;  // for profiles
  };
  enum class TicketState { Free, Recorded, Mapping, Mapped, Failed };
  struct Ticket {
    WGPUBuffer staging = nullptr;
    uint64_t capacity = 0;
    uint64_t size = 0;
    TicketState state = TicketState::Free;
    std::string error;
    DawnDevice* device = nullptr;
  };

  void check_alive() const;
  void throw_pending_error();
  void map_async(Ticket& t, WGPUFlags mode);
  void await_mapping(Ticket& t, std::string_view what);
  WGPUCommandEncoder encoder();
  void end_pass();
  // Runs `create` inside an error scope and turns a validation or out-of-memory error into an exception.
  template <typename F>
  auto scoped(const std::string& what, F&& create);

  WGPUInstance instance_ = nullptr;
  WGPUAdapter adapter_ = nullptr;
  WGPUDevice device_ = nullptr;
  WGPUQueue queue_ = nullptr;
  AdapterReport report_;

  std::vector<BufferRec> buffers_{1};  // id 0 = none
  std::vector<KernelRec> kernels_{1};
  std::unordered_map<std::string, uint32_t> kernel_cache_;
  std::vector<WGPUBindGroup> groups_{nullptr};
  std::vector<std::unique_ptr<Ticket>> tickets_{};

  WGPUCommandEncoder encoder_ = nullptr;
  WGPUComputePassEncoder pass_ = nullptr;
  std::vector<uint32_t> recorded_tickets_;
  std::array<Ticket, 2> uploads_;  // write_threaded's staging buffers, used in turn
  size_t next_upload_ = 0;

  // Profiling: one timestamp pair per dispatch, resolved and read back at submit.
  static constexpr uint32_t kMaxProfiled = 2048;  // WebGPU allows 4096 queries per set
  bool profiling_ = false;
  WGPUQuerySet queries_ = nullptr;
  Buffer resolve_;
  std::vector<uint32_t> profiled_kernels_;   // dispatches recorded since the last submit
  std::vector<uint32_t> submitted_profile_;  // the last submit's
  ReadTicket profile_ticket_{};

  mutable DeviceStats stats_;
  std::unique_ptr<PipelineCache> cache_;  // outlives the device: Dawn may store entries until it is released
  uint64_t allocated_ = 0;
  std::string lost_message_;
  std::string uncaptured_error_;
  bool destroying_ = false;
};

DawnDevice::DawnDevice(const DeviceOptions& options) {
  instance_ = create_instance();
  // Dawn also offers a Null backend that computes nothing: only real backends are asked for, Vulkan first.
  std::vector<WGPUBackendType> backends;
  if (options.backend != Backend::OpenGL) backends.push_back(WGPUBackendType_Vulkan);
  if (options.backend != Backend::Vulkan) backends.push_back(WGPUBackendType_OpenGLES);
  if (options.backend != Backend::Vulkan && !std::getenv("EGL_PLATFORM"))
    setenv("EGL_PLATFORM", "surfaceless", 0);
  std::string message;
  if (options.adapter >= 0) {
    std::vector<OrderedAdapter> all = ordered_adapters(instance_, backends);
    if (static_cast<size_t>(options.adapter) < all.size()) adapter_ = all[options.adapter].adapter;
    std::string names;
    for (size_t i = 0; i < all.size(); ++i) {
      names += (i ? ", [" : "[") + std::to_string(i) + "] " + all[i].report.info.device + " (" +
               all[i].report.info.backend + ")";
      if (all[i].adapter != adapter_) wgpuAdapterRelease(all[i].adapter);
    }
    if (!adapter_) {
      wgpuInstanceRelease(instance_);
      fail_input("WebGPU: adapter " + std::to_string(options.adapter) + " requested, but " +
                 std::to_string(all.size()) + " found" + (names.empty() ? "" : ": " + names) +
                 " (`wgllm devices` lists them)");
    }
  }
  for (WGPUBackendType backend : backends) {
    for (bool fallback : {false, true}) {
      if (adapter_ || (fallback && !options.allow_software)) break;
      adapter_ = request_adapter(instance_, backend, WGPUPowerPreference_HighPerformance, fallback, &message);
    }
  }
  if (!adapter_) {
    wgpuInstanceRelease(instance_);
    fail_runtime("WebGPU: no adapter found" + (message.empty() ? std::string() : ": " + message) +
                 " (run scripts/install-deps.sh to install a software Vulkan driver)");
  }
  report_ = describe(instance_, adapter_);

  std::vector<WGPUFeatureName> required;
  if (report_.features.subgroups) required.push_back(WGPUFeatureName_Subgroups);
  if (report_.features.shader_f16) required.push_back(WGPUFeatureName_ShaderF16);
  if (report_.features.timestamp_query) required.push_back(WGPUFeatureName_TimestampQuery);
  WGPULimits limits{};
  wgpuAdapterGetLimits(adapter_, &limits);  // ask for everything the adapter has, not WebGPU's defaults
  limits.nextInChain = nullptr;

  // Dawn rounds timestamps to 100 us by default (a browser's defence against timing attacks); a native
  // engine's own profiling needs them exact.
  static const char* const kDisabledToggles[] = {"timestamp_quantization"};
  WGPUDawnTogglesDescriptor toggles{};
  toggles.chain.sType = WGPUSType_DawnTogglesDescriptor;
  toggles.disabledToggleCount = 1;
  toggles.disabledToggles = kDisabledToggles;
  if (options.pipeline_cache_dir != "off")
    cache_ = std::make_unique<PipelineCache>(options.pipeline_cache_dir.empty()
                                                 ? PipelineCache::default_dir()
                                                 : std::filesystem::path(options.pipeline_cache_dir));
  WGPUDawnCacheDeviceDescriptor cache{};
  cache.chain.sType = WGPUSType_DawnCacheDeviceDescriptor;
  cache.loadDataFunction = [](const void* key, size_t key_size, void* value, size_t value_size, void* ud) {
    return static_cast<PipelineCache*>(ud)->load(key, key_size, value, value_size);
  };
  cache.storeDataFunction = [](const void* key, size_t key_size, const void* value, size_t value_size,
                               void* ud) {
    static_cast<PipelineCache*>(ud)->store(key, key_size, value, value_size);
  };
  cache.functionUserdata = cache_.get();
  if (cache_) toggles.chain.next = &cache.chain;
  WGPUDeviceDescriptor desc{};
  desc.nextInChain = &toggles.chain;
  desc.label = sv("wgllm");
  desc.requiredFeatureCount = required.size();
  desc.requiredFeatures = required.data();
  desc.requiredLimits = &limits;
  desc.deviceLostCallbackInfo.mode = WGPUCallbackMode_AllowSpontaneous;
  desc.deviceLostCallbackInfo.callback = [](const WGPUDevice*, WGPUDeviceLostReason reason,
                                            WGPUStringView msg, void* ud, void*) {
    auto* self = static_cast<DawnDevice*>(ud);
    if (self->destroying_ || reason == WGPUDeviceLostReason_CallbackCancelled) return;
    self->lost_message_ = str(msg).empty() ? "reason " + std::to_string(reason) : str(msg);
  };
  desc.deviceLostCallbackInfo.userdata1 = this;
  desc.uncapturedErrorCallbackInfo.callback = [](const WGPUDevice*, WGPUErrorType type, WGPUStringView msg,
                                                 void* ud, void*) {
    auto* self = static_cast<DawnDevice*>(ud);
    if (self->uncaptured_error_.empty())
      self->uncaptured_error_ = (type == WGPUErrorType_OutOfMemory ? "out of GPU memory: " : "") + str(msg);
  };
  desc.uncapturedErrorCallbackInfo.userdata1 = this;

  struct DeviceRequest {
    WGPUDevice device = nullptr;
    std::string message;
  } req;
  WGPURequestDeviceCallbackInfo cb{};
  cb.mode = WGPUCallbackMode_WaitAnyOnly;
  cb.callback = [](WGPURequestDeviceStatus status, WGPUDevice device, WGPUStringView msg, void* ud, void*) {
    auto* r = static_cast<DeviceRequest*>(ud);
    if (status == WGPURequestDeviceStatus_Success) r->device = device;
    r->message = str(msg);
  };
  cb.userdata1 = &req;
  wait_future(instance_, wgpuAdapterRequestDevice(adapter_, &desc, cb), "the device request");
  if (!req.device) {
    wgpuAdapterRelease(adapter_);
    wgpuInstanceRelease(instance_);
    fail_runtime("WebGPU: could not create a device on " + report_.info.device + ": " + req.message);
  }
  device_ = req.device;
  queue_ = wgpuDeviceGetQueue(device_);
}

DawnDevice::~DawnDevice() {
  destroying_ = true;
  if (pass_) {
    wgpuComputePassEncoderEnd(pass_);
    wgpuComputePassEncoderRelease(pass_);
  }
  if (encoder_) wgpuCommandEncoderRelease(encoder_);
  for (auto& t : tickets_)
    if (t->staging) wgpuBufferRelease(t->staging);
  for (Ticket& t : uploads_)
    if (t.staging) wgpuBufferRelease(t.staging);
  if (queries_) {
    wgpuQuerySetDestroy(queries_);
    wgpuQuerySetRelease(queries_);
  }
  for (auto g : groups_)
    if (g) wgpuBindGroupRelease(g);
  for (auto& k : kernels_) {
    if (k.layout) wgpuBindGroupLayoutRelease(k.layout);
    if (k.pipeline) wgpuComputePipelineRelease(k.pipeline);
  }
  for (auto& b : buffers_)
    if (b.handle) {
      wgpuBufferDestroy(b.handle);
      wgpuBufferRelease(b.handle);
    }
  if (queue_) wgpuQueueRelease(queue_);
  if (device_) {
    wgpuDeviceDestroy(device_);
    wgpuDeviceRelease(device_);
  }
  if (adapter_) wgpuAdapterRelease(adapter_);
  if (instance_) {
    wgpuInstanceProcessEvents(instance_);
    wgpuInstanceRelease(instance_);
  }
}

void DawnDevice::simulate_loss() {
  wgpuDeviceDestroy(device_);
  wgpuInstanceProcessEvents(instance_);
  if (lost_message_.empty()) lost_message_ = "the device was destroyed";
}

void DawnDevice::check_alive() const {
  if (!lost_message_.empty()) fail_runtime("GPU device lost: " + lost_message_);
}

void DawnDevice::throw_pending_error() {
  check_alive();
  if (!uncaptured_error_.empty()) {
    std::string e = std::move(uncaptured_error_);
    uncaptured_error_.clear();
    fail_runtime("WebGPU error: " + e);
  }
}

template <typename F>
auto DawnDevice::scoped(const std::string& what, F&& create) {
  check_alive();
  wgpuDevicePushErrorScope(device_, WGPUErrorFilter_OutOfMemory);
  wgpuDevicePushErrorScope(device_, WGPUErrorFilter_Validation);
  auto result = create();
  struct Popped {
    WGPUErrorType type = WGPUErrorType_NoError;
    std::string message;
  } popped[2];
  for (auto& p : popped) {
    WGPUPopErrorScopeCallbackInfo cb{};
    cb.mode = WGPUCallbackMode_WaitAnyOnly;
    cb.callback = [](WGPUPopErrorScopeStatus, WGPUErrorType type, WGPUStringView msg, void* ud, void*) {
      auto* out = static_cast<Popped*>(ud);
      out->type = type;
      out->message = str(msg);
    };
    cb.userdata1 = &p;
    wait_future(instance_, wgpuDevicePopErrorScope(device_, cb), "an error scope");
  }
  for (auto& p : popped) {
    if (p.type == WGPUErrorType_OutOfMemory)
      fail_runtime("out of GPU memory creating " + what + ": " + p.message);
    if (p.type != WGPUErrorType_NoError) fail_runtime(what + ": " + p.message);
  }
  return result;
}

Buffer DawnDevice::buffer(uint64_t size, uint32_t usage, std::string_view label) {
  // Storage buffers are sized up to 4 bytes (WGSL arrays of u32/f32) and never zero-sized.
  uint64_t padded = std::max<uint64_t>(4, (size + 3) & ~uint64_t(3));
  if (padded > report_.limits.max_buffer_size)
    fail_runtime("GPU buffer '" + std::string(label) + "' needs " + std::to_string(padded) +
                 " bytes; the adapter's maxBufferSize is " + std::to_string(report_.limits.max_buffer_size));
  WGPUBufferDescriptor desc{};
  desc.label = sv(label);
  desc.size = padded;
  desc.usage = WGPUBufferUsage_CopyDst | WGPUBufferUsage_CopySrc;
  if (usage & kStorage) desc.usage |= WGPUBufferUsage_Storage;
  if (usage & kUniform) desc.usage |= WGPUBufferUsage_Uniform;
  WGPUBuffer handle = scoped("buffer '" + std::string(label) + "' (" + std::to_string(padded) + " bytes)",
                             [&] { return wgpuDeviceCreateBuffer(device_, &desc); });
  if (!handle) fail_runtime("could not create GPU buffer '" + std::string(label) + "'");
  buffers_.push_back({handle, padded, std::string(label)});
  allocated_ += padded;
  return Buffer{static_cast<uint32_t>(buffers_.size() - 1), padded};
}

void DawnDevice::write(Buffer dst, uint64_t offset, std::span<const uint8_t> bytes) {
  check_alive();
  const BufferRec& b = buffers_.at(dst.id);
  if (offset + bytes.size() > b.size || offset % 4)
    fail_runtime("write of " + std::to_string(bytes.size()) + " bytes at " + std::to_string(offset) +
                 " outside or misaligned in buffer '" + b.label + "'");
  size_t whole = bytes.size() & ~size_t(3);
  if (whole >= kThreadedWriteBytes) {
    write_threaded(b.handle, offset, bytes.first(whole));
  } else if (whole) {
    wgpuQueueWriteBuffer(queue_, b.handle, offset, bytes.data(), whole);
  }
  if (whole != bytes.size()) {  // WebGPU writes whole 4-byte words
    uint8_t tail[4] = {};
    std::memcpy(tail, bytes.data() + whole, bytes.size() - whole);
    wgpuQueueWriteBuffer(queue_, b.handle, offset + whole, tail, 4);
  }
  stats_.bytes_written += bytes.size();
}

// Model upload: queue.writeBuffer copies on the calling thread into staging memory that Dawn allocates as
// it goes, 1.4 GB/s from a page-cached mmap on the H100's host, most of it in the kernel (pinning fresh
// host memory: 3.5 s of system time in an 8B Q4_0 load, docs/perf.md). Here two staging buffers are
// mapped once and used in turn, each filled by several threads (which also fault in their own shares of
// the file's pages), copied to `dst` by a command submitted at once (writeBuffer's queue order), then
// mapped again for its next turn.
void DawnDevice::write_threaded(WGPUBuffer dst, uint64_t offset, std::span<const uint8_t> bytes) {
  const size_t threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
  for (uint64_t at = 0; at < bytes.size(); at += kUploadBytes) {
    const uint64_t n = std::min<uint64_t>(kUploadBytes, bytes.size() - at);
    Ticket& s = uploads_[next_upload_++ % uploads_.size()];
    if (!s.staging) {
      WGPUBufferDescriptor desc{};
      desc.label = sv("upload staging");
      desc.usage = WGPUBufferUsage_MapWrite | WGPUBufferUsage_CopySrc;
      desc.size = kUploadBytes;
      desc.mappedAtCreation = 1;
      s.staging = scoped("upload staging buffer (" + std::to_string(kUploadBytes) + " bytes)",
                         [&] { return wgpuDeviceCreateBuffer(device_, &desc); });
      if (!s.staging) fail_runtime("could not create a GPU upload staging buffer");
      s.capacity = kUploadBytes;
      s.state = TicketState::Mapped;
    }
    await_mapping(s, "upload staging buffer");
    auto* mapped = static_cast<uint8_t*>(wgpuBufferGetMappedRange(s.staging, 0, s.capacity));
    if (!mapped) fail_runtime("GPU upload: staging buffer's mapped range unavailable");
    const uint64_t share = ((n + threads - 1) / threads + 4095) & ~uint64_t(4095);
    auto copy = [=](uint64_t i) { std::memcpy(mapped + i, bytes.data() + at + i, std::min(share, n - i)); };
    std::vector<std::thread> pool;
    for (uint64_t i = 0; i < n; i += share) {
      try {
        pool.emplace_back(copy, i);
      } catch (const std::system_error&) {  // no thread to be had: this one copies
        copy(i);
      }
    }
    for (std::thread& t : pool) t.join();
    wgpuBufferUnmap(s.staging);
    WGPUCommandEncoderDescriptor ed{};
    WGPUCommandEncoder enc = wgpuDeviceCreateCommandEncoder(device_, &ed);
    wgpuCommandEncoderCopyBufferToBuffer(enc, s.staging, 0, dst, offset + at, n);
    WGPUCommandBufferDescriptor cd{};
    WGPUCommandBuffer cmd = wgpuCommandEncoderFinish(enc, &cd);
    wgpuQueueSubmit(queue_, 1, &cmd);
    wgpuCommandBufferRelease(cmd);
    wgpuCommandEncoderRelease(enc);
    ++stats_.submits;
    map_async(s, WGPUMapMode_Write);
  }
}

Kernel DawnDevice::kernel(std::string_view name, const KernelDefines& defines) {
  std::string key(name);
  for (const auto& [k, v] : defines) key += "|" + k + "=" + v;
  if (auto it = kernel_cache_.find(key); it != kernel_cache_.end()) return Kernel{it->second};

  std::string code = kernels::specialise(name, kernels::source(name), defines);
  WGPUShaderSourceWGSL wgsl{};
  wgsl.chain.sType = WGPUSType_ShaderSourceWGSL;
  wgsl.code = sv(code);
  WGPUShaderModuleDescriptor mdesc{};
  mdesc.nextInChain = &wgsl.chain;
  mdesc.label = sv(name);
  std::string what = "WGSL kernel '" + std::string(name) + "'";
  WGPUComputePipeline pipeline = nullptr;
  try {
    pipeline = scoped(what, [&] {
      WGPUShaderModule module = wgpuDeviceCreateShaderModule(device_, &mdesc);
      WGPUComputePipelineDescriptor pdesc{};
      pdesc.label = sv(name);
      pdesc.compute.module = module;
      pdesc.compute.entryPoint = sv("main");
      WGPUComputePipeline p = wgpuDeviceCreateComputePipeline(device_, &pdesc);
      wgpuShaderModuleRelease(module);
      return p;
    });
  } catch (const Error& e) {
    // Tint reports positions as ":LINE:COL"; the specialised source keeps the .wgsl file's line numbers.
    std::string msg = std::regex_replace(e.what(), std::regex(R"((\s):(\d+):(\d+))"),
                                         "$1" + std::string(name) + ".wgsl:$2:$3");
    fail_runtime(msg);
  }
  if (!pipeline) fail_runtime(what + ": pipeline creation failed");
  std::string label(name);
  for (const auto& [k, v] : defines) {
    if (k.starts_with("WTYPE_")) label += " " + k.substr(6);
    if (k == "MERGE") label += " merge";  // attention.wgsl's merge of spans: a line of its own in profiles
  }
  KernelRec rec{pipeline, wgpuComputePipelineGetBindGroupLayout(pipeline, 0), std::string(name), label};
  kernels_.push_back(rec);
  uint32_t id = static_cast<uint32_t>(kernels_.size() - 1);
  kernel_cache_.emplace(std::move(key), id);
  return Kernel{id};
}

BindGroup DawnDevice::bind(Kernel kernel, std::span<const BufferSlice> slices) {
  const KernelRec& k = kernels_.at(kernel.id);
  std::vector<WGPUBindGroupEntry> entries(slices.size());
  for (size_t i = 0; i < slices.size(); ++i) {
    const BufferRec& b = buffers_.at(slices[i].buffer.id);
    entries[i] = {};
    entries[i].binding = static_cast<uint32_t>(i);
    entries[i].buffer = b.handle;
    entries[i].offset = slices[i].offset;
    entries[i].size = slices[i].size ? slices[i].size : WGPU_WHOLE_SIZE;
  }
  WGPUBindGroupDescriptor desc{};
  desc.label = sv(k.name);
  desc.layout = k.layout;
  desc.entryCount = entries.size();
  desc.entries = entries.data();
  WGPUBindGroup g = scoped("bind group for kernel '" + k.name + "'",
                           [&] { return wgpuDeviceCreateBindGroup(device_, &desc); });
  groups_.push_back(g);
  return BindGroup{static_cast<uint32_t>(groups_.size() - 1)};
}

WGPUCommandEncoder DawnDevice::encoder() {
  if (!encoder_) {
    WGPUCommandEncoderDescriptor d{};
    encoder_ = wgpuDeviceCreateCommandEncoder(device_, &d);
  }
  return encoder_;
}

void DawnDevice::end_pass() {
  if (pass_) {
    wgpuComputePassEncoderEnd(pass_);
    wgpuComputePassEncoderRelease(pass_);
    pass_ = nullptr;
  }
}

void DawnDevice::dispatch(Kernel kernel, BindGroup group, uint32_t x, uint32_t y, uint32_t z) {
  check_alive();
  const bool timed = profiling_ && profiled_kernels_.size() < kMaxProfiled;
  if (timed) end_pass();
  if (!pass_) {
    WGPUComputePassDescriptor d{};
    WGPUPassTimestampWrites tw{};
    if (timed) {
      tw.querySet = queries_;
      tw.beginningOfPassWriteIndex = 2 * static_cast<uint32_t>(profiled_kernels_.size());
      tw.endOfPassWriteIndex = tw.beginningOfPassWriteIndex + 1;
      d.timestampWrites = &tw;
      profiled_kernels_.push_back(kernel.id);
    }
    pass_ = wgpuCommandEncoderBeginComputePass(encoder(), &d);
  }
  wgpuComputePassEncoderSetPipeline(pass_, kernels_.at(kernel.id).pipeline);
  wgpuComputePassEncoderSetBindGroup(pass_, 0, groups_.at(group.id), 0, nullptr);
  wgpuComputePassEncoderDispatchWorkgroups(pass_, x, y, z);
  if (timed) end_pass();
  ++stats_.dispatches;
}

void DawnDevice::copy(Buffer src, uint64_t src_offset, Buffer dst, uint64_t dst_offset, uint64_t size) {
  check_alive();
  end_pass();
  wgpuCommandEncoderCopyBufferToBuffer(encoder(), buffers_.at(src.id).handle, src_offset,
                                       buffers_.at(dst.id).handle, dst_offset, size);
}

ReadTicket DawnDevice::read(Buffer src, uint64_t offset, uint64_t size) {
  check_alive();
  uint64_t padded = std::max<uint64_t>(4, (size + 3) & ~uint64_t(3));
  // Staging buffers are recycled: after the first steps, reading back creates nothing.
  uint32_t id = 0;
  for (uint32_t i = 0; i < tickets_.size(); ++i)
    if (tickets_[i]->state == TicketState::Free && tickets_[i]->capacity >= padded &&
        (id == 0 || tickets_[i]->capacity < tickets_[id - 1]->capacity))
      id = i + 1;
  if (id == 0) {
    auto t = std::make_unique<Ticket>();
    WGPUBufferDescriptor d{};
    d.label = sv("read-back");
    d.size = padded;
    d.usage = WGPUBufferUsage_MapRead | WGPUBufferUsage_CopyDst;
    t->staging = wgpuDeviceCreateBuffer(device_, &d);
    t->capacity = padded;
    t->device = this;
    tickets_.push_back(std::move(t));
    id = static_cast<uint32_t>(tickets_.size());
  }
  Ticket& t = *tickets_[id - 1];
  t.size = size;
  t.state = TicketState::Recorded;
  t.error.clear();
  end_pass();
  wgpuCommandEncoderCopyBufferToBuffer(encoder(), buffers_.at(src.id).handle, offset, t.staging, 0, padded);
  recorded_tickets_.push_back(id);
  stats_.bytes_read_back += size;
  return ReadTicket{id};
}

void DawnDevice::submit() {
  check_alive();
  end_pass();
  if (!profiled_kernels_.empty()) {
    uint32_t n = 2 * static_cast<uint32_t>(profiled_kernels_.size());
    wgpuCommandEncoderResolveQuerySet(encoder(), queries_, 0, n, buffers_.at(resolve_.id).handle, 0);
    profile_ticket_ = read(resolve_, 0, uint64_t(n) * 8);
    submitted_profile_ = std::move(profiled_kernels_);
    profiled_kernels_.clear();
  }
  if (encoder_) {
    WGPUCommandBufferDescriptor d{};
    WGPUCommandBuffer cmd = wgpuCommandEncoderFinish(encoder_, &d);
    wgpuCommandEncoderRelease(encoder_);
    encoder_ = nullptr;
    wgpuQueueSubmit(queue_, 1, &cmd);
    wgpuCommandBufferRelease(cmd);
    ++stats_.submits;
  }
  for (uint32_t id : recorded_tickets_) map_async(*tickets_[id - 1], WGPUMapMode_Read);
  recorded_tickets_.clear();
  throw_pending_error();
}

bool DawnDevice::set_profiling(bool on) {
  if (on && !report_.features.timestamp_query) return false;
  if (on && !queries_) {
    WGPUQuerySetDescriptor d{};
    d.label = sv("profile");
    d.type = WGPUQueryType_Timestamp;
    d.count = 2 * kMaxProfiled;
    queries_ = scoped("timestamp query set", [&] { return wgpuDeviceCreateQuerySet(device_, &d); });
    WGPUBufferDescriptor b{};
    b.label = sv("profile resolve");
    b.size = uint64_t(2) * kMaxProfiled * 8;
    b.usage = WGPUBufferUsage_QueryResolve | WGPUBufferUsage_CopySrc;
    buffers_.push_back({scoped("profile resolve buffer", [&] { return wgpuDeviceCreateBuffer(device_, &b); }),
                        b.size, "profile resolve"});
    resolve_ = Buffer{static_cast<uint32_t>(buffers_.size() - 1), b.size};
  }
  profiling_ = on;
  return true;
}

std::vector<Device::KernelTime> DawnDevice::profile() {
  std::vector<KernelTime> out;
  if (submitted_profile_.empty()) return out;
  std::vector<uint8_t> bytes = wait(profile_ticket_);
  std::vector<uint64_t> ticks(bytes.size() / 8);
  std::memcpy(ticks.data(), bytes.data(), ticks.size() * 8);
  for (size_t i = 0; i < submitted_profile_.size(); ++i) {
    uint64_t t0 = ticks[2 * i], t1 = ticks[2 * i + 1];
    out.push_back({kernels_.at(submitted_profile_[i]).label, t1 > t0 ? (t1 - t0) * 1e-9 : 0.0});
  }
  submitted_profile_.clear();
  return out;
}

bool DawnDevice::poll(ReadTicket ticket) {
  Ticket& t = *tickets_.at(ticket.id - 1);
  if (t.state == TicketState::Mapping) wgpuInstanceProcessEvents(instance_);
  throw_pending_error();
  if (t.state == TicketState::Recorded) fail_runtime("read-back polled before submit()");
  return t.state == TicketState::Mapped || t.state == TicketState::Failed;
}

void DawnDevice::map_async(Ticket& t, WGPUFlags mode) {
  t.state = TicketState::Mapping;
  WGPUBufferMapCallbackInfo cb{};
  cb.mode = WGPUCallbackMode_AllowProcessEvents;
  cb.callback = [](WGPUMapAsyncStatus status, WGPUStringView msg, void* ud, void*) {
    auto* ticket = static_cast<Ticket*>(ud);
    if (status == WGPUMapAsyncStatus_Success) {
      ticket->state = TicketState::Mapped;
    } else {
      ticket->state = TicketState::Failed;
      ticket->error = str(msg);
    }
  };
  cb.userdata1 = &t;
  wgpuBufferMapAsync(t.staging, mode, 0, static_cast<size_t>(t.capacity), cb);
}

void DawnDevice::await_mapping(Ticket& t, std::string_view what) {
  auto start = std::chrono::steady_clock::now();
  while (t.state == TicketState::Mapping) {
    wgpuInstanceProcessEvents(instance_);
    throw_pending_error();
    if (t.state != TicketState::Mapping) break;
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(300))
      fail_runtime("GPU " + std::string(what) + " was not mapped within 300 s (device hung?)");
    std::this_thread::yield();
  }
  if (t.state == TicketState::Failed) {
    t.state = TicketState::Free;
    check_alive();  // a lost device explains the failure better than the mapping error
    fail_runtime("GPU " + std::string(what) + " could not be mapped: " + t.error);
  }
}

std::vector<uint8_t> DawnDevice::wait(ReadTicket ticket) {
  Ticket& t = *tickets_.at(ticket.id - 1);
  if (t.state == TicketState::Recorded) fail_runtime("read-back awaited before submit()");
  await_mapping(t, "read-back");
  const auto* p = static_cast<const uint8_t*>(wgpuBufferGetConstMappedRange(t.staging, 0, t.capacity));
  if (!p) fail_runtime("GPU read-back: mapped range unavailable");
  std::vector<uint8_t> out(p, p + t.size);
  wgpuBufferUnmap(t.staging);
  t.state = TicketState::Free;
  return out;
}

}  // namespace

std::unique_ptr<Device> open_device(const DeviceOptions& options) {
  return std::make_unique<DawnDevice>(options);
}

std::vector<AdapterReport> list_adapters() {
  WGPUInstance instance = create_instance();
  if (!std::getenv("EGL_PLATFORM")) setenv("EGL_PLATFORM", "surfaceless", 0);
  std::vector<AdapterReport> out;
  for (OrderedAdapter& a : ordered_adapters(instance, {WGPUBackendType_Vulkan, WGPUBackendType_OpenGLES})) {
    out.push_back(std::move(a.report));
    wgpuAdapterRelease(a.adapter);
  }
  wgpuInstanceRelease(instance);
  return out;
}

}  // namespace wgllm::gpu
