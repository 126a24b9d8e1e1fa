// The project's own declarations of the subset of WebGPU's C API that wgllm uses, pinned to the Dawn build
// installed by scripts/install-deps.sh (npm bun-webgpu-linux-x64@0.1.7 = google/dawn 29b45b55a7). No package
// ships the matching webgpu.h. Enum values and member order come from that Dawn's dawn.json; every struct
// size and member offset we rely on is checked below against the layouts read from the library's own DWARF
// (pahole; ../shared/webgpu/dawn-abi-layouts.txt), so a different Dawn fails to compile instead of corrupting
// memory. Only used inside src/gpu/dawn/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" {

using WGPUBool = uint32_t;
using WGPUFlags = uint64_t;

struct WGPUInstanceImpl;
struct WGPUAdapterImpl;
struct WGPUDeviceImpl;
struct WGPUQueueImpl;
struct WGPUBufferImpl;
struct WGPUShaderModuleImpl;
struct WGPUComputePipelineImpl;
struct WGPUBindGroupLayoutImpl;
struct WGPUBindGroupImpl;
struct WGPUCommandEncoderImpl;
struct WGPUComputePassEncoderImpl;
struct WGPUCommandBufferImpl;
struct WGPUQuerySetImpl;
struct WGPUPipelineLayoutImpl;
struct WGPUSurfaceImpl;
struct WGPUSamplerImpl;
struct WGPUTextureViewImpl;

using WGPUInstance = WGPUInstanceImpl*;
using WGPUAdapter = WGPUAdapterImpl*;
using WGPUDevice = WGPUDeviceImpl*;
using WGPUQueue = WGPUQueueImpl*;
using WGPUBuffer = WGPUBufferImpl*;
using WGPUShaderModule = WGPUShaderModuleImpl*;
using WGPUComputePipeline = WGPUComputePipelineImpl*;
using WGPUBindGroupLayout = WGPUBindGroupLayoutImpl*;
using WGPUBindGroup = WGPUBindGroupImpl*;
using WGPUCommandEncoder = WGPUCommandEncoderImpl*;
using WGPUComputePassEncoder = WGPUComputePassEncoderImpl*;
using WGPUCommandBuffer = WGPUCommandBufferImpl*;
using WGPUQuerySet = WGPUQuerySetImpl*;

