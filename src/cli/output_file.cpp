#include "cli/output_file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.hpp"

namespace wgllm::cli {

Progress::Progress(uint64_t total, std::string verb)
    : total_(total), verb_(std::move(verb)), tty_(isatty(STDERR_FILENO)) {}

void Progress::advance(uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ += n;
  const int tenth = total_ ? static_cast<int>(done_ * 10 / total_) : 10;
  const auto now = std::chrono::steady_clock::now();
  if (tty_ ? now - last_draw_ > std::chrono::milliseconds(100) || done_ == total_ : tenth != last_tenth_) {
    draw();
    last_draw_ = now;
    last_tenth_ = tenth;
  }
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (tty_ && total_) std::fputc('\n', stderr);
}

void Progress::draw() {
  const double frac = total_ ? static_cast<double>(done_) / total_ : 1.0;
  if (!tty_) {
    std::fprintf(stderr, "%s: %3.0f%%\n", verb_.c_str(), frac * 100);
    return;
  }
  constexpr int kWidth = 40;
  const int filled = static_cast<int>(frac * kWidth);
  std::fprintf(stderr, "\r%s [%s%s] %3.0f%% %.1f/%.1f M weights", verb_.c_str(),
               std::string(filled, '#').c_str(), std::string(kWidth - filled, '-').c_str(), frac * 100,
               done_ / 1e6, total_ / 1e6);
}

namespace {

char g_tmp_path[4096];
volatile sig_atomic_t g_tmp_armed = 0;

extern "C" void remove_tmp_and_die(int sig) {
  if (g_tmp_armed) unlink(g_tmp_path);
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

TmpCleanupOnSignal::TmpCleanupOnSignal(const std::string& tmp) {
  if (tmp.size() >= sizeof g_tmp_path) fail_input(tmp + ": path too long");
  std::memcpy(g_tmp_path, tmp.c_str(), tmp.size() + 1);
  struct sigaction sa {};
  sa.sa_handler = remove_tmp_and_die;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &sa, &old_[i]);
  g_tmp_armed = 1;
}

TmpCleanupOnSignal::~TmpCleanupOnSignal() {
  g_tmp_armed = 0;
  for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &old_[i], nullptr);
}

void refuse_overwriting_input(const std::string& in, const std::string& out) {
  struct stat si {};
  if (stat(in.c_str(), &si) != 0) fail_input(in + ": cannot open: " + std::strerror(errno));
  for (const std::string& path : {out, out + ".tmp"}) {
    struct stat so {};
    if (stat(path.c_str(), &so) == 0 && so.st_dev == si.st_dev && so.st_ino == si.st_ino) {
      fail_input(path + " is the input file " + in +
                 ": refusing to overwrite it (choose another output path)");
    }
  }
}

}  // namespace wgllm::cli
