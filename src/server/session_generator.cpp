#include "server/session_generator.hpp"

#include <string>

#include "core/error.hpp"

namespace wgllm::server {

std::optional<runtime::Generator::Started> SessionGenerator::start(std::span<const int32_t> prompt,
                                                                   const runtime::SamplingParams& sampling) {
  if (session_) return std::nullopt;
  if (prompt.empty()) fail_input("the prompt has no tokens");
  if (prompt.size() >= forward_.n_ctx())
    fail_input("prompt of " + std::to_string(prompt.size()) + " tokens leaves no room in the context of " +
               std::to_string(forward_.n_ctx()) + " tokens");
  for (int32_t id : prompt)
    if (id < 0 || static_cast<uint32_t>(id) >= forward_.config().n_vocab)
      fail_input("token id " + std::to_string(id) + " is outside the vocabulary of " +
                 std::to_string(forward_.config().n_vocab));
  session_.emplace(forward_, sampling);
  prompt_.assign(prompt.begin(), prompt.end());
  return Started{0, 0};
}

void SessionGenerator::finish(uint32_t) {
  session_.reset();
  prompt_.clear();
}

std::vector<runtime::Generator::Sampled> SessionGenerator::step() {
  if (!session_) return {};
  gpu::ReadTicket t = prompt_.empty() ? session_->step() : session_->prefill(prompt_);
  prompt_.clear();
  int32_t id = session_->id_of(t);
  return {{0, id, session_->context_full()}};
}

}  // namespace wgllm::server
