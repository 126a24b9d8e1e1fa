// A one-slot runtime::Generator over runtime::Session, serving until runtime::Batcher (continuous batching)
// replaces it. It reuses no KV cache: every prompt is computed from position 0.
#pragma once

#include <optional>
#include <vector>

#include "runtime/forward.hpp"
#include "runtime/generator.hpp"
#include "runtime/session.hpp"

namespace wgllm::server {

class SessionGenerator : public runtime::Generator {
 public:
  explicit SessionGenerator(runtime::Forward& forward) : forward_(forward) {}

  uint32_t slots() const override { return 1; }
  uint32_t context_size() const override { return forward_.n_ctx(); }
  uint32_t vocab_size() const override { return forward_.config().n_vocab; }
  std::optional<Started> start(std::span<const int32_t> prompt,
                               const runtime::SamplingParams& sampling) override;
  void finish(uint32_t slot) override;
  std::vector<Sampled> step() override;
  bool busy() const override { return session_.has_value(); }

 private:
  runtime::Forward& forward_;
  std::optional<runtime::Session> session_;
  std::vector<int32_t> prompt_;  // not yet prefilled
};

}  // namespace wgllm::server
