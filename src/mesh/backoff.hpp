// Polling loops (MPI requests, GPU read-backs) sleep a little longer each round in which nothing moved:
// a short wait stays quick, a long one costs no CPU.
#pragma once

#include <unistd.h>

#include <algorithm>

namespace wgllm::mesh {

class Backoff {
 public:
  void idle() {
    if (spins_ < 50) {
      ++spins_;
      return;
    }
    usleep(sleep_us_);
    sleep_us_ = std::min(sleep_us_ * 2, 1000u);
  }
  void reset() {
    spins_ = 0;
    sleep_us_ = 20;
  }

 private:
  unsigned spins_ = 0, sleep_us_ = 20;
};

}  // namespace wgllm::mesh
