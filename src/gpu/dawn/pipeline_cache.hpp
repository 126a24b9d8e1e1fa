// Dawn's blob cache, kept on disk so that a second start of wgllm compiles no pipeline: Dawn hands us opaque
// (key, value) pairs through the WGPUDawnCacheDeviceDescriptor hooks (compiled shaders, the Vulkan
// pipeline cache) and asks for them again by key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>

namespace wgllm::gpu {

class PipelineCache {
 public:
  // Entries live in `dir` (created on first store). An empty dir disables the cache.
  explicit PipelineCache(std::filesystem::path dir);

  // The default folder: $WGLLM_CACHE_DIR, else $XDG_CACHE_HOME/wgllm/pipelines, else
  // ~/.cache/wgllm/pipelines; empty (no cache) when WGLLM_CACHE_DIR is "off" or no home is known.
  static std::filesystem::path default_dir();

  // Dawn's hooks. load() with value == nullptr returns the stored size (0: absent); with a buffer of at
  // least that size it copies the value and returns its size. Failures to read or write are misses, never
  // errors: the cache only ever saves time.
  size_t load(const void* key, size_t key_size, void* value, size_t value_size);
  void store(const void* key, size_t key_size, const void* value, size_t value_size);

  uint64_t hits() const { return hits_; }
  uint64_t stores() const { return stores_; }

 private:
  std::filesystem::path path_of(const void* key, size_t key_size) const;
  std::filesystem::path dir_;
  std::mutex mutex_;  // Dawn may call the hooks from its worker threads
  uint64_t hits_ = 0, stores_ = 0;
};

}  // namespace wgllm::gpu
