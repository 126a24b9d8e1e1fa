#include "server/scheduler.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

#include "core/error.hpp"
#include "server/api_error.hpp"

namespace wgllm::server {

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::Error:
      return "error";
  }
  return "stop";
}

Job::Progress Job::take(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return !text_.empty() || finish_ || ticks_ != ticks_seen_; });
  ticks_seen_ = ticks_;
  Progress p;
  p.text = std::exchange(text_, {});
  p.started = started_;
  p.finish = finish_;
  p.error = error_;
  p.error_status = error_status_;
  p.usage = usage_;
  return p;
}

void Job::watch(std::function<bool()> client_gone) {
  std::lock_guard lock(mutex_);
  client_gone_ = std::move(client_gone);
}

void Job::cancel() {
  std::lock_guard lock(mutex_);
  cancelled_ = true;
  client_gone_ = nullptr;
}

bool Job::cancelled() {
  std::lock_guard lock(mutex_);
  if (!cancelled_ && client_gone_ && client_gone_()) cancelled_ = true;
  return cancelled_;
}

void Job::set_started(uint32_t cached_tokens) {
  std::lock_guard lock(mutex_);
  started_ = true;
  usage_.prompt_tokens = static_cast<uint32_t>(spec_.prompt.size());
  usage_.cached_tokens = cached_tokens;
  cv_.notify_all();
}

void Job::append(const std::string& text, uint32_t completion_tokens) {
  std::lock_guard lock(mutex_);
  text_ += text;
  usage_.completion_tokens = completion_tokens;
  if (!text.empty()) cv_.notify_all();
}

void Job::tick() {
  std::lock_guard lock(mutex_);
  ++ticks_;
  cv_.notify_all();
}

void Job::end(FinishReason reason, std::string error, int error_status) {
  std::lock_guard lock(mutex_);
  if (finish_) return;
  finish_ = reason;
  error_ = std::move(error);
  error_status_ = error_status;
  cv_.notify_all();
}

