#include "mesh/protocol.hpp"

#include <cstring>
#include <string>

#include "core/error.hpp"

namespace wgllm::mesh {

namespace {

static_assert(sizeof(runtime::SamplingParams) + 4 == kRowBytes, "a sampling row is SamplingParams + index");
static_assert(sizeof(runtime::GpuToken) == kTokenBytes);

class Writer {
 public:
  explicit Writer(size_t size) { bytes_.reserve(size); }
  void u32(uint32_t v) { raw(&v, 4); }
  void raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const std::string& from, const char* what)
      : bytes_(bytes), from_(from), what_(what) {}
  uint32_t u32() {
    uint32_t v;
    raw(&v, 4);
    return v;
  }
  void raw(void* p, size_t n) {
    need(n);
    std::memcpy(p, bytes_.data() + at_, n);
    at_ += n;
  }
  void need(size_t n) const {
    if (bytes_.size() - at_ < n) fail("it ends early (" + std::to_string(bytes_.size()) + " bytes)");
  }
  void finish() const {
    if (at_ != bytes_.size()) fail(std::to_string(bytes_.size() - at_) + " bytes follow its end");
  }
  [[noreturn]] void fail(const std::string& why) const {
    fail_runtime("mesh: a malformed " + std::string(what_) + " from " + from_ + ": " + why);
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t at_ = 0;
  const std::string& from_;
  const char* what_;
};

}  // namespace

uint32_t Pass::rows() const {
  uint32_t n = 0;
  for (const runtime::PassToken& t : tokens) n += t.logits ? 1 : 0;
  return n;
}

std::vector<uint8_t> encode(const Pass& pass) {
  size_t history_tokens = 0;
  for (const History& h : pass.histories) history_tokens += h.tokens.size();
  Writer w(kPassHeaderBytes + pass.tokens.size() * kTokenBytes + pass.sampling.size() * kRowBytes +
           pass.histories.size() * kHistoryHeaderBytes + history_tokens * 4 + pass.hidden.size());
  w.u32(pass.kind);
  w.u32(pass.id);
  w.u32(static_cast<uint32_t>(pass.tokens.size()));
  w.u32(static_cast<uint32_t>(pass.sampling.size()));
  w.u32(static_cast<uint32_t>(pass.histories.size()));
  w.u32(static_cast<uint32_t>(history_tokens));
  w.u32(static_cast<uint32_t>(pass.hidden.size()));
  w.u32(0);
  for (const runtime::PassToken& t : pass.tokens) {
    w.u32(t.slot);
    w.u32(t.pos);
    w.u32(static_cast<uint32_t>(t.id));
    w.u32(t.logits ? 1 : 0);
  }
  for (const runtime::RowSampling& r : pass.sampling) {
    w.raw(&r.params, sizeof r.params);
    w.u32(r.sample_index);
  }
  for (const History& h : pass.histories) {
    w.u32(h.slot);
    w.u32(static_cast<uint32_t>(h.tokens.size()));
    w.raw(h.tokens.data(), h.tokens.size() * 4);
  }
  w.raw(pass.hidden.data(), pass.hidden.size());
  return w.take();
}

Pass decode_pass(std::span<const uint8_t> bytes, const std::string& from) {
  Reader r(bytes, from, "pass");
  Pass p;
  const uint32_t kind = r.u32();
  if (kind != Pass::kRun && kind != Pass::kShutdown) r.fail("unknown kind " + std::to_string(kind));
  p.kind = static_cast<Pass::Kind>(kind);
  p.id = r.u32();
  const uint32_t n_tokens = r.u32(), n_rows = r.u32(), n_histories = r.u32(), history_tokens = r.u32(),
                 hidden_bytes = r.u32();
  r.u32();
  // Counts are checked against the bytes present before anything is allocated for them.
  r.need(size_t(n_tokens) * kTokenBytes + size_t(n_rows) * kRowBytes +
         size_t(n_histories) * kHistoryHeaderBytes + size_t(history_tokens) * 4 + hidden_bytes);
  p.tokens.resize(n_tokens);
  for (runtime::PassToken& t : p.tokens) {
    t.slot = r.u32();
    t.pos = r.u32();
    t.id = static_cast<int32_t>(r.u32());
    t.logits = r.u32() != 0;
  }
  p.sampling.resize(n_rows);
  for (runtime::RowSampling& s : p.sampling) {
    r.raw(&s.params, sizeof s.params);
    s.sample_index = r.u32();
  }
  if (n_rows != 0 && n_rows != p.rows())
    r.fail(std::to_string(n_rows) + " sampling rows for " + std::to_string(p.rows()) + " logits rows");
  size_t seen = 0;
  p.histories.resize(n_histories);
  for (History& h : p.histories) {
    h.slot = r.u32();
    const uint32_t n = r.u32();
    if (n > history_tokens - seen) r.fail("its histories hold more tokens than its header says");
    seen += n;
    h.tokens.resize(n);
    r.raw(h.tokens.data(), size_t(n) * 4);
  }
  if (seen != history_tokens) r.fail("its histories hold fewer tokens than its header says");
  p.hidden.resize(hidden_bytes);
  r.raw(p.hidden.data(), hidden_bytes);
  r.finish();
  return p;
}

std::vector<uint8_t> encode(const Result& result) {
  Writer w(kResultHeaderBytes + result.ids.size() * 4 + result.logits.size());
  w.u32(result.kind);
  w.u32(result.id);
  w.u32(static_cast<uint32_t>(result.ids.size()));
  w.u32(static_cast<uint32_t>(result.logits.size()));
  w.raw(result.ids.data(), result.ids.size() * 4);
  w.raw(result.logits.data(), result.logits.size());
  return w.take();
}

Result decode_result(std::span<const uint8_t> bytes, const std::string& from) {
  Reader r(bytes, from, "result");
  Result res;
  const uint32_t kind = r.u32();
  if (kind != Result::kIds && kind != Result::kLogits && kind != Result::kShutdown)
    r.fail("unknown kind " + std::to_string(kind));
  res.kind = static_cast<Result::Kind>(kind);
  res.id = r.u32();
  const uint32_t n_ids = r.u32(), logits_bytes = r.u32();
  r.need(size_t(n_ids) * 4 + logits_bytes);
  res.ids.resize(n_ids);
  r.raw(res.ids.data(), size_t(n_ids) * 4);
  res.logits.resize(logits_bytes);
  r.raw(res.logits.data(), logits_bytes);
  r.finish();
  return res;
}

}  // namespace wgllm::mesh