// Enums (uint32 in the ABI). Values: dawn.json; +0x50000 for Dawn-only entries.
enum WGPUSType : uint32_t {
  WGPUSType_ShaderSourceWGSL = 0x2,
  WGPUSType_DawnTogglesDescriptor = 0x5000A,
  WGPUSType_DawnCacheDeviceDescriptor = 0x50007
};
enum WGPUFeatureLevel : uint32_t { WGPUFeatureLevel_Compatibility = 1, WGPUFeatureLevel_Core = 2 };
enum WGPUPowerPreference : uint32_t {
  WGPUPowerPreference_Undefined = 0,
  WGPUPowerPreference_LowPower = 1,
  WGPUPowerPreference_HighPerformance = 2
};
enum WGPUBackendType : uint32_t {
  WGPUBackendType_Undefined = 0,
  WGPUBackendType_Null = 1,
  WGPUBackendType_WebGPU = 2,
  WGPUBackendType_D3D11 = 3,
  WGPUBackendType_D3D12 = 4,
  WGPUBackendType_Metal = 5,
  WGPUBackendType_Vulkan = 6,
  WGPUBackendType_OpenGL = 7,
  WGPUBackendType_OpenGLES = 8
};
enum WGPUAdapterType : uint32_t {
  WGPUAdapterType_DiscreteGPU = 1,
  WGPUAdapterType_IntegratedGPU = 2,
  WGPUAdapterType_CPU = 3,
  WGPUAdapterType_Unknown = 4
};
enum WGPUCallbackMode : uint32_t {
  WGPUCallbackMode_WaitAnyOnly = 1,
  WGPUCallbackMode_AllowProcessEvents = 2,
  WGPUCallbackMode_AllowSpontaneous = 3
};
enum WGPURequestAdapterStatus : uint32_t { WGPURequestAdapterStatus_Success = 1 };
enum WGPURequestDeviceStatus : uint32_t { WGPURequestDeviceStatus_Success = 1 };
enum WGPUMapAsyncStatus : uint32_t { WGPUMapAsyncStatus_Success = 1 };
enum WGPUPopErrorScopeStatus : uint32_t { WGPUPopErrorScopeStatus_Success = 1 };
enum WGPUErrorType : uint32_t {
  WGPUErrorType_NoError = 1,
  WGPUErrorType_Validation = 2,
  WGPUErrorType_OutOfMemory = 3,
  WGPUErrorType_Internal = 4,
  WGPUErrorType_Unknown = 5
};
enum WGPUErrorFilter : uint32_t {
  WGPUErrorFilter_Validation = 1,
  WGPUErrorFilter_OutOfMemory = 2,
  WGPUErrorFilter_Internal = 3
};
enum WGPUDeviceLostReason : uint32_t {
  WGPUDeviceLostReason_Unknown = 1,
  WGPUDeviceLostReason_Destroyed = 2,
  WGPUDeviceLostReason_CallbackCancelled = 3,
  WGPUDeviceLostReason_FailedCreation = 4
};
enum WGPUWaitStatus : uint32_t {
  WGPUWaitStatus_Success = 1,
  WGPUWaitStatus_TimedOut = 2,
  WGPUWaitStatus_Error = 3
};
enum WGPUStatus : uint32_t { WGPUStatus_Success = 1, WGPUStatus_Error = 2 };
enum WGPUFeatureName : uint32_t {
  WGPUFeatureName_TimestampQuery = 0x3,
  WGPUFeatureName_ShaderF16 = 0xA,
  WGPUFeatureName_Subgroups = 0x11
};
enum WGPUWGSLLanguageFeatureName : uint32_t { WGPUWGSLLanguageFeatureName_Packed4x8IntegerDotProduct = 0x2 };

// Bitmasks are 64-bit.
constexpr WGPUFlags WGPUBufferUsage_MapRead = 0x1, WGPUBufferUsage_MapWrite = 0x2,
                    WGPUBufferUsage_CopySrc = 0x4, WGPUBufferUsage_CopyDst = 0x8,
                    WGPUBufferUsage_Uniform = 0x40, WGPUBufferUsage_Storage = 0x80;
constexpr WGPUFlags WGPUBufferUsage_QueryResolve = 0x200;
constexpr WGPUFlags WGPUMapMode_Read = 0x1, WGPUMapMode_Write = 0x2;
enum WGPUQueryType : uint32_t { WGPUQueryType_Timestamp = 2 };
constexpr uint64_t WGPU_WHOLE_SIZE = UINT64_MAX;
constexpr size_t WGPU_STRLEN = SIZE_MAX;

struct WGPUStringView {
  const char* data;
  size_t length;
};

struct WGPUChainedStruct {
  const WGPUChainedStruct* next;
  WGPUSType sType;
};

struct WGPUFuture {
  uint64_t id;
};

struct WGPUFutureWaitInfo {
  WGPUFuture future;
  WGPUBool completed;
};

struct WGPUInstanceCapabilities {
  WGPUChainedStruct* nextInChain;
  WGPUBool timedWaitAnyEnable;
  size_t timedWaitAnyMaxCount;
};

struct WGPUInstanceDescriptor {
  const WGPUChainedStruct* nextInChain;
  WGPUInstanceCapabilities capabilities;
};

struct WGPURequestAdapterOptions {
  const WGPUChainedStruct* nextInChain;
  WGPUFeatureLevel featureLevel;
  WGPUPowerPreference powerPreference;
  WGPUBool forceFallbackAdapter;
  WGPUBackendType backendType;
  WGPUSurfaceImpl* compatibleSurface;
};

using WGPURequestAdapterCallback = void (*)(WGPURequestAdapterStatus, WGPUAdapter, WGPUStringView, void*,
                                            void*);