Scheduler::Scheduler(runtime::Generator& generator, const tokenizer::Tokenizer& tokenizer,
                     uint32_t queue_limit, Recover recover)
    : generator_(&generator),
      recover_(std::move(recover)),
      tokenizer_(tokenizer),
      queue_limit_(queue_limit),
      slots_(generator.slots()),
      context_size_(generator.context_size()) {
  stats_.slots = slots_;
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  stop();
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<Job> Scheduler::submit(std::shared_ptr<Job> job) {
  std::lock_guard lock(mutex_);
  if (stopping_) throw ApiError(503, "server_error", "the server is shutting down");
  if (!unavailable_.empty()) throw ApiError(503, "server_error", unavailable_);
  if (queue_.size() + stats_.active >= size_t(slots_) + queue_limit_)
    throw ApiError(429, "rate_limit_error",
                   "the server is busy: all " + std::to_string(slots_) + " slots are generating and " +
                       std::to_string(queue_.size()) + " requests are waiting (--queue " +
                       std::to_string(queue_limit_) + "); retry later",
                   "", "server_busy");
  queue_.push_back(job);
  stats_.queued = static_cast<uint32_t>(queue_.size());
  cv_.notify_all();
  return job;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(mutex_);
  SchedulerStats s = stats_;
  double seconds = 0, tokens = 0;
  auto horizon = std::chrono::steady_clock::now() - std::chrono::seconds(10);
  for (const StepRecord& r : recent_) {
    if (r.at < horizon) continue;
    seconds += r.seconds;
    tokens += r.tokens;
  }
  s.tokens_per_second = seconds > 0 ? tokens / seconds : 0;
  return s;
}

void Scheduler::run() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> admitted;
    {
      std::unique_lock lock(mutex_);
      // While idle the loop still comes round to ask whether the generator broke (a mesh's stage lost
      // between requests), so that /health says so before any request fails.
      if (!cv_.wait_for(lock, std::chrono::milliseconds(250),
                        [&] { return stopping_ || !queue_.empty() || !active_.empty(); })) {
        lock.unlock();
        broken();
        continue;
      }
      if (stopping_) break;
      while (!queue_.empty() && active_.size() + admitted.size() < slots_) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.queued = static_cast<uint32_t>(queue_.size());
      stats_.active = static_cast<uint32_t>(active_.size() + admitted.size());
    }
    for (auto& job : admitted) admit(std::move(job));

    // Sequences whose clients are gone leave before the step, so they cost at most the step that was
    // running when the client went.
    for (auto it = active_.begin(); it != active_.end();) {
      auto next = std::next(it);
      if (it->second.job->cancelled()) end(it->first, FinishReason::Stop);
      it = next;
    }
    {
      std::lock_guard lock(mutex_);
      stats_.active = static_cast<uint32_t>(active_.size());
      // Queued jobs whose clients left never take a slot.
      std::erase_if(queue_, [](const std::shared_ptr<Job>& j) { return j->cancelled(); });
      stats_.queued = static_cast<uint32_t>(queue_.size());
    }
    if (active_.empty()) continue;

    auto t0 = std::chrono::steady_clock::now();
    std::vector<runtime::Generator::Sampled> sampled;
    try {
      sampled = generator_->step();
    } catch (const std::exception& e) {
      const std::string failure = std::string("generation failed: ") + e.what();
      fail_all(failure);
      if (recover_ && !recover(failure)) break;
      continue;
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    {
      // Counted before any client hears of these tokens.
      std::lock_guard lock(mutex_);
      ++stats_.steps;
      stats_.step_seconds += seconds;
      stats_.generated_tokens += sampled.size();
      stats_.degraded = false;
      stats_.degraded_reason.clear();
      recent_.push_back({t0, seconds, static_cast<uint32_t>(sampled.size())});
      while (!recent_.empty() && recent_.front().at < t0 - std::chrono::seconds(10)) recent_.pop_front();
    }
    for (const auto& s : sampled) {
      auto it = active_.find(s.slot);
      if (it != active_.end()) on_token(it->second, s);
    }
    for (auto& [slot, a] : active_) a.job->tick();
  }
  // Shutting down: nobody will step these any more.
  for (auto& [slot, a] : active_) {
    a.job->end(FinishReason::Error, "the server is shutting down", 503);
    generator_->finish(slot);
  }
  active_.clear();
  std::lock_guard lock(mutex_);
  stats_.active = 0;
  for (auto& job : queue_) job->end(FinishReason::Error, "the server is shutting down", 503);
  queue_.clear();
}

void Scheduler::admit(std::shared_ptr<Job> job) {
  if (job->cancelled()) return;
  if (std::optional<std::string> why = broken()) {
    job->end(FinishReason::Error, *why, 503);
    return;
  }
  std::optional<runtime::Generator::Started> started;
  try {
    started = generator_->start(job->spec().prompt, job->spec().sampling);
  } catch (const Error& e) {
    job->end(FinishReason::Error, e.what(), e.kind() == ErrorKind::BadInput ? 400 : 500);
    return;
  } catch (const std::exception& e) {
    job->end(FinishReason::Error, e.what(), 500);
    return;
  }
  if (!started) {  // cannot happen while this thread counts the slots; say so rather than lose the job
    job->end(FinishReason::Error, "no free slot although the scheduler counted one", 500);
    return;
  }
  job->set_started(started->cached_tokens);
  Active a{job, tokenizer::StreamDecoder(tokenizer_, job->spec().strip_leading_space),
           StopMatcher(job->spec().stop)};
  active_.emplace(started->slot, std::move(a));
  std::lock_guard lock(mutex_);
  stats_.active = static_cast<uint32_t>(active_.size());
  stats_.prompt_tokens += job->spec().prompt.size();
  stats_.cached_tokens += started->cached_tokens;
}

void Scheduler::on_token(Active& a, const runtime::Generator::Sampled& s) {
  if (tokenizer_.is_eog(s.token)) {
    end(s.slot, FinishReason::Stop);
    return;
  }
  ++a.generated;
  StopMatcher::Result r = a.stop.push(a.decoder.push(s.token));
  a.job->append(r.text, a.generated);
  if (r.stopped) {
    a.text_done = true;
    end(s.slot, FinishReason::Stop);
  } else if (a.generated >= a.job->spec().max_tokens || s.context_full)
    end(s.slot, FinishReason::Length);
}

