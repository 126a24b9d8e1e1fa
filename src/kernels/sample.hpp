// How to run sample.wgsl (the GPU sampler) over the logits rows of a pass: two dispatches of kernel
// "sample", recorded in this order,
//   reduce: bindings (rows, logits, history, partials), workgroups (rows, parts) -- each reads its part of
//           a row once and leaves the part's maximum or its K largest in `partials`;
//   merge:  bindings (rows, partials, history, sampled), workgroups (rows) -- each merges a row's parts,
//           draws, and writes the id to sampled[slot] and the slot's history ring.
// `rows` holds runtime::GpuRow's (step_params.wgsl's Row), `history` [slots][history ring, count] u32,
// `partials` partials_bytes(rows) bytes, `sampled` one u32 per slot.
#pragma once

#include <cstdint>

#include "kernels/kernel_sources.hpp"

namespace wgllm::kernels {

// sample.wgsl's K_CAP: the most candidates a row keeps (with top-k off, the nucleus is cut there).
constexpr uint32_t kSampleCandidates = 256;

struct SampleKernels {
  KernelDefines reduce, merge;
  uint32_t parts = 1;      // reduce workgroups per row
  uint64_t row_bytes = 0;  // partials of one row
  uint64_t partials_bytes(uint32_t rows) const { return row_bytes * rows; }
};

// Logits per reduce workgroup for a vocabulary: 2048 (8 per invocation, ~63 parts for Llama 3's 128256),
// more for vocabularies past 64 parts so that the merge's candidates stay at most 64 * K.
uint32_t sample_part(uint32_t n_vocab);

// The two dispatches over rows of n_vocab logits with penalty history rings of `history` tokens, in parts of
// `part` logits (0: sample_part(n_vocab)). Throws Error naming the problem for an empty vocabulary or ring,
// or more parts than a dispatch's y dimension holds.
SampleKernels sample_kernels(uint32_t n_vocab, uint32_t history, uint32_t part = 0);

}  // namespace wgllm::kernels