using WGPURequestDeviceCallback = void (*)(WGPURequestDeviceStatus, WGPUDevice, WGPUStringView, void*, void*);
using WGPUDeviceLostCallback = void (*)(const WGPUDevice*, WGPUDeviceLostReason, WGPUStringView, void*,
                                        void*);
using WGPUUncapturedErrorCallback = void (*)(const WGPUDevice*, WGPUErrorType, WGPUStringView, void*, void*);
using WGPUBufferMapCallback = void (*)(WGPUMapAsyncStatus, WGPUStringView, void*, void*);
using WGPUPopErrorScopeCallback = void (*)(WGPUPopErrorScopeStatus, WGPUErrorType, WGPUStringView, void*,
                                           void*);

// The callback-info structs share one shape: {nextInChain, mode, callback, userdata1, userdata2}.
#define WGLLM_CALLBACK_INFO(Name, Callback) \
  struct Name {                             \
    const WGPUChainedStruct* nextInChain;   \
    WGPUCallbackMode mode;                  \
    Callback callback;                      \
    void* userdata1;                        \
    void* userdata2;                        \
  }
WGLLM_CALLBACK_INFO(WGPURequestAdapterCallbackInfo, WGPURequestAdapterCallback);
WGLLM_CALLBACK_INFO(WGPURequestDeviceCallbackInfo, WGPURequestDeviceCallback);
WGLLM_CALLBACK_INFO(WGPUDeviceLostCallbackInfo, WGPUDeviceLostCallback);
WGLLM_CALLBACK_INFO(WGPUBufferMapCallbackInfo, WGPUBufferMapCallback);
WGLLM_CALLBACK_INFO(WGPUPopErrorScopeCallbackInfo, WGPUPopErrorScopeCallback);
#undef WGLLM_CALLBACK_INFO

struct WGPUUncapturedErrorCallbackInfo {  // the one callback info without a mode
  const WGPUChainedStruct* nextInChain;
  WGPUUncapturedErrorCallback callback;
  void* userdata1;
  void* userdata2;
};

struct WGPUAdapterInfo {
  WGPUChainedStruct* nextInChain;
  WGPUStringView vendor;
  WGPUStringView architecture;
  WGPUStringView device;
  WGPUStringView description;
  WGPUBackendType backendType;
  WGPUAdapterType adapterType;
  uint32_t vendorID;
  uint32_t deviceID;
  uint32_t subgroupMinSize;
  uint32_t subgroupMaxSize;
};

struct WGPULimits {
  WGPUChainedStruct* nextInChain;
  uint32_t maxTextureDimension1D, maxTextureDimension2D, maxTextureDimension3D, maxTextureArrayLayers;
  uint32_t maxBindGroups, maxBindGroupsPlusVertexBuffers, maxBindingsPerBindGroup;
  uint32_t maxDynamicUniformBuffersPerPipelineLayout, maxDynamicStorageBuffersPerPipelineLayout;
  uint32_t maxSampledTexturesPerShaderStage, maxSamplersPerShaderStage, maxStorageBuffersPerShaderStage;
  uint32_t maxStorageTexturesPerShaderStage, maxUniformBuffersPerShaderStage;
  uint64_t maxUniformBufferBindingSize;
  uint64_t maxStorageBufferBindingSize;
  uint32_t minUniformBufferOffsetAlignment, minStorageBufferOffsetAlignment;
  uint32_t maxVertexBuffers;
  uint64_t maxBufferSize;
  uint32_t maxVertexAttributes, maxVertexBufferArrayStride, maxInterStageShaderVariables, maxColorAttachments;
  uint32_t maxColorAttachmentBytesPerSample, maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup;
  uint32_t maxComputeWorkgroupSizeX, maxComputeWorkgroupSizeY, maxComputeWorkgroupSizeZ;
  uint32_t maxComputeWorkgroupsPerDimension, maxImmediateSize;
};

