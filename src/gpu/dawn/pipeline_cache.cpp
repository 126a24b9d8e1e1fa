#include "gpu/dawn/pipeline_cache.hpp"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace wgllm::gpu {
namespace {

// A file holds [u64 key size][key][value]: the name is only a hash of the key, so the key itself is kept
// and compared, and a hash collision is a miss rather than a wrong pipeline.
uint64_t fnv1a(const uint8_t* p, size_t n, uint64_t h) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

bool read_file(const std::filesystem::path& path, std::vector<uint8_t>& out) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return false;
  std::streamsize n = in.tellg();
  if (n < 8) return false;
  out.resize(static_cast<size_t>(n));
  in.seekg(0);
  return static_cast<bool>(in.read(reinterpret_cast<char*>(out.data()), n));
}

}  // namespace

PipelineCache::PipelineCache(std::filesystem::path dir) : dir_(std::move(dir)) {}

std::filesystem::path PipelineCache::default_dir() {
  if (const char* d = std::getenv("WGLLM_CACHE_DIR")) {
    if (std::string(d) == "off") return {};
    return std::filesystem::path(d) / "pipelines";
  }
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    return std::filesystem::path(x) / "wgllm" / "pipelines";
  if (const char* h = std::getenv("HOME"); h && *h)
    return std::filesystem::path(h) / ".cache" / "wgllm" / "pipelines";
  return {};
}

std::filesystem::path PipelineCache::path_of(const void* key, size_t key_size) const {
  const auto* k = static_cast<const uint8_t*>(key);
  uint64_t a = fnv1a(k, key_size, 0xcbf29ce484222325ull);
  uint64_t b = fnv1a(k, key_size, 0x84222325cbf29ce4ull);
  char name[40];
  std::snprintf(name, sizeof name, "%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  return dir_ / name;
}

size_t PipelineCache::load(const void* key, size_t key_size, void* value, size_t value_size) {
  if (dir_.empty()) return 0;
  std::lock_guard lock(mutex_);
  std::vector<uint8_t> file;
  if (!read_file(path_of(key, key_size), file)) return 0;
  uint64_t stored_key_size;
  std::memcpy(&stored_key_size, file.data(), 8);
  if (stored_key_size != key_size || file.size() - 8 < key_size ||
      std::memcmp(file.data() + 8, key, key_size) != 0)
    return 0;
  size_t size = file.size() - 8 - key_size;
  if (!value) return size;
  if (value_size < size) return 0;
  std::memcpy(value, file.data() + 8 + key_size, size);
  ++hits_;
  return size;
}

void PipelineCache::store(const void* key, size_t key_size, const void* value, size_t value_size) {
  if (dir_.empty()) return;
  std::lock_guard lock(mutex_);
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return;
  // Written aside and renamed into place: a reader (another wgllm process) never sees half a file.
  std::filesystem::path path = path_of(key, key_size);
  std::filesystem::path tmp = path;
  tmp += ".tmp" + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    uint64_t n = key_size;
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(static_cast<const char*>(key), static_cast<std::streamsize>(key_size));
    out.write(static_cast<const char*>(value), static_cast<std::streamsize>(value_size));
    if (!out) {
      out.close();
      std::filesystem::remove(tmp, ec);
      return;
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    std::filesystem::remove(tmp, ec);
  else
    ++stores_;
}

}  // namespace wgllm::gpu
