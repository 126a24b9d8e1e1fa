#include "kernels/sample.hpp"

#include <algorithm>
#include <string>

#include "core/error.hpp"

namespace wgllm::kernels {

uint32_t sample_part(uint32_t n_vocab) {
  constexpr uint32_t kPart = 2048, kMaxParts = 64, kWorkgroup = 256;
  if (n_vocab <= kPart * kMaxParts) return std::min(n_vocab, kPart);
  const uint32_t per_part = (n_vocab + kMaxParts - 1) / kMaxParts;
  return (per_part + kWorkgroup - 1) / kWorkgroup * kWorkgroup;
}

SampleKernels sample_kernels(uint32_t n_vocab, uint32_t history, uint32_t part) {
  if (n_vocab == 0) fail_input("the sampler needs a vocabulary of at least one token");
  if (history == 0) fail_input("the sampler needs a penalty history of at least one token");
  if (part == 0) part = sample_part(n_vocab);
  SampleKernels k;
  k.parts = (n_vocab + part - 1) / part;
  if (k.parts > 65535)
    fail_input("sampling " + std::to_string(n_vocab) + " logits in parts of " + std::to_string(part) +
               " takes " + std::to_string(k.parts) +
               " workgroups per row, more than a dispatch holds (65535)");
  auto u32 = [](uint64_t v) { return std::to_string(v) + "u"; };
  k.reduce = {
      {"N_VOCAB", u32(n_vocab)}, {"HISTORY", u32(history)}, {"PART", u32(part)}, {"PARTS", u32(k.parts)}};
  k.merge = k.reduce;
  k.merge["MERGE"] = "1";
  // Per part, its candidates' keys and ids (sample.wgsl's ROW_WORDS).
  k.row_bytes = 2ull * k.parts * std::min(kSampleCandidates, part) * 4;
  return k;
}

}  // namespace wgllm::kernels
