// Polling loops (MPI requests, GPU read-backs) sleep a little longer each round in which nothing moved,
// up to 200 us: a short wait stays quick and a long one costs little CPU. A stage on a GPU first polls
// without sleeping for `spin_us` after its last activity: a decode step's pass comes back within
// milliseconds, and a sleep's granularity (tens to hundreds of microseconds, at three waits per token)
// measured as ~0.5 ms per token of a 1B model on the H200. A software adapter does not spin: its stages
// share the CPU with the driver that computes them.
#pragma once

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>

namespace wgllm::mesh {

class Backoff {
 public:
  explicit Backoff(unsigned spin_us = 0) : spin_us_(spin_us) { reset(); }
  void idle() {
    if (spins_ < 50) {
      ++spins_;
      return;
    }
    if (spin_us_ && std::chrono::steady_clock::now() < spin_until_) {
      sched_yield();
      return;
    }
    usleep(sleep_us_);
    sleep_us_ = std::min(sleep_us_ * 2, 200u);
  }
  void reset() {
    spins_ = 0;
    sleep_us_ = 20;
    if (spin_us_) spin_until_ = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
  }

 private:
  unsigned spin_us_;
  unsigned spins_ = 0, sleep_us_ = 20;
  std::chrono::steady_clock::time_point spin_until_;
};

// How long a stage on this adapter polls without sleeping (above).
inline unsigned spin_us_for(const std::string& adapter_type) {
  return adapter_type == "CPU" ? 0 : 20000;
}

}  // namespace wgllm::mesh