struct WGPUSupportedFeatures {
  size_t featureCount;
  const WGPUFeatureName* features;
};

struct WGPUSupportedWGSLLanguageFeatures {
  size_t featureCount;
  const WGPUWGSLLanguageFeatureName* features;
};

struct WGPUQueueDescriptor {
  const WGPUChainedStruct* nextInChain;
  WGPUStringView label;
};

struct WGPUDeviceDescriptor {
  const WGPUChainedStruct* nextInChain;
  WGPUStringView label;
  size_t requiredFeatureCount;
  const WGPUFeatureName* requiredFeatures;
  const WGPULimits* requiredLimits;
  WGPUQueueDescriptor defaultQueue;
  WGPUDeviceLostCallbackInfo deviceLostCallbackInfo;
  WGPUUncapturedErrorCallbackInfo uncapturedErrorCallbackInfo;
};

struct WGPUDawnTogglesDescriptor {  // chained; not in the wrapper's DWARF: laid out from dawn.json
  WGPUChainedStruct chain;
  size_t enabledToggleCount;
  const char* const* enabledToggles;
  size_t disabledToggleCount;
  const char* const* disabledToggles;
};

// Chained to the device descriptor; laid out from dawn.json. Dawn hands the blob cache's entries to these.
using WGPUDawnLoadCacheDataFunction = size_t (*)(const void* key, size_t keySize, void* value,
                                                 size_t valueSize, void* userdata);
using WGPUDawnStoreCacheDataFunction = void (*)(const void* key, size_t keySize, const void* value,
                                                size_t valueSize, void* userdata);
struct WGPUDawnCacheDeviceDescriptor {
  WGPUChainedStruct chain;
  WGPUStringView isolationKey;
  WGPUDawnLoadCacheDataFunction loadDataFunction;
  WGPUDawnStoreCacheDataFunction storeDataFunction;
  void* functionUserdata;
};

struct WGPUBufferDescriptor {
  const WGPUChainedStruct* nextInChain;
  WGPUStringView label;
  WGPUFlags usage;
  uint64_t size;
  WGPUBool mappedAtCreation;
};

struct WGPUShaderSourceWGSL {  // chained; laid out from dawn.json
  WGPUChainedStruct chain;
  WGPUStringView code;
};

struct WGPUShaderModuleDescriptor {
  const WGPUChainedStruct* nextInChain;
  WGPUStringView label;
};

struct WGPUConstantEntry {
  const WGPUChainedStruct* nextInChain;
  WGPUStringView key;
  double value;
};

struct WGPUComputeState {
  const WGPUChainedStruct* nextInChain;
  WGPUShaderModule module;
  WGPUStringView entryPoint;
  size_t constantCount;
  const WGPUConstantEntry* constants;
};

struct WGPUComputePipelineDescriptor {
  const WGPUChainedStruct* nextInChain;
  WGPUStringView label;
  WGPUPipelineLayoutImpl* layout;
  WGPUComputeState compute;
};

struct WGPUBindGroupEntry {
  const WGPUChainedStruct* nextInChain;
  uint32_t binding;
  WGPUBuffer buffer;
  uint64_t offset;
  uint64_t size;
  WGPUSamplerImpl* sampler;
  WGPUTextureViewImpl* textureView;
};

struct WGPUBindGroupDescriptor {
  const WGPUChainedStruct* nextInChain;
  WGPUStringView label;
  WGPUBindGroupLayout layout;
  size_t entryCount;
  const WGPUBindGroupEntry* entries;
};

struct WGPUCommandEncoderDescriptor {
  const WGPUChainedStruct* nextInChain;
  WGPUStringView label;
};

struct WGPUPassTimestampWrites {
  const WGPUChainedStruct* nextInChain;
  WGPUQuerySet querySet;
  uint32_t beginningOfPassWriteIndex;
  uint32_t endOfPassWriteIndex;
};

struct WGPUComputePassDescriptor {
  const WGPUChainedStruct* nextInChain;
  WGPUStringView label;
  const WGPUPassTimestampWrites* timestampWrites;
};

