#include "mesh/pipeline.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "mesh/backoff.hpp"
#include "runtime/prompt_checks.hpp"
#include "runtime/slot_choice.hpp"

namespace wgllm::mesh {

namespace {

constexpr uint32_t kMaxWidth = runtime::Forward::kMaxWidth;

uint32_t round_up(uint32_t v, uint32_t a) {
  return (v + a - 1) / a * a;
}

}  // namespace

Pipeline::Pipeline(Stages& stages, const runtime::Forward& first, const PipelineOptions& options)
    : stages_(stages),
      options_(options),
      n_ctx_(first.n_ctx()),
      n_vocab_(first.config().n_vocab),
      max_batch_(first.max_batch()),
      max_logits_(first.max_logits()),
      slots_(first.n_seq()) {}

bool Pipeline::busy() const {
  return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.state != State::Free; });
}

std::optional<std::string> Pipeline::broken() const {
  std::optional<std::string> fault = stages_.fault();
  if (fault) return "the mesh lost a stage: " + *fault;
  return std::nullopt;
}

std::optional<runtime::Generator::Started> Pipeline::start(std::span<const int32_t> prompt,
                                                           const runtime::SamplingParams& sampling) {
  runtime::check_prompt(prompt, n_ctx_, n_vocab_);
  std::vector<runtime::SlotCandidate> candidates;
  for (const Slot& c : slots_) candidates.push_back({c.state == State::Free, c.cached, c.order});
  const std::optional<runtime::SlotChoice> choice = runtime::choose_slot(candidates, prompt);
  if (!choice) return std::nullopt;
  const uint32_t slot = choice->slot, reused = choice->reused;
  Slot& s = slots_[slot];
  s.state = State::Prefilling;
  s.cached.resize(reused);
  s.prompt.assign(prompt.begin(), prompt.end());
  s.sampling = sampling;
  s.sampled = 0;
  s.order = ++clock_;
  ++s.epoch;
  s.resumed_at = reused;
  s.waiting = false;
  s.history_sent = false;
  const uint32_t stages = stages_.count();
  if (options_.micro_batch)
    s.micro_batch = std::min(options_.micro_batch, max_batch_);
  else if (stages == 1)
    s.micro_batch = max_batch_;
  else {
    const uint32_t chunk = std::min<uint32_t>(max_batch_, static_cast<uint32_t>(prompt.size()) - reused);
    s.micro_batch =
        std::min(max_batch_, std::max(32u, round_up((chunk + 2 * stages - 1) / (2 * stages), 16)));
  }
  return Started{slot, reused};
}

void Pipeline::finish(uint32_t slot) {
  if (slot >= slots_.size()) fail_input("slot " + std::to_string(slot) + " does not exist");
  Slot& s = slots_[slot];
  s.state = State::Free;
  s.prompt.clear();
  s.order = ++clock_;
  ++s.epoch;
  s.waiting = false;
}

uint32_t Pipeline::piece_end(const Slot& s) const {
  const auto begin = static_cast<uint32_t>(s.cached.size());
  const auto size = static_cast<uint32_t>(s.prompt.size());
  // The chunk one device would run this token in: max_batch tokens at a time from where the prompt resumed.
  const uint32_t chunk_begin = s.resumed_at + (begin - s.resumed_at) / max_batch_ * max_batch_;
  const uint32_t chunk_end = std::min(chunk_begin + max_batch_, size);
  const uint32_t rest = chunk_end - begin;
  // A chunk of at most 16 tokens runs the GEMV on one device too; a larger one its GEMM, which a piece of
  // more than 16 tokens also takes: a short tail joins the piece before it.
  if (chunk_end - chunk_begin <= kMaxWidth || rest <= s.micro_batch) return chunk_end;
  if (s.micro_batch > kMaxWidth && rest - s.micro_batch <= kMaxWidth) return chunk_end;
  return begin + s.micro_batch;
}

void Pipeline::send(Pass pass, std::vector<Row> rows, bool logits) {
  pass.id = next_id_++;
  ++stats_.passes;
  stats_.tokens += pass.tokens.size();
  flight_.push_back({pass.id, std::move(rows), logits});
  stats_.most_in_flight = std::max(stats_.most_in_flight, static_cast<uint32_t>(flight_.size()));
  stages_.push(std::move(pass));
}

bool Pipeline::send_prompt() {
  Slot* s = nullptr;
  for (Slot& c : slots_)
    if (c.state == State::Prefilling && c.cached.size() < c.prompt.size() && (!s || c.order < s->order))
      s = &c;
  if (!s) return false;
  const auto slot = static_cast<uint32_t>(s - slots_.data());
  const auto begin = static_cast<uint32_t>(s->cached.size());
  const uint32_t end = piece_end(*s);
  const bool completes = end == s->prompt.size();
  Pass pass;
  for (uint32_t p = begin; p < end; ++p)
    pass.tokens.push_back({slot, p, s->prompt[p], completes && p + 1 == end});
  std::vector<Row> rows;
  if (completes) {
    pass.sampling.push_back({s->sampling, 0});
    rows.push_back({slot, s->epoch, RowKind::Prompt});
    s->waiting = true;
  }
  if (!s->history_sent) {
    pass.histories.push_back({slot, s->prompt});
    s->history_sent = true;
  }
  s->cached.insert(s->cached.end(), s->prompt.begin() + begin, s->prompt.begin() + end);
  send(std::move(pass), std::move(rows), false);
  prefer_decode_ = true;
  return true;
}

