#include "fuzz/fuzz_support.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace wgllm::fuzz {

void fail(std::string_view what, std::string_view detail) {
  std::string escaped;
  for (unsigned char c : detail.substr(0, 4096)) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      escaped += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", c);
      escaped += hex;
    }
  }
  std::fprintf(stderr, "FUZZ CHECK FAILED: %.*s\n%s%s", static_cast<int>(what.size()), what.data(),
               escaped.c_str(), escaped.empty() ? "" : "\n");
  std::abort();
}

std::string source_path(std::string_view relative) {
  return std::string(WGLLM_SOURCE_DIR) + "/" + std::string(relative);
}

MemoryFile::MemoryFile(std::string_view bytes) {
  fd_ = memfd_create("fuzz-input", MFD_CLOEXEC);
  if (fd_ < 0) fail("memfd_create failed");
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n <= 0) fail("writing the memfd failed");
    done += static_cast<size_t>(n);
  }
  path_ = "/proc/self/fd/" + std::to_string(fd_);
}

MemoryFile::~MemoryFile() {
  ::close(fd_);
}

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "wgllm-fuzz-XXXXXX").string();
    if (!mkdtemp(pattern.data())) fail("mkdtemp failed");
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

}  // namespace

const std::string& temp_dir() {
  static const TempDir dir;
  return dir.path;
}

std::string write_temp(const std::string& name, std::string_view bytes) {
  const std::string path = temp_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) fail("writing a temporary file failed", path);
  return path;
}

}  // namespace wgllm::fuzz
