// What the fuzz targets share: the entry point's signature, checks that fail loudly (abort, which
// libFuzzer and the replay tests both report with the input), paths into the repository, and inputs
// turned into files for the readers that take a path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Optional, once before the first input (libFuzzer's hook; the replay runs it too).
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace wgllm::fuzz {

// Prints `what` (and `detail`, escaped) and aborts.
[[noreturn]] void fail(std::string_view what, std::string_view detail = {});
inline void check(bool ok, std::string_view what, std::string_view detail = {}) {
  if (!ok) fail(what, detail);
}

// `relative` inside the repository (models/..., testdata/...).
std::string source_path(std::string_view relative);

// An in-memory file (memfd) holding `bytes`, reachable by path (/proc/self/fd/N) while the object lives.
class MemoryFile {
 public:
  explicit MemoryFile(std::string_view bytes);
  ~MemoryFile();
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// A directory of this process, removed at exit: for readers that look for a second file beside the first.
const std::string& temp_dir();
// Writes `bytes` to temp_dir()/name and returns the path.
std::string write_temp(const std::string& name, std::string_view bytes);

}  // namespace wgllm::fuzz