bool Pipeline::send_decode() {
  uint32_t decoding = 0, ready = 0;
  for (const Slot& s : slots_) {
    decoding += s.state == State::Decoding ? 1 : 0;
    ready += s.state == State::Decoding && !s.waiting ? 1 : 0;
  }
  const uint32_t stages = stages_.count();
  const uint32_t group = (decoding + stages - 1) / stages;
  const auto groups_on_their_way = static_cast<uint32_t>(
      std::count_if(flight_.begin(), flight_.end(), [](const InFlight& f) { return f.decode; }));
  // Fewer than a group ready while every stage has a group: wait for the next to come back and join it, so
  // that sequences which finished their prompts one by one end up in whole groups.
  if (ready == 0 || (ready < group && groups_on_their_way >= stages)) return false;
  Pass pass;
  std::vector<Row> rows;
  for (uint32_t i = 0; i < slots_.size() && rows.size() < group; ++i) {
    Slot& s = slots_[i];
    if (s.state != State::Decoding || s.waiting) continue;
    const auto pos = static_cast<uint32_t>(s.cached.size());
    if (pos >= n_ctx_)
      fail_input("slot " + std::to_string(i) + " has filled its context of " + std::to_string(n_ctx_) +
                 " tokens: finish it");
    pass.tokens.push_back({i, pos, s.last, true});
    pass.sampling.push_back({s.sampling, s.sampled});
    rows.push_back({i, s.epoch, RowKind::Decode});
    s.cached.push_back(s.last);
    s.waiting = true;
  }
  send(std::move(pass), std::move(rows), false);
  flight_.back().decode = true;
  prefer_decode_ = false;
  return true;
}

void Pipeline::fill() {
  while (flight_.size() < max_in_flight()) {
    const bool sent = prefer_decode_ ? send_decode() || send_prompt() : send_prompt() || send_decode();
    if (!sent) break;
  }
}

Result Pipeline::wait() {
  Backoff backoff(options_.spin_us);
  for (;;) {
    if (std::optional<Result> r = stages_.poll()) return std::move(*r);
    backoff.idle();
  }
}

void Pipeline::take(const Result& result, std::vector<Sampled>& out) {
  if (flight_.empty() || result.id != flight_.front().id)
    fail_runtime("mesh: a result for pass " + std::to_string(result.id) + " came back, expected " +
                 (flight_.empty() ? std::string("none") : "pass " + std::to_string(flight_.front().id)));
  const InFlight f = std::move(flight_.front());
  flight_.pop_front();
  if (f.logits) {
    if (result.kind != Result::kLogits) fail_runtime("mesh: a logits pass came back without logits");
    logits_.insert(logits_.end(), result.logits.begin(), result.logits.end());
    return;
  }
  if (result.kind != Result::kIds || result.ids.size() != f.rows.size())
    fail_runtime("mesh: pass " + std::to_string(result.id) + " came back with " +
                 std::to_string(result.ids.size()) + " ids for " + std::to_string(f.rows.size()) +
                 " sampling rows");
  for (size_t i = 0; i < f.rows.size(); ++i) {
    const Row& row = f.rows[i];
    Slot& s = slots_[row.slot];
    if (s.epoch != row.epoch) continue;  // finished while the pass was on its way
    s.waiting = false;
    s.last = result.ids[i];
    if (row.kind == RowKind::Prompt) {
      s.state = State::Decoding;
      s.prompt.clear();
      s.sampled = 1;
    } else {
      ++s.sampled;
    }
    out.push_back({row.slot, s.last, s.cached.size() >= n_ctx_});
  }
}

std::vector<runtime::Generator::Sampled> Pipeline::step() {
  fill();
  std::vector<Sampled> out;
  if (flight_.empty()) return out;
  take(wait(), out);
  while (!flight_.empty())
    if (std::optional<Result> r = stages_.poll())
      take(*r, out);
    else
      break;
  return out;
}

void Pipeline::drain() {
  std::vector<Sampled> dropped;
  while (!flight_.empty()) take(wait(), dropped);
}

std::vector<std::vector<float>> Pipeline::logits(std::span<const int32_t> tokens) {
  if (busy()) fail_runtime("mesh: logits need an idle pipeline");
  if (tokens.empty()) fail_input("no tokens to compute logits for");
  if (tokens.size() > n_ctx_)
    fail_input(std::to_string(tokens.size()) + " tokens do not fit the context of " + std::to_string(n_ctx_));
  runtime::check_token_ids(tokens, n_vocab_);
  drain();
  Slot& s = slots_[0];
  ++s.epoch;
  s.cached.clear();
  logits_.clear();
  const uint32_t per_pass = std::min({max_logits_, kMaxWidth, max_batch_});
  std::vector<Sampled> none;
  for (size_t next = 0; next < tokens.size() || !flight_.empty();) {
    if (next < tokens.size() && flight_.size() < max_in_flight()) {
      Pass pass;
      const size_t end = std::min(tokens.size(), next + per_pass);
      for (size_t p = next; p < end; ++p)
        pass.tokens.push_back({0, static_cast<uint32_t>(p), tokens[p], true});
      next = end;
      send(std::move(pass), {}, true);
      continue;
    }
    take(wait(), none);
  }
  s.cached.assign(tokens.begin(), tokens.end());
  s.order = ++clock_;
  std::vector<std::vector<float>> out(tokens.size(), std::vector<float>(n_vocab_));
  if (logits_.size() != tokens.size() * size_t(n_vocab_) * 4)
    fail_runtime("mesh: " + std::to_string(logits_.size()) + " bytes of logits came back for " +
                 std::to_string(tokens.size()) + " tokens");
  for (size_t p = 0; p < tokens.size(); ++p)
    std::memcpy(out[p].data(), logits_.data() + p * n_vocab_ * 4, size_t(n_vocab_) * 4);
  logits_.clear();
  return out;
}

}  // namespace wgllm::mesh
