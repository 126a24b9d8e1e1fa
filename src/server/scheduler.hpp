// The one thread that owns the Generator. Between steps it admits queued requests into free slots and drops
// those whose clients are gone; each step advances every running sequence at once (runtime::Generator), and
// the text each sampled token adds goes to that request's Job, which the request's HTTP thread reads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/generator.hpp"
#include "server/stop_matcher.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::server {

enum class FinishReason { Stop, Length, Error };
const char* to_string(FinishReason r);  // OpenAI's finish_reason: "stop", "length"

struct Usage {
  uint32_t prompt_tokens = 0;
  uint32_t completion_tokens = 0;  // sampled tokens, not counting an end-of-generation token
  uint32_t cached_tokens = 0;      // prompt tokens whose KV cache was reused
};

struct JobSpec {
  std::vector<int32_t> prompt;
  runtime::SamplingParams sampling;
  uint64_t max_tokens = UINT64_MAX;
  std::vector<std::string> stop;
  bool strip_leading_space = false;  // StreamDecoder's: the reply starts a text of its own
};

// One request between its HTTP thread and the scheduler. The scheduler appends text and finally ends it;
// the HTTP thread takes what has come (take) and may cancel.
class Job {
 public:
  explicit Job(JobSpec spec) : spec_(std::move(spec)) {}
  const JobSpec& spec() const { return spec_; }

  struct Progress {
    std::string text;  // new since the last take
    bool started = false;
    std::optional<FinishReason> finish;  // set once: the job is over
    std::string error;                   // FinishReason::Error: what went wrong
    int error_status = 0;                // its HTTP status (400 for a refused prompt, 500 otherwise)
    Usage usage;
  };
  // Waits until there is new text, the job ends, a step ran, or `timeout` passed; then takes the new text.
  Progress take(std::chrono::milliseconds timeout);
  // `client_gone` tells whether the client has left; the scheduler asks it between steps until cancel().
  void watch(std::function<bool()> client_gone);
  // The client is gone or the response is over: the scheduler drops the job at its next step boundary.
  // After it returns, the watch is never called again.
  void cancel();
  bool cancelled();

  // Scheduler side.
  void set_started(uint32_t cached_tokens);
  void append(const std::string& text, uint32_t completion_tokens);
  void tick();  // a step ran
  void end(FinishReason reason, std::string error = {}, int error_status = 0);

 private:
  const JobSpec spec_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::string text_;
  bool started_ = false;
  bool cancelled_ = false;
  std::function<bool()> client_gone_;
  uint64_t ticks_ = 0, ticks_seen_ = 0;
  std::optional<FinishReason> finish_;
  std::string error_;
  int error_status_ = 0;
  Usage usage_;
};

// Makes a working generator again after a step failed (the GPU device lost, say): a new device, the model's
// weights, an empty KV cache, with the same slots and context. Throws when it cannot; the scheduler tries
// again later. The previous generator is never called again once this is.
using Recover = std::function<runtime::Generator&()>;

struct SchedulerStats {
  uint32_t slots = 0;
  uint32_t active = 0;
  uint32_t queued = 0;
  uint64_t requests_finished = 0;
  uint64_t prompt_tokens = 0;
  uint64_t cached_tokens = 0;
  uint64_t generated_tokens = 0;
  uint64_t steps = 0;
  double step_seconds = 0;       // wall time inside the generator's steps (record, submit, wait)
  double tokens_per_second = 0;  // generated tokens per second of stepping over the last 10 s
  bool degraded = false;         // the generator failed (e.g. the device was lost), not yet recovered
  std::string degraded_reason;
  uint64_t recoveries = 0;  // generators made again after a failure
};

class Scheduler {
 public:
  // `queue_limit`: requests that may wait for a slot; more get 429 (submit throws ApiError). Without
  // `recover`, a failed step leaves the server degraded until a step succeeds again, and a generator that
  // says it is broken (Generator::broken: a mesh that lost a stage) leaves it degraded for good, refusing
  // requests with 503.
  Scheduler(runtime::Generator& generator, const tokenizer::Tokenizer& tokenizer, uint32_t queue_limit,
            Recover recover = {});
  ~Scheduler();  // ends every job and stops the thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a job (see Job::watch); throws ApiError 429 when the queue is full, 503 once stopped, while
  // the generator cannot be made again, or once it is broken.
  std::shared_ptr<Job> submit(std::shared_ptr<Job> job);
  // Ends every job (503) and refuses new ones; the generator is not stepped again.
  void stop();
  SchedulerStats stats() const;
  uint32_t context_size() const { return context_size_; }

 private:
  struct Active {
    std::shared_ptr<Job> job;
    tokenizer::StreamDecoder decoder;
    StopMatcher stop;
    uint32_t generated = 0;
    bool text_done = false;  // a stop sequence ended the text
  };
  void run();
  void admit(std::shared_ptr<Job> job);
  void on_token(Active& a, const runtime::Generator::Sampled& s);
  void end(uint32_t slot, FinishReason reason);
  void fail_all(const std::string& message);
  // After a failed step: makes the generator again, retrying with a growing pause until it works or the
  // server stops. Returns false when the server is stopping.
  bool recover(const std::string& failure);
  void fail_queue(int status, const std::string& message);
  // Without `recover`: why the generator is broken for good, if it is; then the server is degraded and
  // unavailable, and the queued jobs end (503).
  std::optional<std::string> broken();

  runtime::Generator* generator_;
  const Recover recover_;
  const tokenizer::Tokenizer& tokenizer_;
  const uint32_t queue_limit_;
  const uint32_t slots_;
  const uint32_t context_size_;

  mutable std::mutex mutex_;  // guards everything below but active_ (scheduler thread only)
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  // Set while the generator cannot generate (it could not be made again, or it is broken): submit() refuses.
  std::string unavailable_;
  SchedulerStats stats_;
  struct StepRecord {
    std::chrono::steady_clock::time_point at;
    double seconds;
    uint32_t tokens;
  };
  std::deque<StepRecord> recent_;  // steps of the last 10 s, for tokens_per_second

  std::map<uint32_t, Active> active_;  // by slot
  std::thread thread_;
};

}  // namespace wgllm::server