void Scheduler::end(uint32_t slot, FinishReason reason) {
  auto it = active_.find(slot);
  Active& a = it->second;
  // Text held back (an unfinished character, a possible stop sequence) is final now, unless a stop
  // sequence already ended the text.
  if (!a.text_done) {
    StopMatcher::Result r = a.stop.push(a.decoder.flush());
    if (!r.stopped) {
      StopMatcher::Result rest = a.stop.flush();
      r.text += rest.text;
      r.stopped = rest.stopped;
    }
    a.job->append(r.text, a.generated);
    if (r.stopped) reason = FinishReason::Stop;
  }
  std::shared_ptr<Job> job = std::move(a.job);
  active_.erase(it);
  generator_->finish(slot);
  {
    // Counted free before the client hears of the end, so its next request finds the slot.
    std::lock_guard lock(mutex_);
    ++stats_.requests_finished;
    stats_.active = static_cast<uint32_t>(active_.size());
  }
  job->end(reason);
}

void Scheduler::fail_all(const std::string& message) {
  for (auto& [slot, a] : active_) {
    a.job->end(FinishReason::Error, message, 500);
    try {
      generator_->finish(slot);
    } catch (const std::exception&) {
      // The generator is already broken; the slot is gone with it.
    }
  }
  active_.clear();
  std::lock_guard lock(mutex_);
  stats_.active = 0;
  stats_.degraded = true;
  stats_.degraded_reason = message;
}

bool Scheduler::recover(const std::string& failure) {
  std::fprintf(stderr, "wgllm: %s; making the generator (device, weights, KV cache) again\n",
               failure.c_str());
  const auto t0 = std::chrono::steady_clock::now();
  std::string last_failure = failure;  // /health keeps saying it while the next attempt runs
  for (int attempt = 1;; ++attempt) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return false;
      stats_.degraded_reason =
          last_failure + "; making the generator again (attempt " + std::to_string(attempt) + ")";
    }
    std::string error;
    try {
      runtime::Generator& g = recover_();
      if (g.slots() != slots_ || g.context_size() != context_size_)
        fail_runtime("the new generator has " + std::to_string(g.slots()) + " slots of " +
                     std::to_string(g.context_size()) + " positions, not " + std::to_string(slots_) + " of " +
                     std::to_string(context_size_));
      generator_ = &g;
      std::lock_guard lock(mutex_);
      stats_.degraded = false;
      stats_.degraded_reason.clear();
      unavailable_.clear();
      ++stats_.recoveries;
      std::fprintf(stderr, "wgllm: generating again after %.1f s\n",
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      return true;
    } catch (const std::exception& e) {
      error = e.what();
    }
    // Requests would wait for a generator that may not come back: those queued end, new ones are refused
    // until it does.
    const std::string message =
        "the server cannot generate: " + failure + "; making the generator again failed: " + error;
    std::fprintf(stderr, "wgllm: %s\n", message.c_str());
    fail_queue(503, message);
    std::unique_lock lock(mutex_);
    stats_.degraded_reason = message;
    unavailable_ = message + " (retrying)";
    last_failure = message;
    const auto pause = std::chrono::seconds(std::min(1 << std::min(attempt - 1, 5), 30));
    if (cv_.wait_for(lock, pause, [&] { return stopping_; })) return false;
  }
}

std::optional<std::string> Scheduler::broken() {
  if (recover_) return std::nullopt;  // a failed step makes the generator again
  const std::optional<std::string> why = generator_->broken();
  if (!why) return std::nullopt;
  const std::string message = "the server cannot generate until it is restarted: " + *why;
  bool first = false;
  {
    std::lock_guard lock(mutex_);
    first = unavailable_ != message;
    unavailable_ = message;
    stats_.degraded = true;
    stats_.degraded_reason = message;  // again after a failed step named its own failure
  }
  if (first) std::fprintf(stderr, "wgllm: %s; requests get 503\n", message.c_str());
  fail_queue(503, message);
  return message;
}

void Scheduler::fail_queue(int status, const std::string& message) {
  std::lock_guard lock(mutex_);
  for (auto& job : queue_) job->end(FinishReason::Error, message, status);
  queue_.clear();
  stats_.queued = 0;
}

}  // namespace wgllm::server
