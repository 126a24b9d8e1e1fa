// What the commands that write a model file share (`quantize`, `convert`): a progress bar, the removal of
// the temporary output on Ctrl-C, and the refusal to write over an input.
#pragma once

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <string>

namespace wgllm::cli {

// A progress bar on stderr: redrawn in place on a terminal (at most ten times a second), otherwise a line
// per tenth, so logs stay short. Safe to advance from several threads.
class Progress {
 public:
  Progress(uint64_t total, std::string verb);  // verb: "quantizing", "converting"
  void advance(uint64_t n);
  void finish();

 private:
  void draw();

  std::mutex mu_;
  uint64_t done_ = 0;
  uint64_t total_;
  std::string verb_;
  bool tty_;
  int last_tenth_ = -1;
  std::chrono::steady_clock::time_point last_draw_{};
};

// Ctrl-C (or SIGTERM/SIGHUP) while GgufWriter streams PATH.tmp: remove the partial file, then die of the
// signal as usual. Before the write nothing is on disk; after the rename the output is complete.
class TmpCleanupOnSignal {
 public:
  explicit TmpCleanupOnSignal(const std::string& tmp);
  ~TmpCleanupOnSignal();
  TmpCleanupOnSignal(const TmpCleanupOnSignal&) = delete;
  TmpCleanupOnSignal& operator=(const TmpCleanupOnSignal&) = delete;

 private:
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old_[std::size(kSignals)];
};

// The output (or the temporary file the writer streams to) must not be the input: same path or, through
// links, same inode. Throws Error(BadInput).
void refuse_overwriting_input(const std::string& in, const std::string& out);

}  // namespace wgllm::cli
