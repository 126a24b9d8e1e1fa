// The on-disk pipeline cache: a second device start finds what the first compiled; a damaged or colliding
// entry is a miss, never a wrong pipeline.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gpu/dawn/pipeline_cache.hpp"
#include "gpu/device.hpp"
#include "support/test_support.hpp"

namespace wgllm::gpu {
namespace {

namespace fs = std::filesystem;

TEST(PipelineCache, StoresThenLoadsByKeyAndMissesOtherKeys) {
  PipelineCache c(fs::path(test::temp_dir()) / "kv");
  std::string key = "key-1", value = "compiled bytes";
  EXPECT_EQ(c.load(key.data(), key.size(), nullptr, 0), 0u);
  c.store(key.data(), key.size(), value.data(), value.size());
  ASSERT_EQ(c.load(key.data(), key.size(), nullptr, 0), value.size());
  std::string got(value.size(), '\0');
  EXPECT_EQ(c.load(key.data(), key.size(), got.data(), got.size()), value.size());
  EXPECT_EQ(got, value);
  EXPECT_EQ(c.hits(), 1u);
  std::string other = "key-2";
  EXPECT_EQ(c.load(other.data(), other.size(), nullptr, 0), 0u);
}

TEST(PipelineCache, DamagedEntriesAreMisses) {
  fs::path dir = fs::path(test::temp_dir()) / "damaged";
  PipelineCache c(dir);
  std::string key = "key", value = "value";
  c.store(key.data(), key.size(), value.data(), value.size());
  ASSERT_EQ(c.stores(), 1u);
  for (const auto& e : fs::directory_iterator(dir)) {
    // Same file name, different stored key: what a hash collision or a foreign file looks like.
    std::ofstream out(e.path(), std::ios::binary | std::ios::trunc);
    uint64_t n = 3;
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << "KEYvalue";
  }
  EXPECT_EQ(c.load(key.data(), key.size(), nullptr, 0), 0u);
  for (const auto& e : fs::directory_iterator(dir)) fs::resize_file(e.path(), 4);  // truncated
  EXPECT_EQ(c.load(key.data(), key.size(), nullptr, 0), 0u);
}

TEST(PipelineCache, SecondDeviceStartCompilesFromTheCache) {
  DeviceOptions o;
  o.pipeline_cache_dir = (fs::path(test::temp_dir()) / "pipelines").string();
  const KernelDefines defines = {{"N", "1000u"}};
  {
    std::unique_ptr<Device> first = open_device(o);
    first->kernel("silu_mul", defines);
    EXPECT_GT(first->stats().pipeline_cache_stores, 0u);
    EXPECT_EQ(first->stats().pipeline_cache_hits, 0u);
  }
  std::unique_ptr<Device> second = open_device(o);
  second->kernel("silu_mul", defines);
  EXPECT_GT(second->stats().pipeline_cache_hits, 0u);
}

TEST(PipelineCache, OffMeansNoFiles) {
  DeviceOptions o;
  o.pipeline_cache_dir = "off";
  std::unique_ptr<Device> d = open_device(o);
  d->kernel("silu_mul", {{"N", "999u"}});
  EXPECT_EQ(d->stats().pipeline_cache_stores, 0u);
}

}  // namespace
}  // namespace wgllm::gpu