struct WGPUQuerySetDescriptor {
  const WGPUChainedStruct* nextInChain;
  WGPUStringView label;
  WGPUQueryType type;
  uint32_t count;
};

struct WGPUCommandBufferDescriptor {
  const WGPUChainedStruct* nextInChain;
  WGPUStringView label;
};

WGPUInstance wgpuCreateInstance(const WGPUInstanceDescriptor* descriptor);
void wgpuInstanceRelease(WGPUInstance);
WGPUFuture wgpuInstanceRequestAdapter(WGPUInstance, const WGPURequestAdapterOptions*,
                                      WGPURequestAdapterCallbackInfo);
WGPUWaitStatus wgpuInstanceWaitAny(WGPUInstance, size_t futureCount, WGPUFutureWaitInfo* futures,
                                   uint64_t timeoutNS);
void wgpuInstanceProcessEvents(WGPUInstance);
WGPUStatus wgpuInstanceGetWGSLLanguageFeatures(WGPUInstance, WGPUSupportedWGSLLanguageFeatures*);
void wgpuSupportedWGSLLanguageFeaturesFreeMembers(WGPUSupportedWGSLLanguageFeatures);

WGPUStatus wgpuAdapterGetInfo(WGPUAdapter, WGPUAdapterInfo*);
void wgpuAdapterInfoFreeMembers(WGPUAdapterInfo);
WGPUStatus wgpuAdapterGetLimits(WGPUAdapter, WGPULimits*);
void wgpuAdapterGetFeatures(WGPUAdapter, WGPUSupportedFeatures*);
void wgpuSupportedFeaturesFreeMembers(WGPUSupportedFeatures);
WGPUBool wgpuAdapterHasFeature(WGPUAdapter, WGPUFeatureName);
WGPUFuture wgpuAdapterRequestDevice(WGPUAdapter, const WGPUDeviceDescriptor*, WGPURequestDeviceCallbackInfo);
void wgpuAdapterRelease(WGPUAdapter);
void wgpuAdapterAddRef(WGPUAdapter);

WGPUQueue wgpuDeviceGetQueue(WGPUDevice);
WGPUBuffer wgpuDeviceCreateBuffer(WGPUDevice, const WGPUBufferDescriptor*);
WGPUShaderModule wgpuDeviceCreateShaderModule(WGPUDevice, const WGPUShaderModuleDescriptor*);
WGPUComputePipeline wgpuDeviceCreateComputePipeline(WGPUDevice, const WGPUComputePipelineDescriptor*);
WGPUBindGroup wgpuDeviceCreateBindGroup(WGPUDevice, const WGPUBindGroupDescriptor*);
WGPUCommandEncoder wgpuDeviceCreateCommandEncoder(WGPUDevice, const WGPUCommandEncoderDescriptor*);
void wgpuDevicePushErrorScope(WGPUDevice, WGPUErrorFilter);
WGPUFuture wgpuDevicePopErrorScope(WGPUDevice, WGPUPopErrorScopeCallbackInfo);
void wgpuDeviceDestroy(WGPUDevice);
void wgpuDeviceRelease(WGPUDevice);

void wgpuQueueSubmit(WGPUQueue, size_t commandCount, const WGPUCommandBuffer* commands);
void wgpuQueueWriteBuffer(WGPUQueue, WGPUBuffer, uint64_t bufferOffset, const void* data, size_t size);
void wgpuQueueRelease(WGPUQueue);

WGPUFuture wgpuBufferMapAsync(WGPUBuffer, WGPUFlags mode, size_t offset, size_t size,
                              WGPUBufferMapCallbackInfo);
const void* wgpuBufferGetConstMappedRange(WGPUBuffer, size_t offset, size_t size);
void* wgpuBufferGetMappedRange(WGPUBuffer, size_t offset, size_t size);
void wgpuBufferUnmap(WGPUBuffer);
void wgpuBufferDestroy(WGPUBuffer);
void wgpuBufferRelease(WGPUBuffer);

