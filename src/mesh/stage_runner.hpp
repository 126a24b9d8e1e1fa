// One pipeline stage: a runtime::Forward over layers [first, last) on one device. It runs the passes that
// reach it in the order they come (so a pass's KV-cache writes precede those of every later pass), each as
// one submit, with several in flight, and never blocks: run() records and submits, poll() hands out the
// oldest pass's output once its read-back has landed.
#pragma once

#include <deque>
#include <optional>
#include <variant>

#include "gpu/device.hpp"
#include "mesh/protocol.hpp"
#include "runtime/forward.hpp"

namespace wgllm::mesh {

class StageRunner {
 public:
  StageRunner(gpu::Device& device, const gguf::GgufFile& file, const runtime::ForwardOptions& options);

  runtime::Forward& forward() { return forward_; }
  gpu::Device& device() { return forward_.device(); }

  // Throws Error for a pass this stage cannot run (hidden states of the wrong size, a bad slot or position).
  void run(Pass pass);
  // The next stage's pass (with this stage's hidden states), or on the last stage the result for rank 0.
  using Output = std::variant<Pass, Result>;
  std::optional<Output> poll();
  size_t pending() const { return running_.size(); }

 private:
  struct Running {
    Pass pass;
    gpu::ReadTicket ticket;
  };
  runtime::Forward forward_;
  std::deque<Running> running_;
};

}  // namespace wgllm::mesh
