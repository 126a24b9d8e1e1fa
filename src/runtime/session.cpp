#include "runtime/session.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.hpp"

namespace wgllm::runtime {

Session::Session(Forward& forward, const SamplingParams& sampling) : forward_(forward), sampling_(sampling) {}

StepParams Session::params(uint32_t pos) {
  StepParams p;
  p.pos = pos;
  p.n_ctx = forward_.n_ctx();
  p.seed = sampling_.seed;
  p.sample_index = sampled_;
  p.temperature = sampling_.temperature;
  p.top_k = sampling_.top_k > 0 ? static_cast<uint32_t>(sampling_.top_k) : 0;
  p.top_p = sampling_.top_p;
  p.min_p = sampling_.min_p;
  p.repeat_penalty = sampling_.repeat_penalty;
  p.penalty_last_n = static_cast<uint32_t>(std::clamp<int32_t>(sampling_.penalty_last_n, 0, kPenaltyHistory));
  return p;
}

gpu::ReadTicket Session::prefill(std::span<const int32_t> prompt) {
  if (prompt.empty()) fail_input("the prompt has no tokens");
  if (pos_ + prompt.size() > forward_.n_ctx())
    fail_input("prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
               std::to_string(forward_.n_ctx()) + " tokens (" + std::to_string(pos_) + " already used)");
  for (int32_t id : prompt)
    if (id < 0 || static_cast<uint32_t>(id) >= forward_.config().n_vocab)
      fail_input("token id " + std::to_string(id) + " is outside the vocabulary of " +
                 std::to_string(forward_.config().n_vocab));
  forward_.set_history(prompt);
  gpu::Device& device = forward_.device();
  for (size_t i = 0; i < prompt.size(); ++i) {
    // Each prompt token is its own submit (its position lives in the step uniform); nothing waits.
    forward_.set_token(prompt[i]);
    forward_.set_step(params(pos_));
    bool last = i + 1 == prompt.size();
    forward_.record(last);
    ++pos_;
    if (last) {
      gpu::ReadTicket t = device.read(forward_.token(), 0, 4);
      device.submit();
      ++sampled_;
      return t;
    }
    device.submit();
  }
  return {};  // unreachable: the prompt is not empty
}

gpu::ReadTicket Session::step() {
  if (context_full())
    fail_input("the context of " + std::to_string(forward_.n_ctx()) + " tokens is full");
  forward_.set_step(params(pos_));
  forward_.record(true);
  ++pos_;
  gpu::Device& device = forward_.device();
  gpu::ReadTicket t = device.read(forward_.token(), 0, 4);
  device.submit();
  ++sampled_;
  return t;
}

gpu::ReadTicket Session::evaluate(int32_t token) {
  if (context_full()) fail_input("the context of " + std::to_string(forward_.n_ctx()) + " tokens is full");
  if (token < 0 || static_cast<uint32_t>(token) >= forward_.config().n_vocab)
    fail_input("token id " + std::to_string(token) + " is outside the vocabulary of " +
               std::to_string(forward_.config().n_vocab));
  forward_.set_token(token);
  forward_.set_step(params(pos_));
  forward_.record(false);
  ++pos_;
  gpu::Device& device = forward_.device();
  gpu::ReadTicket t = device.read(forward_.logits(), 0, uint64_t(forward_.config().n_vocab) * 4);
  device.submit();
  return t;
}

int32_t Session::id_of(gpu::ReadTicket ticket) {
  std::vector<uint8_t> bytes = forward_.device().wait(ticket);
  int32_t id;
  std::memcpy(&id, bytes.data(), 4);
  return id;
}

}  // namespace wgllm::runtime