void wgpuShaderModuleRelease(WGPUShaderModule);
WGPUBindGroupLayout wgpuComputePipelineGetBindGroupLayout(WGPUComputePipeline, uint32_t groupIndex);
void wgpuComputePipelineRelease(WGPUComputePipeline);
void wgpuBindGroupLayoutRelease(WGPUBindGroupLayout);
void wgpuBindGroupRelease(WGPUBindGroup);

WGPUComputePassEncoder wgpuCommandEncoderBeginComputePass(WGPUCommandEncoder,
                                                          const WGPUComputePassDescriptor*);
void wgpuCommandEncoderCopyBufferToBuffer(WGPUCommandEncoder, WGPUBuffer source, uint64_t sourceOffset,
                                          WGPUBuffer destination, uint64_t destinationOffset, uint64_t size);
WGPUCommandBuffer wgpuCommandEncoderFinish(WGPUCommandEncoder, const WGPUCommandBufferDescriptor*);
void wgpuCommandEncoderRelease(WGPUCommandEncoder);
void wgpuComputePassEncoderSetPipeline(WGPUComputePassEncoder, WGPUComputePipeline);
void wgpuComputePassEncoderSetBindGroup(WGPUComputePassEncoder, uint32_t groupIndex, WGPUBindGroup,
                                        size_t dynamicOffsetCount, const uint32_t* dynamicOffsets);
void wgpuComputePassEncoderDispatchWorkgroups(WGPUComputePassEncoder, uint32_t x, uint32_t y, uint32_t z);
void wgpuComputePassEncoderEnd(WGPUComputePassEncoder);
void wgpuComputePassEncoderRelease(WGPUComputePassEncoder);
void wgpuCommandBufferRelease(WGPUCommandBuffer);
WGPUQuerySet wgpuDeviceCreateQuerySet(WGPUDevice, const WGPUQuerySetDescriptor*);
void wgpuCommandEncoderResolveQuerySet(WGPUCommandEncoder, WGPUQuerySet, uint32_t firstQuery,
                                       uint32_t queryCount, WGPUBuffer destination,
                                       uint64_t destinationOffset);
void wgpuQuerySetDestroy(WGPUQuerySet);
void wgpuQuerySetRelease(WGPUQuerySet);

}  // extern "C"

// The C API has no adapter list; Dawn's native C++ API has one (DAWN.md). Declared here by name: the
// library is built against libstdc++ (its std:: symbols are std::__cxx11) and the system's operator new, so
// a std::vector returned by it is ours to destroy. Layouts read from its code: dawn::native::Instance and
// dawn::native::Adapter each hold one pointer (InstanceBase* == WGPUInstance, AdapterBase* == WGPUAdapter);
// the constructors and destructors add and drop references.
namespace dawn::native {
class AdapterBase;
class InstanceBase;
class Adapter {
 public:
  Adapter(const Adapter&);
  ~Adapter();
  WGPUAdapter Get() const;  // no reference added

 private:
  AdapterBase* impl_;
};
class Instance {
 public:
  explicit Instance(InstanceBase* impl);
  ~Instance();
  std::vector<Adapter> EnumerateAdapters(const WGPURequestAdapterOptions* options) const;

 private:
  InstanceBase* impl_;
};
static_assert(sizeof(Adapter) == 8 && sizeof(Instance) == 8);
}  // namespace dawn::native

