#include "mesh/stage_runner.hpp"

#include <cstring>
#include <string>

#include "core/error.hpp"

namespace wgllm::mesh {

StageRunner::StageRunner(gpu::Device& device, const gguf::GgufFile& file,
                         const runtime::ForwardOptions& options)
    : forward_(device, file, options) {}

void StageRunner::run(Pass pass) {
  gpu::Device& dev = device();
  const auto n = static_cast<uint32_t>(pass.tokens.size());
  const uint64_t hidden_bytes = uint64_t(n) * forward_.config().dim * 4;
  if (forward_.first_stage() && !pass.hidden.empty())
    fail_runtime("mesh: the first stage got hidden states with a pass");
  if (!forward_.first_stage() && pass.hidden.size() != hidden_bytes)
    fail_runtime("mesh: a pass of " + std::to_string(n) + " tokens came with " +
                 std::to_string(pass.hidden.size()) + " bytes of hidden states, not " +
                 std::to_string(hidden_bytes));
  if (forward_.last_stage())
    for (const History& h : pass.histories) forward_.set_history(h.slot, h.tokens);
  // The write lands before this pass's submit and after the previous one's, whose read-back of the same
  // buffer was recorded inside it.
  if (!forward_.first_stage()) dev.write(forward_.hidden(), 0, pass.hidden);
  forward_.record(pass.tokens, pass.sampling);

  gpu::ReadTicket ticket;
  if (!forward_.last_stage())
    ticket = dev.read(forward_.hidden(), 0, hidden_bytes);
  else if (!pass.sampling.empty())
    ticket = dev.read(forward_.sampled(), 0, uint64_t(forward_.n_seq()) * 4);
  else if (const uint32_t rows = pass.rows())
    ticket = dev.read(forward_.logits(), 0, uint64_t(rows) * forward_.config().n_vocab * 4);
  else  // nothing to return but the pass's end, which rank 0 counts
    ticket = dev.read(forward_.sampled(), 0, 4);
  dev.submit();
  pass.hidden.clear();
  running_.push_back({std::move(pass), ticket});
}

std::optional<StageRunner::Output> StageRunner::poll() {
  if (running_.empty() || !device().poll(running_.front().ticket)) return std::nullopt;
  Running r = std::move(running_.front());
  running_.pop_front();
  std::vector<uint8_t> bytes = device().wait(r.ticket);
  if (!forward_.last_stage()) {
    r.pass.hidden = std::move(bytes);
    return Output(std::move(r.pass));
  }
  Result result;
  result.id = r.pass.id;
  if (!r.pass.sampling.empty()) {
    for (const runtime::PassToken& t : r.pass.tokens) {
      if (!t.logits) continue;
      int32_t id;
      std::memcpy(&id, bytes.data() + size_t(t.slot) * 4, 4);
      result.ids.push_back(id);
    }
  } else if (r.pass.rows()) {
    result.kind = Result::kLogits;
    result.logits = std::move(bytes);
  }
  return Output(std::move(result));
}

}  // namespace wgllm::mesh
