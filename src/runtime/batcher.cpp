#include "runtime/batcher.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "runtime/prompt_checks.hpp"
#include "runtime/slot_choice.hpp"

namespace wgllm::runtime {

Batcher::Batcher(Forward& forward) : forward_(forward), slots_(forward.n_seq()) {}

bool Batcher::busy() const {
  return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.state != State::Free; });
}

std::optional<Generator::Started> Batcher::start(std::span<const int32_t> prompt,
                                                 const SamplingParams& sampling) {
  check_prompt(prompt, forward_.n_ctx(), forward_.config().n_vocab);
  std::vector<SlotCandidate> candidates;
  for (const Slot& s : slots_) candidates.push_back({s.state == State::Free, s.cached, s.order});
  const std::optional<SlotChoice> choice = choose_slot(candidates, prompt);
  if (!choice) return std::nullopt;
  const uint32_t slot = choice->slot, reused = choice->reused;
  Slot* best = &slots_[slot];
  best->state = State::Prefilling;
  best->cached.resize(reused);
  best->prompt.assign(prompt.begin(), prompt.end());
  best->sampling = sampling;
  best->sampled = 0;
  best->order = ++clock_;
  forward_.set_history(slot, prompt);
  return Started{slot, reused};
}

void Batcher::finish(uint32_t slot) {
  if (slot >= slots_.size()) fail_input("slot " + std::to_string(slot) + " does not exist");
  Slot& s = slots_[slot];
  s.state = State::Free;
  s.prompt.clear();
  s.order = ++clock_;
}

std::vector<Generator::Sampled> Batcher::step() {
  const uint32_t n_ctx = forward_.n_ctx();
  std::vector<PassToken> decode;  // [decoding sequences]
  std::vector<RowSampling> decode_rows;
  std::vector<uint32_t> decode_slots;
  Slot* prefilling = nullptr;
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (s.state == State::Decoding) {
      const auto pos = static_cast<uint32_t>(s.cached.size());
      if (pos >= n_ctx)
        fail_input("slot " + std::to_string(i) + " has filled its context of " + std::to_string(n_ctx) +
                   " tokens: finish it");
      decode.push_back({i, pos, s.last, true});
      decode_rows.push_back({s.sampling, s.sampled});
      decode_slots.push_back(i);
    } else if (s.state == State::Prefilling && (!prefilling || s.order < prefilling->order)) {
      prefilling = &s;
    }
  }
  if (decode.empty() && !prefilling) return {};

  gpu::Device& device = forward_.device();
  if (!decode.empty()) forward_.record(decode, decode_rows);
  std::vector<PassToken> chunk;  // [prompt tokens of this step]
  bool completes = false;
  RowSampling first{};
  if (prefilling) {
    const auto slot = static_cast<uint32_t>(prefilling - slots_.data());
    const auto begin = static_cast<uint32_t>(prefilling->cached.size());
    const auto end =
        static_cast<uint32_t>(std::min<size_t>(begin + forward_.max_batch(), prefilling->prompt.size()));
    completes = end == prefilling->prompt.size();
    for (uint32_t p = begin; p < end; ++p)
      chunk.push_back({slot, p, prefilling->prompt[p], completes && p + 1 == end});
    first = {prefilling->sampling, 0};
    forward_.record(chunk,
                    completes ? std::span<const RowSampling>(&first, 1) : std::span<const RowSampling>{});
  }
  gpu::ReadTicket ticket = device.read(forward_.sampled(), 0, slots_.size() * 4);
  device.submit();
  const std::vector<uint8_t> bytes = device.wait(ticket);
  std::vector<int32_t> ids(slots_.size());  // [slots]
  std::memcpy(ids.data(), bytes.data(), bytes.size());

  std::vector<Sampled> out;
  for (uint32_t slot : decode_slots) {
    Slot& s = slots_[slot];
    s.cached.push_back(s.last);
    s.last = ids[slot];
    ++s.sampled;
    out.push_back({slot, s.last, s.cached.size() >= n_ctx});
  }
  if (prefilling) {
    const auto slot = static_cast<uint32_t>(prefilling - slots_.data());
    for (const PassToken& t : chunk) prefilling->cached.push_back(t.id);
    if (completes) {
      prefilling->state = State::Decoding;
      prefilling->prompt.clear();
      prefilling->last = ids[slot];
      prefilling->sampled = 1;
      out.push_back({slot, prefilling->last, prefilling->cached.size() >= n_ctx});
    }
  }
  return out;
}

}  // namespace wgllm::runtime
