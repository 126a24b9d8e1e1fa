// mesh::Pipeline: the runtime::Generator that drives pipeline stages (rank 0's, or the --devices process's).
// Its bookkeeping mirrors runtime::Batcher's (slots, prefix reuse, the first token sampled from the prompt's
// last, the context limit), but instead of one submit per step it keeps passes flowing through the stages:
// - A prompt goes in micro-batches sent back to back, so that while stage 1 runs chunk c, stage 0 runs
//   chunk c + 1. Micro-batches split the chunks runtime::Batcher would run (max_batch tokens from where the
//   prompt resumes) into pieces of more than 16 tokens, so every token takes the same kernels (GEMM or GEMV)
//   as on one device and the same bits come out (the kernels are batch-invariant).
// - Decoding sequences go in groups of about (decoding sequences / stages); a group goes back into stage 0
//   as soon as its ids are back, so with as many groups as stages every stage has one to run. Sequences
//   that become ready one at a time (their prompts done) join the next group that comes back rather than
//   travel alone, unless a stage would otherwise have no group.
// - Prefill micro-batches and decode groups alternate, at most two passes per stage on their way.
// step() sends what it can, waits for at least one pass to come back, and returns the tokens sampled by the
// passes that came back (possibly none: a prompt's inner micro-batch samples nothing).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mesh/protocol.hpp"
#include "runtime/forward.hpp"
#include "runtime/generator.hpp"

namespace wgllm::mesh {

// The stages as the driver sees them: passes go into the first, results come out of the last, in order.
class Stages {
 public:
  virtual ~Stages() = default;
  virtual uint32_t count() const = 0;
  virtual void push(Pass pass) = 0;
  // Moves passes along without blocking; the next result once one is back. Throws Error when a stage
  // failed or stopped answering.
  virtual std::optional<Result> poll() = 0;
  // The failure that ended the stages for good, naming the stage ("stage 1 (rank 1 on HOST) stopped
  // answering: ..."), once there is one.
  virtual std::optional<std::string> fault() const = 0;
};

struct PipelineOptions {
  // Prompt tokens per pass; 0: about a chunk / (2 x stages), whole tiles of 16, at least 32 (a whole chunk
  // with one stage).
  uint32_t micro_batch = 0;
  // How long a wait polls without sleeping (mesh::Backoff); the mesh sets it from its adapter.
  unsigned spin_us = 0;
};

class Pipeline final : public runtime::Generator {
 public:
  // `first`: stage 0's Forward, whose sizes (slots, context, max_batch, max_logits) every stage shares.
  Pipeline(Stages& stages, const runtime::Forward& first, const PipelineOptions& options = {});

  uint32_t slots() const override { return static_cast<uint32_t>(slots_.size()); }
  uint32_t context_size() const override { return n_ctx_; }
  uint32_t vocab_size() const override { return n_vocab_; }
  std::optional<Started> start(std::span<const int32_t> prompt,
                               const runtime::SamplingParams& sampling) override;
  void finish(uint32_t slot) override;
  std::vector<Sampled> step() override;
  bool busy() const override;
  // "the mesh lost a stage: " and the stages' fault.
  std::optional<std::string> broken() const override;

  // Every position's logits [tokens][n_vocab] of `tokens` run from position 0 of slot 0, in passes of up to
  // 16 tokens (each token's arithmetic that of a one-token pass). Needs an idle pipeline.
  std::vector<std::vector<float>> logits(std::span<const int32_t> tokens);
  // Waits for every pass on its way (their tokens are dropped): before shutting the stages down.
  void drain();

  struct Stats {
    uint64_t passes = 0;          // sent into stage 0
    uint64_t tokens = 0;          // their tokens
    uint32_t most_in_flight = 0;  // the most passes on their way at once
  };
  const Stats& stats() const { return stats_; }

 private:
  enum class State : uint8_t { Free, Prefilling, Decoding };
  struct Slot {
    State state = State::Free;
    std::vector<int32_t> cached;  // tokens sent into the pipeline for this slot's cache, positions 0..
    std::vector<int32_t> prompt;  // while prefilling
    runtime::SamplingParams sampling;
    uint32_t sampled = 0;
    int32_t last = 0;
    uint64_t order = 0;
    uint64_t epoch = 0;       // changes when the slot changes hands: results for an older one are dropped
    uint32_t resumed_at = 0;  // where the prompt's computation starts (after the reused prefix)
    uint32_t micro_batch = 0;
    bool waiting = false;       // a pass that samples for it is on its way
    bool history_sent = false;  // its prompt went to the last stage with its first pass
  };
  enum class RowKind : uint8_t { Prompt, Decode };
  struct Row {
    uint32_t slot;
    uint64_t epoch;
    RowKind kind;
  };
  struct InFlight {
    uint32_t id;
    std::vector<Row> rows;  // sampling rows, in order
    bool logits;
    bool decode = false;  // a decode group
  };

  uint32_t max_in_flight() const { return 2 * stages_.count(); }
  void fill();
  bool send_decode();
  bool send_prompt();
  uint32_t piece_end(const Slot& s) const;
  void send(Pass pass, std::vector<Row> rows, bool logits);
  Result wait();  // the next result (blocking, with the stages' fault checks)
  void take(const Result& result, std::vector<Sampled>& out);

  Stages& stages_;
  PipelineOptions options_;
  uint32_t n_ctx_, n_vocab_, max_batch_, max_logits_;
  std::vector<Slot> slots_;
  std::deque<InFlight> flight_;
  std::vector<uint8_t> logits_;  // logits results in arrival order (logits())
  uint64_t clock_ = 0;
  uint32_t next_id_ = 0;
  bool prefer_decode_ = true;
  Stats stats_;
};

}  // namespace wgllm::mesh
