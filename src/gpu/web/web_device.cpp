// gpu::Device in the browser: every call goes to the JS glue over navigator.gpu (web/glue/webgpu.js, an
// Emscripten --js-library), which keeps the WebGPU objects in tables indexed by the ids handed out here.
// The page's JS creates the GPUDevice (adapter and device requests are promises) before the engine starts.
// Nothing here waits: a read-back's ticket lands when the glue's mapAsync promise resolves, and the host
// (JS) awaits that before asking for the bytes.
#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.hpp"
#include "gpu/device.hpp"
#include "kernels/kernel_sources.hpp"

extern "C" {
// Limits by index, in the order of gpu::Limits' fields.
double wg_limit(int which);
int wg_has_feature(const char* name);
// Adapter info field (0 vendor, 1 architecture, 2 device, 3 description) into `out`; returns its length.
int wg_info(int field, char* out, int capacity);
int wg_subgroup_size(int max);
void wg_buffer(uint32_t id, double size, uint32_t usage, const char* label);
void wg_write(uint32_t id, double offset, const uint8_t* data, uint32_t size);
void wg_kernel(uint32_t id, const char* label, const char* code);
void wg_bind(uint32_t id, uint32_t kernel, uint32_t count, const double* entries);  // [buffer, offset, size]
void wg_dispatch(uint32_t kernel, uint32_t group, uint32_t x, uint32_t y, uint32_t z);
void wg_copy(uint32_t src, double src_offset, uint32_t dst, double dst_offset, double size);
void wg_read(uint32_t ticket, uint32_t src, double offset, double size);
void wg_submit();
int wg_ticket_state(uint32_t ticket);  // 0 in flight, 1 landed, 2 failed
// Copies a landed ticket's bytes into `out` and forgets them; returns the number copied.
uint32_t wg_ticket_take(uint32_t ticket, uint8_t* out, uint32_t capacity);
// The first WebGPU error since the last call (validation, out of memory, device lost); returns its length.
int wg_error(char* out, int capacity);
void wg_lose();
}

namespace wgllm::gpu {
namespace {

std::string info_field(int field) {
  char buf[512];
  const int n = wg_info(field, buf, sizeof buf);
  return std::string(buf, static_cast<size_t>(std::clamp(n, 0, static_cast<int>(sizeof buf))));
}

AdapterReport describe() {
  AdapterReport r;
  r.info.vendor = info_field(0);
  r.info.architecture = info_field(1);
  r.info.device = info_field(2);
  r.info.description = info_field(3);
  r.info.backend = "browser";
  r.info.adapter_type = "unknown";  // WebGPU does not say
  r.info.subgroup_min_size = static_cast<uint32_t>(wg_subgroup_size(0));
  r.info.subgroup_max_size = static_cast<uint32_t>(wg_subgroup_size(1));
  Limits& l = r.limits;
  l.max_storage_buffer_binding_size = static_cast<uint64_t>(wg_limit(0));
  l.max_buffer_size = static_cast<uint64_t>(wg_limit(1));
  l.max_compute_workgroup_storage_size = static_cast<uint32_t>(wg_limit(2));
  l.max_compute_invocations_per_workgroup = static_cast<uint32_t>(wg_limit(3));
  l.max_compute_workgroup_size_x = static_cast<uint32_t>(wg_limit(4));
  l.max_compute_workgroups_per_dimension = static_cast<uint32_t>(wg_limit(5));
  l.max_storage_buffers_per_shader_stage = static_cast<uint32_t>(wg_limit(6));
  l.min_storage_buffer_offset_alignment = static_cast<uint32_t>(wg_limit(7));
  l.min_uniform_buffer_offset_alignment = static_cast<uint32_t>(wg_limit(8));
  Features& f = r.features;
  for (const char* name : {"subgroups", "shader-f16", "timestamp-query"})
    if (wg_has_feature(name)) f.names.push_back(name);
  f.subgroups = wg_has_feature("subgroups");
  f.shader_f16 = wg_has_feature("shader-f16");
  f.timestamp_query = wg_has_feature("timestamp-query");
  f.dot4_i8_packed = wg_has_feature("packed_4x8_integer_dot_product");
  return r;
}

class WebDevice final : public Device {
 public:
  WebDevice() : report_(describe()) {}

  const AdapterInfo& info() const override { return report_.info; }
  const Limits& limits() const override { return report_.limits; }
  const Features& features() const override { return report_.features; }

  Buffer buffer(uint64_t size, uint32_t usage, std::string_view label) override {
    check();
    // Storage buffers are sized up to 4 bytes (WGSL arrays of u32/f32) and never zero-sized.
    const uint64_t padded = std::max<uint64_t>(4, (size + 3) & ~uint64_t(3));
    if (padded > report_.limits.max_buffer_size)
      fail_runtime("GPU buffer '" + std::string(label) + "' needs " + std::to_string(padded) +
                   " bytes; the adapter's maxBufferSize is " +
                   std::to_string(report_.limits.max_buffer_size));
    const uint32_t id = ++buffers_;
    wg_buffer(id, static_cast<double>(padded), usage, std::string(label).c_str());
    sizes_.push_back(padded);
    allocated_ += padded;
    return Buffer{id, padded};
  }

