// Polling loops (MPI requests, GPU read-backs) sleep a little longer each round in which nothing moved,
// up to 200 us: a short wait stays quick, a long one costs little CPU, and a token's pass is never more
// than 0.2 ms late at a stage (a decode step of a large model takes milliseconds per stage).
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
    sleep_us_ = std::min(sleep_us_ * 2, 200u);
  }
  void reset() {
    spins_ = 0;
    sleep_us_ = 20;
  }

 private:
  unsigned spins_ = 0, sleep_us_ = 20;
};

}  // namespace wgllm::mesh
