#include "runtime/session.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "runtime/prompt_checks.hpp"

namespace wgllm::runtime {

Session::Session(Forward& forward, const SamplingParams& sampling) : forward_(forward), sampling_(sampling) {}

gpu::ReadTicket Session::read_sampled() {
  gpu::Device& device = forward_.device();
  gpu::ReadTicket t = device.read(forward_.sampled(), 0, 4);
  device.submit();
  ++sampled_;
  return t;
}

gpu::ReadTicket Session::prefill(std::span<const int32_t> prompt) {
  if (prompt.empty()) fail_input("the prompt has no tokens");
  if (pos_ + prompt.size() > forward_.n_ctx())
    fail_input("prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
               std::to_string(forward_.n_ctx()) + " tokens (" + std::to_string(pos_) + " already used)");
  check_token_ids(prompt, forward_.config().n_vocab);
  forward_.set_history(0, prompt);
  // Passes of up to max_batch tokens, one submit each; only the last token's logits are computed.
  const RowSampling sample{sampling_, sampled_};
  std::vector<PassToken> pass;  // [chunk]
  for (size_t first = 0; first < prompt.size(); first += forward_.max_batch()) {
    const size_t n = std::min<size_t>(forward_.max_batch(), prompt.size() - first);
    const bool last = first + n == prompt.size();
    pass.clear();
    for (size_t i = 0; i < n; ++i)
      pass.push_back({0, pos_ + static_cast<uint32_t>(i), prompt[first + i], last && i + 1 == n});
    forward_.record(pass, last ? std::span<const RowSampling>(&sample, 1) : std::span<const RowSampling>{});
    pos_ += static_cast<uint32_t>(n);
    if (!last) forward_.device().submit();
  }
  return read_sampled();
}

gpu::ReadTicket Session::step() {
  if (context_full()) fail_input("the context of " + std::to_string(forward_.n_ctx()) + " tokens is full");
  const PassToken token{0, pos_, kSampledId, true};
  const RowSampling sample{sampling_, sampled_};
  forward_.record({&token, 1}, {&sample, 1});
  ++pos_;
  return read_sampled();
}

gpu::ReadTicket Session::evaluate(int32_t token) {
  if (context_full()) fail_input("the context of " + std::to_string(forward_.n_ctx()) + " tokens is full");
  check_token_ids({&token, 1}, forward_.config().n_vocab);
  const PassToken t{0, pos_, token, true};
  forward_.record({&t, 1});
  ++pos_;
  gpu::Device& device = forward_.device();
  gpu::ReadTicket ticket = device.read(forward_.logits(), 0, uint64_t(forward_.config().n_vocab) * 4);
  device.submit();
  return ticket;
}

int32_t Session::id_of(gpu::ReadTicket ticket) {
  std::vector<uint8_t> bytes = forward_.device().wait(ticket);
  int32_t id;
  std::memcpy(&id, bytes.data(), 4);
  return id;
}

}  // namespace wgllm::runtime