  void write(Buffer dst, uint64_t offset, std::span<const uint8_t> bytes) override {
    check();
    if (dst.id == 0 || dst.id > buffers_ || offset + bytes.size() > sizes_[dst.id - 1] || offset % 4)
      fail_runtime("write of " + std::to_string(bytes.size()) + " bytes at " + std::to_string(offset) +
                   " outside or misaligned in buffer " + std::to_string(dst.id));
    const size_t whole = bytes.size() & ~size_t(3);
    if (whole) wg_write(dst.id, static_cast<double>(offset), bytes.data(), static_cast<uint32_t>(whole));
    if (whole != bytes.size()) {  // WebGPU writes whole 4-byte words
      uint8_t tail[4] = {};
      std::memcpy(tail, bytes.data() + whole, bytes.size() - whole);
      wg_write(dst.id, static_cast<double>(offset + whole), tail, 4);
    }
    stats_.bytes_written += bytes.size();
  }

  Kernel kernel(std::string_view name, const KernelDefines& defines) override {
    check();
    std::string key(name);
    for (const auto& [k, v] : defines) key += "|" + k + "=" + v;
    if (auto it = kernel_cache_.find(key); it != kernel_cache_.end()) return Kernel{it->second};
    const std::string code = kernels::specialise(name, kernels::source(name), defines);
    const uint32_t id = ++kernels_;
    wg_kernel(id, std::string(name).c_str(), code.c_str());
    kernel_cache_.emplace(std::move(key), id);
    return Kernel{id};
  }

  BindGroup bind(Kernel kernel, std::span<const BufferSlice> slices) override {
    check();
    std::vector<double> entries;
    for (const BufferSlice& s : slices) {
      entries.push_back(s.buffer.id);
      entries.push_back(static_cast<double>(s.offset));
      entries.push_back(static_cast<double>(s.size));  // 0: to the end
    }
    const uint32_t id = ++groups_;
    wg_bind(id, kernel.id, static_cast<uint32_t>(slices.size()), entries.data());
    return BindGroup{id};
  }

  void dispatch(Kernel kernel, BindGroup group, uint32_t x, uint32_t y, uint32_t z) override {
    check();
    wg_dispatch(kernel.id, group.id, x, y, z);
    ++stats_.dispatches;
  }

  void copy(Buffer src, uint64_t src_offset, Buffer dst, uint64_t dst_offset, uint64_t size) override {
    check();
    wg_copy(src.id, static_cast<double>(src_offset), dst.id, static_cast<double>(dst_offset),
            static_cast<double>(size));
  }

  ReadTicket read(Buffer src, uint64_t offset, uint64_t size) override {
    check();
    uint32_t id = 0;  // tickets are recycled once taken
    for (uint32_t i = 0; i < tickets_.size() && !id; ++i)
      if (tickets_[i] == TicketState::Free) id = i + 1;
    if (!id) {
      tickets_.push_back(TicketState::Free);
      id = static_cast<uint32_t>(tickets_.size());
    }
    tickets_[id - 1] = TicketState::Recorded;
    sizes_of_tickets_[id] = size;
    wg_read(id, src.id, static_cast<double>(offset), static_cast<double>(size));
    recorded_.push_back(id);
    stats_.bytes_read_back += size;
    return ReadTicket{id};
  }

  void submit() override {
    check();
    wg_submit();
    for (uint32_t id : recorded_) tickets_[id - 1] = TicketState::InFlight;
    recorded_.clear();
    ++stats_.submits;
  }

  bool poll(ReadTicket ticket) override {
    check();
    const TicketState s = state(ticket);
    if (s == TicketState::Recorded) fail_runtime("read-back polled before submit()");
    return wg_ticket_state(ticket.id) != 0;
  }

  std::vector<uint8_t> wait(ReadTicket ticket) override {
    if (!poll(ticket))
      fail_runtime("read-back " + std::to_string(ticket.id) +
                   " has not landed: the browser cannot block, so JS awaits the ticket before taking it");
    std::vector<uint8_t> bytes(sizes_of_tickets_[ticket.id]);
    const int landed = wg_ticket_state(ticket.id);
    const uint32_t n = wg_ticket_take(ticket.id, bytes.data(), static_cast<uint32_t>(bytes.size()));
    tickets_[ticket.id - 1] = TicketState::Free;
    if (landed != 1 || n != bytes.size()) {
      check();
      fail_runtime("read-back " + std::to_string(ticket.id) + " failed");
    }
    return bytes;
  }

  bool set_profiling(bool) override { return false; }  // browsers quantize timestamps: no kernel profiles
  std::vector<KernelTime> profile() override { return {}; }

  void simulate_loss() override { wg_lose(); }

  const DeviceStats& stats() const override { return stats_; }
  uint64_t allocated_bytes() const override { return allocated_; }

 private:
  enum class TicketState { Free, Recorded, InFlight };

  TicketState state(ReadTicket t) const {
    if (t.id == 0 || t.id > tickets_.size()) fail_runtime("unknown read-back ticket " + std::to_string(t.id));
    return tickets_[t.id - 1];
  }

  // WebGPU reports errors asynchronously; the glue keeps the first, and the next call here raises it.
  void check() {
    char buf[1024];
    const int n = wg_error(buf, sizeof buf);
    if (n > 0) fail_runtime(std::string(buf, static_cast<size_t>(std::min<int>(n, sizeof buf))));
  }

  AdapterReport report_;
  uint32_t buffers_ = 0, kernels_ = 0, groups_ = 0;
  std::vector<uint64_t> sizes_;  // [buffers_]
  std::unordered_map<std::string, uint32_t> kernel_cache_;
  std::vector<TicketState> tickets_;
  std::unordered_map<uint32_t, uint64_t> sizes_of_tickets_;
  std::vector<uint32_t> recorded_;
  DeviceStats stats_;
  uint64_t allocated_ = 0;
};

}  // namespace

std::unique_ptr<Device> open_device(const DeviceOptions&) {
  return std::make_unique<WebDevice>();
}

std::vector<AdapterReport> list_adapters() {
  return {describe()};
}

}  // namespace wgllm::gpu
