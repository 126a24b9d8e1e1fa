// What goes between pipeline stages (docs/mesh.md, "Messages" and "Traffic per token per hop"). A pass
// travels stage to stage: its tokens, the sampling settings of its sampling rows, the prompts of new
// sequences (the last stage seeds their penalty history with them), and after the first stage the hidden
// states of its tokens as the f32 the GPU holds (so a later stage computes on exactly the bits an earlier
// one produced). The last stage answers rank 0 with a result: the sampled ids, or the logits rows of a
// pass that asked for logits without sampling. Byte layouts are little-endian, fixed, and checked on
// decode (a malformed message is an Error naming what is wrong, never a crash).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/forward.hpp"
#include "runtime/step_params.hpp"

namespace wgllm::mesh {

// A new sequence's prompt for the last stage's penalty history (Forward::set_history).
struct History {
  uint32_t slot = 0;
  std::vector<int32_t> tokens;
};

struct Pass {
  enum Kind : uint32_t { kRun = 1, kShutdown = 2 };
  Kind kind = kRun;
  uint32_t id = 0;  // rank 0 numbers passes; results come back in this order
  std::vector<runtime::PassToken> tokens;
  // One entry per logits row (the tokens with `logits`, in order); empty: the logits rows are returned.
  std::vector<runtime::RowSampling> sampling;
  std::vector<History> histories;
  std::vector<uint8_t> hidden;  // [tokens, dim] f32 after the first stage; empty before it

  uint32_t rows() const;  // tokens with `logits`
};

struct Result {
  enum Kind : uint32_t { kIds = 1, kLogits = 2, kShutdown = 3 };
  Kind kind = kIds;
  uint32_t id = 0;              // the pass's
  std::vector<int32_t> ids;     // kIds: one per sampling row, in row order
  std::vector<uint8_t> logits;  // kLogits: [rows, n_vocab] f32
};

// Bytes on the wire: a pass has a 32-byte header, 16 bytes per token, 40 per sampling row, 8 + 4 x tokens
// per history and its hidden states; a result a 16-byte header, 4 bytes per id and its logits.
constexpr size_t kPassHeaderBytes = 32, kTokenBytes = 16, kRowBytes = 40, kHistoryHeaderBytes = 8;
constexpr size_t kResultHeaderBytes = 16;

std::vector<uint8_t> encode(const Pass& pass);
std::vector<uint8_t> encode(const Result& result);
// Throw Error(Runtime) naming `from` (e.g. "stage 1 (rank 1 on vm)") and the defect.
Pass decode_pass(std::span<const uint8_t> bytes, const std::string& from);
Result decode_result(std::span<const uint8_t> bytes, const std::string& from);

}  // namespace wgllm::mesh
