// The Dawn device: opening an adapter, buffers, kernels, dispatch and read-back, and clear errors.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.hpp"
#include "gpu/device.hpp"
#include "support/test_support.hpp"

namespace wgllm::gpu {
namespace {

Device& device() {
  static std::unique_ptr<Device> d = open_device();
  return *d;
}

std::vector<uint8_t> bytes_of(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<float> floats_of(const std::vector<uint8_t>& b) {
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

TEST(Device, ReportsAdapterLimitsAndFeatures) {
  Device& d = device();
  EXPECT_FALSE(d.info().backend.empty());
  EXPECT_GE(d.limits().max_storage_buffer_binding_size, 128ull << 20);  // WebGPU's guaranteed minimum
  EXPECT_GE(d.limits().max_compute_invocations_per_workgroup, 256u);
}

// `--adapter N` (one GPU per process on a multi-GPU host) counts as list_adapters() does; a number past the
// list names what exists instead of silently taking another adapter.
TEST(Device, OpensTheNumberedAdapterAndRefusesOnePastTheList) {
  std::vector<AdapterReport> all = list_adapters();
  ASSERT_FALSE(all.empty());
  for (size_t i = 0; i < all.size(); ++i) {
    DeviceOptions o;
    o.adapter = static_cast<int>(i);
    std::unique_ptr<Device> d = open_device(o);
    EXPECT_EQ(d->info().device, all[i].info.device) << "adapter " << i;
    EXPECT_EQ(d->info().backend, all[i].info.backend) << "adapter " << i;
  }
  DeviceOptions past;
  past.adapter = static_cast<int>(all.size());
  try {
    open_device(past);
    FAIL() << "adapter " << all.size() << " of " << all.size() << " opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("adapter " + std::to_string(all.size()) + " requested, but " +
                                         std::to_string(all.size()) + " found"),
              std::string::npos)
        << e.what();
  }
}

TEST(Device, WriteThenReadBackRoundTrips) {
  Device& d = device();
  std::vector<float> v = {1.5f, -2.0f, 3.25f, 7.0f, 9.0f};
  Buffer b = d.buffer(v.size() * 4, kStorage, "roundtrip");
  d.write(b, 0, bytes_of(v));
  ReadTicket t = d.read(b, 0, v.size() * 4);
  d.submit();
  EXPECT_EQ(floats_of(d.wait(t)), v);
  EXPECT_EQ(d.stats().bytes_read_back >= 20u, true);
}

// Writes of several MiB go through a staging buffer filled by several threads (model upload), small ones
// through queue.writeBuffer; both keep writeBuffer's order: after earlier writes, before the commands
// recorded but not yet submitted (here a copy of the buffer, which must see the later write).
TEST(Device, LargeWritesKeepTheQueueOrderOfSmallOnes) {
  Device& d = device();
  const size_t size = (12u << 20) + 8;
  std::vector<uint8_t> want(size);
  for (size_t i = 0; i < size; ++i) want[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  Buffer b = d.buffer(size, kStorage, "large write"), seen = d.buffer(size, kStorage, "copy of it");
  d.write(b, 0, want);
  std::vector<uint8_t> small(4000, 0xA5);
  d.write(b, 4096, small);
  std::copy(small.begin(), small.end(), want.begin() + 4096);
  d.copy(b, 0, seen, 0, size);  // recorded before the next write, submitted after it
  std::vector<uint8_t> later((9u << 20) + 8);
  for (size_t i = 0; i < later.size(); ++i) later[i] = static_cast<uint8_t>(i % 251);
  d.write(b, 1024, later);
  std::copy(later.begin(), later.end(), want.begin() + 1024);
  ReadTicket t = d.read(seen, 0, size);
  d.submit();
  const std::vector<uint8_t> got = d.wait(t);
  ASSERT_EQ(got.size(), size);
  size_t first_wrong = size;
  for (size_t i = 0; i < size && first_wrong == size; ++i)
    if (got[i] != want[i]) first_wrong = i;
  EXPECT_EQ(first_wrong, size) << "first differing byte";

  // More writes than staging buffers: each is used again once its copy has run.
  for (uint8_t round = 0; round < 5; ++round) {
    std::vector<uint8_t> more((5u << 20) + 4 * round, static_cast<uint8_t>(round + 1));
    d.write(b, 8 * round, more);
    std::copy(more.begin(), more.end(), want.begin() + 8 * round);
  }
  ReadTicket again = d.read(b, 0, size);
  d.submit();
  const std::vector<uint8_t> after = d.wait(again);
  EXPECT_TRUE(after == want);
}

TEST(Device, WgslCompileErrorNamesKernelAndLine) {
  Device& d = device();
  // silu_mul needs N: leaving it undefined is a compile error that must name the kernel and a line.
  try {
    d.kernel("silu_mul", {});
    FAIL() << "expected a compile error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("silu_mul"), std::string::npos) << msg;
    EXPECT_NE(msg.find("silu_mul.wgsl:"), std::string::npos) << msg;
  }
}

TEST(Device, UnknownKernelIsAnError) {
  EXPECT_THROW(device().kernel("no_such_kernel", {}), Error);
}

TEST(Device, SiluMulMatchesDoubleReference) {
  Device& d = device();
  auto rng = test::rng(1);
  std::normal_distribution<float> dist(0.f, 3.f);
  const uint32_t n = 1000;  // not a multiple of the workgroup size
  std::vector<float> g(n), u(n);
  for (auto& x : g) x = dist(rng);
  for (auto& x : u) x = dist(rng);
  Buffer bg = d.buffer(2 * n * 4, kStorage, "gate|up");  // [gate (n) | up (n)]
  d.write(bg, 0, bytes_of(g));
  d.write(bg, n * 4, bytes_of(u));
  Kernel k = d.kernel("silu_mul", {{"N", std::to_string(n) + "u"}});
  BufferSlice slices[] = {{bg}};
  BindGroup grp = d.bind(k, slices);
  d.dispatch(k, grp, 1, (n + 255) / 256);  // one token's row, its columns over y
  ReadTicket t = d.read(bg, 0, n * 4);
  d.submit();
  std::vector<float> out = floats_of(d.wait(t));
  std::vector<double> ref(n);
  for (uint32_t i = 0; i < n; ++i) ref[i] = g[i] / (1.0 + std::exp(-double(g[i]))) * u[i];
  SCOPED_TRACE(test::seed_note());
  EXPECT_LT(test::relative_error(out, ref), 1e-6);
}

TEST(Device, ProfilingTimesEachDispatch) {
  auto d = open_device();
  if (!d->set_profiling(true)) GTEST_SKIP() << "adapter has no timestamp queries";
  const uint32_t n = 4096;
  Buffer g = d->buffer(2 * n * 4, kStorage, "gate|up");
  Kernel k = d->kernel("silu_mul", {{"N", std::to_string(n) + "u"}});
  BufferSlice slices[] = {{g}};
  BindGroup grp = d->bind(k, slices);
  for (int i = 0; i < 3; ++i) d->dispatch(k, grp, n / 256);
  d->submit();
  auto times = d->profile();
  ASSERT_EQ(times.size(), 3u);
  for (const auto& t : times) {
    EXPECT_EQ(t.label, "silu_mul");
    EXPECT_GE(t.seconds, 0.0);
    EXPECT_LT(t.seconds, 1.0);
  }
  EXPECT_TRUE(d->profile().empty()) << "a profile is returned once";
}

TEST(Device, BufferLargerThanTheAdapterAllowsIsAClearError) {
  Device& d = device();
  try {
    d.buffer(d.limits().max_buffer_size + 4, kStorage, "too big");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::Runtime);
    EXPECT_NE(msg.find("too big"), std::string::npos) << msg;
    EXPECT_NE(msg.find("maxBufferSize"), std::string::npos) << msg;
  }
}

TEST(Device, LossBecomesAnErrorOnEveryLaterCallAndNothingHangs) {
  auto d = open_device();
  Buffer b = d->buffer(64, kStorage, "before loss");
  ReadTicket pending = d->read(b, 0, 64);
  d->submit();
  d->simulate_loss();
  auto expect_lost = [](auto&& call) {
    try {
      call();
      ADD_FAILURE() << "expected a device-lost error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Runtime);
      EXPECT_NE(std::string(e.what()).find("lost"), std::string::npos) << e.what();
    }
  };
  expect_lost([&] { d->wait(pending); });
  expect_lost([&] { d->buffer(64, kStorage, "after loss"); });
  expect_lost([&] { d->kernel("silu_mul", {{"N", "4u"}}); });
  expect_lost([&] { d->submit(); });
}

}  // namespace
}  // namespace wgllm::gpu
