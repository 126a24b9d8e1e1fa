#include "runtime/bandwidth.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace wgllm::runtime {

double copy_bandwidth_gbps(gpu::Device& device, uint64_t bytes, int reps) {
  bytes = std::min(bytes, device.limits().max_storage_buffer_binding_size) / 16 * 16;
  const uint64_t n = bytes / 16;
  gpu::Buffer src = device.buffer(bytes, gpu::kStorage, "bandwidth src");
  gpu::Buffer dst = device.buffer(bytes, gpu::kStorage, "bandwidth dst");
  gpu::Kernel k = device.kernel("copy", {{"N", std::to_string(n) + "u"}});
  gpu::BufferSlice slices[] = {{src}, {dst}};
  gpu::BindGroup g = device.bind(k, slices);
  const uint64_t groups = (n + 255) / 256;
  const uint32_t max_x = device.limits().max_compute_workgroups_per_dimension;
  const uint32_t x = static_cast<uint32_t>(std::min<uint64_t>(groups, max_x));
  const uint32_t y = static_cast<uint32_t>((groups + x - 1) / x);
  auto run_once = [&] {
    auto t0 = std::chrono::steady_clock::now();
    device.dispatch(k, g, x, y);
    gpu::ReadTicket t = device.read(dst, 0, 16);
    device.submit();
    device.wait(t);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int i = 0; i < 3; ++i) run_once();  // warm the clocks up
  std::vector<double> gbps;
  for (int i = 0; i < std::max(1, reps); ++i) gbps.push_back(2.0 * bytes / run_once() / 1e9);
  std::sort(gbps.begin(), gbps.end());
  return gbps[gbps.size() / 2];
}

}  // namespace wgllm::runtime