// Layouts from the library's DWARF (dawn-abi-layouts.txt). A mismatch is a build error.
#define WGLLM_ABI(type, size) static_assert(sizeof(type) == (size), #type " size differs from Dawn's")
#define WGLLM_AT(type, member, off) \
  static_assert(offsetof(type, member) == (off), #type "." #member " offset")
WGLLM_ABI(WGPUStringView, 16);
WGLLM_ABI(WGPUChainedStruct, 16);
WGLLM_AT(WGPUChainedStruct, sType, 8);
WGLLM_ABI(WGPUFuture, 8);
WGLLM_ABI(WGPUFutureWaitInfo, 16);
WGLLM_AT(WGPUFutureWaitInfo, completed, 8);
WGLLM_ABI(WGPUInstanceCapabilities, 24);
WGLLM_AT(WGPUInstanceCapabilities, timedWaitAnyEnable, 8);
WGLLM_AT(WGPUInstanceCapabilities, timedWaitAnyMaxCount, 16);
WGLLM_ABI(WGPUInstanceDescriptor, 32);
WGLLM_AT(WGPUInstanceDescriptor, capabilities, 8);
WGLLM_ABI(WGPURequestAdapterOptions, 32);
WGLLM_AT(WGPURequestAdapterOptions, featureLevel, 8);
WGLLM_AT(WGPURequestAdapterOptions, powerPreference, 12);
WGLLM_AT(WGPURequestAdapterOptions, forceFallbackAdapter, 16);
WGLLM_AT(WGPURequestAdapterOptions, backendType, 20);
WGLLM_AT(WGPURequestAdapterOptions, compatibleSurface, 24);
WGLLM_ABI(WGPURequestAdapterCallbackInfo, 40);
WGLLM_AT(WGPURequestAdapterCallbackInfo, mode, 8);
WGLLM_AT(WGPURequestAdapterCallbackInfo, callback, 16);
WGLLM_AT(WGPURequestAdapterCallbackInfo, userdata1, 24);
WGLLM_AT(WGPURequestAdapterCallbackInfo, userdata2, 32);
WGLLM_ABI(WGPURequestDeviceCallbackInfo, 40);
WGLLM_ABI(WGPUDeviceLostCallbackInfo, 40);
WGLLM_ABI(WGPUBufferMapCallbackInfo, 40);
WGLLM_ABI(WGPUPopErrorScopeCallbackInfo, 40);
WGLLM_ABI(WGPUUncapturedErrorCallbackInfo, 32);
WGLLM_AT(WGPUUncapturedErrorCallbackInfo, callback, 8);
WGLLM_AT(WGPUUncapturedErrorCallbackInfo, userdata2, 24);
WGLLM_ABI(WGPUAdapterInfo, 96);
WGLLM_AT(WGPUAdapterInfo, vendor, 8);
WGLLM_AT(WGPUAdapterInfo, architecture, 24);
WGLLM_AT(WGPUAdapterInfo, device, 40);
WGLLM_AT(WGPUAdapterInfo, description, 56);
WGLLM_AT(WGPUAdapterInfo, backendType, 72);
WGLLM_AT(WGPUAdapterInfo, adapterType, 76);
WGLLM_AT(WGPUAdapterInfo, vendorID, 80);
WGLLM_AT(WGPUAdapterInfo, deviceID, 84);
WGLLM_AT(WGPUAdapterInfo, subgroupMinSize, 88);
WGLLM_AT(WGPUAdapterInfo, subgroupMaxSize, 92);
WGLLM_ABI(WGPULimits, 152);
WGLLM_AT(WGPULimits, maxBindGroups, 24);
WGLLM_AT(WGPULimits, maxStorageBuffersPerShaderStage, 52);
WGLLM_AT(WGPULimits, maxUniformBufferBindingSize, 64);
WGLLM_AT(WGPULimits, maxStorageBufferBindingSize, 72);
WGLLM_AT(WGPULimits, minUniformBufferOffsetAlignment, 80);
WGLLM_AT(WGPULimits, minStorageBufferOffsetAlignment, 84);
WGLLM_AT(WGPULimits, maxBufferSize, 96);
WGLLM_AT(WGPULimits, maxComputeWorkgroupStorageSize, 124);
WGLLM_AT(WGPULimits, maxComputeInvocationsPerWorkgroup, 128);
WGLLM_AT(WGPULimits, maxComputeWorkgroupSizeX, 132);
WGLLM_AT(WGPULimits, maxComputeWorkgroupsPerDimension, 144);
WGLLM_AT(WGPULimits, maxImmediateSize, 148);
WGLLM_ABI(WGPUSupportedFeatures, 16);
WGLLM_ABI(WGPUSupportedWGSLLanguageFeatures, 16);
WGLLM_ABI(WGPUQueueDescriptor, 24);
WGLLM_ABI(WGPUDeviceDescriptor, 144);
WGLLM_AT(WGPUDeviceDescriptor, label, 8);
WGLLM_AT(WGPUDeviceDescriptor, requiredFeatureCount, 24);
WGLLM_AT(WGPUDeviceDescriptor, requiredFeatures, 32);
WGLLM_AT(WGPUDeviceDescriptor, requiredLimits, 40);
WGLLM_AT(WGPUDeviceDescriptor, defaultQueue, 48);
WGLLM_AT(WGPUDeviceDescriptor, deviceLostCallbackInfo, 72);
WGLLM_AT(WGPUDeviceDescriptor, uncapturedErrorCallbackInfo, 112);
WGLLM_ABI(WGPUBufferDescriptor, 48);
WGLLM_AT(WGPUBufferDescriptor, usage, 24);
WGLLM_AT(WGPUBufferDescriptor, size, 32);
WGLLM_AT(WGPUBufferDescriptor, mappedAtCreation, 40);
WGLLM_ABI(WGPUShaderModuleDescriptor, 24);
WGLLM_ABI(WGPUConstantEntry, 32);
WGLLM_AT(WGPUConstantEntry, value, 24);
WGLLM_ABI(WGPUComputeState, 48);
WGLLM_AT(WGPUComputeState, module, 8);
WGLLM_AT(WGPUComputeState, entryPoint, 16);
WGLLM_AT(WGPUComputeState, constantCount, 32);
WGLLM_AT(WGPUComputeState, constants, 40);
WGLLM_ABI(WGPUComputePipelineDescriptor, 80);
WGLLM_AT(WGPUComputePipelineDescriptor, layout, 24);
WGLLM_AT(WGPUComputePipelineDescriptor, compute, 32);
WGLLM_ABI(WGPUBindGroupEntry, 56);
WGLLM_AT(WGPUBindGroupEntry, binding, 8);
WGLLM_AT(WGPUBindGroupEntry, buffer, 16);
WGLLM_AT(WGPUBindGroupEntry, offset, 24);
WGLLM_AT(WGPUBindGroupEntry, size, 32);
WGLLM_AT(WGPUBindGroupEntry, sampler, 40);
WGLLM_AT(WGPUBindGroupEntry, textureView, 48);
WGLLM_ABI(WGPUBindGroupDescriptor, 48);
WGLLM_AT(WGPUBindGroupDescriptor, layout, 24);
WGLLM_AT(WGPUBindGroupDescriptor, entryCount, 32);
WGLLM_AT(WGPUBindGroupDescriptor, entries, 40);
WGLLM_ABI(WGPUCommandEncoderDescriptor, 24);
WGLLM_ABI(WGPUPassTimestampWrites, 24);
WGLLM_ABI(WGPUComputePassDescriptor, 32);
WGLLM_AT(WGPUComputePassDescriptor, timestampWrites, 24);
WGLLM_ABI(WGPUCommandBufferDescriptor, 24);
WGLLM_ABI(WGPUQuerySetDescriptor, 32);
WGLLM_AT(WGPUQuerySetDescriptor, type, 24);
WGLLM_AT(WGPUQuerySetDescriptor, count, 28);
// Chained structs absent from the DWARF, laid out by the C rules from dawn.json's member order.
WGLLM_ABI(WGPUShaderSourceWGSL, 32);
WGLLM_AT(WGPUShaderSourceWGSL, code, 16);
WGLLM_ABI(WGPUDawnTogglesDescriptor, 48);
WGLLM_ABI(WGPUDawnCacheDeviceDescriptor, 56);
WGLLM_AT(WGPUDawnCacheDeviceDescriptor, loadDataFunction, 32);
#undef WGLLM_ABI
#undef WGLLM_AT
