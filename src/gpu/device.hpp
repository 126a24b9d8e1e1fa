// The narrow GPU interface everything above gpu/ sees (ARCHITECTURE.md): buffers, kernels, bindings,
// recorded dispatches, one submit, asynchronous read-backs. Natively it is Dawn's WebGPU C API
// (gpu/dawn/); in the browser, JS glue over navigator.gpu. Nothing here blocks except wait().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/kernel_sources.hpp"

namespace wgllm::gpu {

enum class Backend { Default, Vulkan, OpenGL };  // OpenGL means OpenGL ES through EGL

struct DeviceOptions {
  Backend backend = Backend::Default;
  bool allow_software = true;  // accept a CPU (fallback) adapter when no GPU is found
  // >= 0: that entry of list_adapters() (GPUs first), e.g. one GPU per process; -1: the best one.
  int adapter = -1;
  // Compiled pipelines are kept here across runs; empty: PipelineCache::default_dir() (~/.cache/wgllm),
  // "off": no cache.
  std::string pipeline_cache_dir;
};

struct AdapterInfo {
  std::string vendor, architecture, device, description;
  std::string backend;       // "vulkan", "opengles", ...
  std::string adapter_type;  // "discrete GPU", "integrated GPU", "CPU", "unknown"
  uint32_t vendor_id = 0, device_id = 0;
  uint32_t subgroup_min_size = 0, subgroup_max_size = 0;
};

struct Limits {
  uint64_t max_storage_buffer_binding_size = 0;
  uint64_t max_buffer_size = 0;
  uint32_t max_compute_workgroup_storage_size = 0;
  uint32_t max_compute_invocations_per_workgroup = 0;
  uint32_t max_compute_workgroup_size_x = 0;
  uint32_t max_compute_workgroups_per_dimension = 0;
  uint32_t max_storage_buffers_per_shader_stage = 0;
  uint32_t min_storage_buffer_offset_alignment = 0;
  uint32_t min_uniform_buffer_offset_alignment = 0;
};

struct Features {
  bool subgroups = false;
  bool shader_f16 = false;
  bool timestamp_query = false;
  bool dot4_i8_packed = false;     // WGSL language feature packed_4x8_integer_dot_product
  std::vector<std::string> names;  // every feature the adapter reports, for `wgllm devices`
};

enum BufferUsage : uint32_t {
  kStorage = 1,  // read/write from kernels, copy source and destination
  kUniform = 2,  // small per-step parameters
};

struct Buffer {
  uint32_t id = 0;
  uint64_t size = 0;
  explicit operator bool() const { return id != 0; }
};

struct BufferSlice {
  Buffer buffer;
  uint64_t offset = 0;
  uint64_t size = 0;  // 0 = to the end of the buffer
};

struct Kernel {
  uint32_t id = 0;
};

struct BindGroup {
  uint32_t id = 0;
};

struct ReadTicket {
  uint32_t id = 0;
};

using kernels::KernelDefines;

struct DeviceStats {
  uint64_t dispatches = 0;
  uint64_t submits = 0;
  uint64_t bytes_read_back = 0;
  uint64_t bytes_written = 0;
  uint64_t pipeline_cache_hits = 0;    // entries Dawn found on disk instead of compiling
  uint64_t pipeline_cache_stores = 0;  // entries written for the next start
};

class Device {
 public:
  virtual ~Device() = default;

  virtual const AdapterInfo& info() const = 0;
  virtual const Limits& limits() const = 0;
  virtual const Features& features() const = 0;

  // Zero-initialised. Throws Error naming the label when the device refuses (e.g. out of memory).
  virtual Buffer buffer(uint64_t size, uint32_t usage, std::string_view label) = 0;
  virtual void write(Buffer dst, uint64_t offset, std::span<const uint8_t> bytes) = 0;

  // The embedded kernel `name` (src/kernels/NAME.wgsl) specialised by `defines`; cached. A WGSL error
  // throws Error with the kernel name, the line and the compiler's message.
  virtual Kernel kernel(std::string_view name, const KernelDefines& defines = {}) = 0;
  // Buffers in binding order (@group(0) @binding(i) = slices[i]). Built once, reused every step.
  virtual BindGroup bind(Kernel kernel, std::span<const BufferSlice> slices) = 0;

  // Recorded into the current command buffer; runs at the next submit().
  virtual void dispatch(Kernel kernel, BindGroup group, uint32_t x, uint32_t y = 1, uint32_t z = 1) = 0;
  virtual void copy(Buffer src, uint64_t src_offset, Buffer dst, uint64_t dst_offset, uint64_t size) = 0;
  // Recorded: copies `size` bytes out once the work before it has run. Complete after the next submit().
  virtual ReadTicket read(Buffer src, uint64_t offset, uint64_t size) = 0;
  // Ends the current command buffer and hands it to the GPU. Never waits.
  virtual void submit() = 0;

  // Non-blocking: true once the ticket's bytes have landed (processes pending callbacks).
  virtual bool poll(ReadTicket ticket) = 0;
  // Blocks until the ticket lands (native hosts only), then returns its bytes and frees the ticket.
  virtual std::vector<uint8_t> wait(ReadTicket ticket) = 0;

  // Profiling for breakdowns (`wgllm bench`): while on, every dispatch runs in a compute pass of its own
  // with GPU timestamps at its boundaries (slower, so not for tok/s). Returns false when the adapter has no
  // timestamp queries. profile() waits for the last submit and returns its dispatches' GPU times.
  virtual bool set_profiling(bool on) = 0;
  struct KernelTime {
    std::string label;  // kernel name, and the weight type for matvec or "merge" for attention's merge
    double seconds;
  };
  virtual std::vector<KernelTime> profile() = 0;

  // Destroys the underlying device as a driver reset or GPU removal would. Every later call throws
  // Error(Runtime) saying the device was lost. For fault tests and for the server's recovery path.
  virtual void simulate_loss() = 0;

  virtual const DeviceStats& stats() const = 0;
  virtual uint64_t allocated_bytes() const = 0;  // all live buffers
};

// Opens the best adapter: a real GPU when one is present, else the software Vulkan driver.
std::unique_ptr<Device> open_device(const DeviceOptions& options = {});

// Every adapter the WebGPU implementation offers, numbered as DeviceOptions::adapter counts them.
struct AdapterReport {
  AdapterInfo info;
  Limits limits;
  Features features;
};
std::vector<AdapterReport> list_adapters();

}  // namespace wgllm::gpu
