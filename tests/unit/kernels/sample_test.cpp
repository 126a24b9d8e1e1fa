// sample.wgsl against the sampling rules it implements (llama.cpp's order: penalties -> top-k -> top-p ->
// min-p -> temperature -> draw), evaluated here on the CPU in float64: greedy picks the lowest id among
// equal maxima; the penalties rewrite each distinct recent token's logit once (repetition as llama.cpp,
// presence and frequency as OpenAI); random draws stay in the kept set and follow softmax(logits / T) over
// it; the sampled id lands in sampled[slot] and the slot's history ring, and nothing of other slots changes.
// Many rows sample in one dispatch, each with its own settings, as each would alone.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "core/error.hpp"
#include "kernel_harness.hpp"
#include "kernels/sample.hpp"

namespace wgllm::kernels_test {
namespace {

constexpr uint32_t kCandidateCap = kernels::kSampleCandidates;  // with top-k off, the nucleus's upper bound

// The ring as runtime/forward.cpp writes it: tokens[i] at slot i % len, then the count of all tokens.
std::vector<uint32_t> history_ring(const std::vector<uint32_t>& tokens, uint32_t len) {
  std::vector<uint32_t> ring(len + 1, 0xDEADBEEFu);  // [len] ring, [len] = count
  for (size_t i = tokens.size() > len ? tokens.size() - len : 0; i < tokens.size(); ++i)
    ring[i % len] = tokens[i];
  ring[len] = static_cast<uint32_t>(tokens.size());
  return ring;
}

// llama.cpp's penalties: each distinct token among the last min(penalty_last_n, ring length) tokens, seen n
// times there, has its logit divided by the repetition penalty when positive, multiplied otherwise, then
// lowered by presence + n * frequency, once.
std::vector<float> penalised(std::vector<float> logits, const std::vector<uint32_t>& tokens,
                             uint32_t ring_len, const runtime::GpuRow& p) {
  const size_t n = std::min<size_t>({tokens.size(), ring_len, p.penalty_last_n});
  std::map<uint32_t, int> seen;
  for (auto it = tokens.end() - n; it != tokens.end(); ++it) ++seen[*it];
  for (auto [id, count] : seen) {
    float l = logits[id];
    if (p.repeat_penalty != 1.0f) l = l > 0 ? l / p.repeat_penalty : l * p.repeat_penalty;
    logits[id] = l - (float(count) * p.frequency_penalty + p.presence_penalty);
  }
  return logits;
}

// Ids by logit descending, id ascending (the order in which ties are broken).
std::vector<uint32_t> ranked(const std::vector<float>& logits) {
  std::vector<uint32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0u);
  std::stable_sort(ids.begin(), ids.end(), [&](uint32_t a, uint32_t b) { return logits[a] > logits[b]; });
  return ids;
}

struct Distribution {
  std::vector<uint32_t> ids;  // the kept candidates, most likely first
  std::vector<double> p;      // their probabilities after temperature
};

// The distribution a draw follows, in float64: top-k, then top-p (the smallest prefix whose untempered
// probability reaches top_p), then min-p (p >= min_p * p_max), then softmax(logit / T) over what is left.
Distribution expected_distribution(const std::vector<float>& logits, const runtime::GpuRow& s) {
  std::vector<uint32_t> order = ranked(logits);
  size_t k = s.top_k > 0 ? std::min(s.top_k, kCandidateCap) : kCandidateCap;
  k = std::min(k, order.size());
  order.resize(k);
  const double top = logits[order[0]];
  auto weight = [&](uint32_t id, double t) { return std::exp((logits[id] - top) / t); };
  size_t keep = k;
  if (s.top_p < 1.0f) {
    double z = 0, cum = 0;
    for (uint32_t id : order) z += weight(id, 1.0);
    for (size_t i = 0; i < k; ++i) {
      cum += weight(order[i], 1.0) / z;
      if (cum >= s.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (s.min_p > 0.0f) {
    size_t n = 1;
    while (n < keep && weight(order[n], 1.0) >= s.min_p) ++n;
    keep = n;
  }
  Distribution d;
  d.ids.assign(order.begin(), order.begin() + keep);
  double z = 0;
  for (uint32_t id : d.ids) z += weight(id, s.temperature);
  for (uint32_t id : d.ids) d.p.push_back(weight(id, s.temperature) / z);
  return d;
}

class Sample : public KernelVariantTest {
 protected:
  static constexpr uint32_t kRing = 16;  // HISTORY: small, so that the tests wrap it

  // Records the sampler's two dispatches over `n_rows` rows of `vocab` logits, in parts of `part` logits
  // (0: the runtime's choice).
  void sample(gpu::Buffer rows, gpu::Buffer logits, gpu::Buffer history, gpu::Buffer sampled, uint32_t n_rows,
              uint32_t vocab, uint32_t part = 0) {
    const kernels::SampleKernels s = kernels::sample_kernels(vocab, kRing, part);
    gpu::Buffer partials = device().buffer(s.partials_bytes(n_rows), gpu::kStorage, "sampler partials");
    dispatch("sample", variant(s.reduce), {{rows}, {logits}, {history}, {partials}}, n_rows, s.parts);
    dispatch("sample", variant(s.merge), {{rows}, {partials}, {history}, {sampled}}, n_rows);
  }

  struct Result {
    uint32_t token;
    std::vector<float> logits;      // after the kernel (the penalties rewrite them in place)
    std::vector<uint32_t> history;  // the ring after the kernel
  };

  static constexpr uint32_t kSlots = 3;  // one row samples for slot 1; the others must stay untouched
  static constexpr uint32_t kUntouched = 0xDEADBEEFu;

  // One sampling step over `logits` for slot 1, with `tokens` as its generated history.
  Result run(const std::vector<float>& logits, const std::vector<uint32_t>& tokens, runtime::GpuRow step,
             uint32_t part = 0) {
    step.slot = 1;
    gpu::Buffer logits_buf = upload(logits, "logits");
    std::vector<uint32_t> rings(kSlots * (kRing + 1), kUntouched);  // [slots][ring, count]
    const std::vector<uint32_t> ring = history_ring(tokens, kRing);
    std::copy(ring.begin(), ring.end(), rings.begin() + (kRing + 1));
    gpu::Buffer history = upload(rings, "history");
    gpu::Buffer sampled = upload(std::vector<uint32_t>(kSlots, kUntouched), "sampled");
    sample(upload(std::vector<runtime::GpuRow>{step}, "rows"), logits_buf, history, sampled, 1,
           static_cast<uint32_t>(logits.size()), part);
    const std::vector<uint32_t> ids = download<uint32_t>(sampled, kSlots);
    const std::vector<uint32_t> rings_after = download<uint32_t>(history, rings.size());
    EXPECT_EQ(ids[0], kUntouched);
    EXPECT_EQ(ids[2], kUntouched);
    for (uint32_t i = 0; i < kRing + 1; ++i) {
      EXPECT_EQ(rings_after[i], kUntouched) << "slot 0's history written";
      EXPECT_EQ(rings_after[2 * (kRing + 1) + i], kUntouched) << "slot 2's history written";
    }
    Result r;
    r.token = ids[1];
    r.logits = download<float>(logits_buf, logits.size());
    r.history = {rings_after.begin() + (kRing + 1), rings_after.begin() + 2 * (kRing + 1)};
    return r;
  }

  // One draw per entry of `steps` over the same logits (penalties off: they would compound), in one
  // dispatch of one row per draw, each row its own slot.
  std::vector<uint32_t> draws(const std::vector<float>& logits, std::vector<runtime::GpuRow> steps,
                              uint32_t part = 0) {
    const auto n = static_cast<uint32_t>(steps.size());
    std::vector<float> rows(size_t(n) * logits.size());  // [rows, vocab]
    for (uint32_t i = 0; i < n; ++i) {
      std::copy(logits.begin(), logits.end(), rows.begin() + size_t(i) * logits.size());
      steps[i].token = i;
      steps[i].slot = i;
    }
    std::vector<uint32_t> rings;  // [draws][ring, count]
    for (uint32_t i = 0; i < n; ++i) {
      const std::vector<uint32_t> ring = history_ring({}, kRing);
      rings.insert(rings.end(), ring.begin(), ring.end());
    }
    gpu::Buffer sampled = device().buffer(4 * n, gpu::kStorage, "sampled ids");
    sample(upload(steps, "rows"), upload(rows, "logits"), upload(rings, "history"), sampled, n,
           static_cast<uint32_t>(logits.size()), part);
    return download<uint32_t>(sampled, n);
  }

  // The ring after a step that sampled `id`: written at slot count % len, count incremented, nothing else.
  void expect_history_updated(const std::vector<uint32_t>& tokens, const Result& r) {
    std::vector<uint32_t> want = history_ring(tokens, kRing);
    want[tokens.size() % kRing] = r.token;
    want[kRing] = static_cast<uint32_t>(tokens.size() + 1);
    EXPECT_EQ(r.history, want);
  }
};

// Random logits with the maximum repeated at three random places (ties resolve to the lowest id).
std::vector<float> logits_with_tied_max(uint32_t vocab, float shift, std::mt19937_64& rng) {
  std::normal_distribution<float> dist(shift, 2.f);
  std::vector<float> l(vocab);
  for (float& x : l) x = dist(rng);
  const float max = *std::max_element(l.begin(), l.end()) + 0.5f;
  std::uniform_int_distribution<uint32_t> any(0, vocab - 1);
  for (int i = 0; i < 3; ++i) l[any(rng)] = max;
  return l;
}

std::vector<uint32_t> random_tokens(size_t n, uint32_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<uint32_t> any(0, vocab - 1);
  std::vector<uint32_t> t(n);
  for (uint32_t& x : t) x = any(rng);
  return t;
}

TEST_P(Sample, GreedyIsArgmaxWithLowestIdOnTies) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(700);
  for (uint32_t vocab : {1u, 50u, 300u, 32000u}) {
    for (float shift : {0.f, -100.f}) {  // all-negative logits too: their order keys are flipped
      SCOPED_TRACE("vocab " + std::to_string(vocab) + " shift " + f32(shift));
      std::vector<float> logits = logits_with_tied_max(vocab, shift, rng);
      std::vector<uint32_t> tokens = random_tokens(kRing + 5, vocab, rng);
      runtime::GpuRow step;
      step.temperature = 0;
      step.seed = static_cast<uint32_t>(rng());
      Result r = run(logits, tokens, step);
      EXPECT_EQ(r.token, ranked(logits)[0]);
      EXPECT_EQ(bits_of(r.logits), bits_of(logits)) << "logits changed with the penalty off";
      expect_history_updated(tokens, r);
    }
  }
}

TEST_P(Sample, TopKOneIsGreedyAtAnyTemperature) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(701);
  for (float temperature : {0.5f, 1.f, 5.f}) {
    for (uint32_t vocab : {50u, 300u}) {
      SCOPED_TRACE("vocab " + std::to_string(vocab) + " temperature " + f32(temperature));
      std::vector<float> logits = logits_with_tied_max(vocab, 0.f, rng);
      runtime::GpuRow step;
      step.temperature = temperature;
      step.top_k = 1;
      step.seed = static_cast<uint32_t>(rng());
      step.sample_index = static_cast<uint32_t>(rng());
      std::vector<uint32_t> tokens = random_tokens(3, vocab, rng);
      Result r = run(logits, tokens, step);
      EXPECT_EQ(r.token, ranked(logits)[0]);
      expect_history_updated(tokens, r);
    }
  }
}

// The recent tokens are the likeliest ones, so the penalty usually moves the argmax; the window, the ring
// wrap-around, repeated tokens (penalised once) and negative logits (multiplied) all occur. Every other
// trial cuts the row into parts of 5 logits, so that the recent tokens fall in several parts, each
// penalising its own.
TEST_P(Sample, PenaltiesFollowLlamaCppRule) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(702);
  const uint32_t vocab = 50, recent_ids = 12;
  std::normal_distribution<float> dist(0.f, 1.f);
  std::uniform_real_distribution<float> penalty(1.1f, 3.f);
  int argmax_moved = 0;
  for (int trial = 0; trial < 24; ++trial) {
    std::vector<float> logits(vocab);
    for (uint32_t i = 0; i < vocab; ++i) logits[i] = dist(rng) + (i < recent_ids ? 1.5f : 0.f);
    std::vector<uint32_t> tokens =
        random_tokens(std::uniform_int_distribution<size_t>(0, 3 * kRing)(rng), recent_ids, rng);
    runtime::GpuRow step;
    step.temperature = 0;
    step.repeat_penalty = trial % 6 == 5 ? 0.7f : penalty(rng);  // < 1 raises them (allowed by llama.cpp)
    step.penalty_last_n = std::uniform_int_distribution<uint32_t>(0, 2 * kRing)(rng);
    // OpenAI's presence and frequency penalties alone, with the repetition penalty, or not at all.
    if (trial % 4 == 1) step.repeat_penalty = 1.0f;
    step.presence_penalty = trial % 4 >= 1 && trial % 4 <= 2 ? 0.8f : 0.0f;
    step.frequency_penalty = trial % 4 >= 1 && trial % 4 <= 2 ? 0.3f : 0.0f;
    const uint32_t part = trial % 2 ? 5 : 0;
    SCOPED_TRACE("trial " + std::to_string(trial) + ": " + std::to_string(tokens.size()) +
                 " tokens, last_n " + std::to_string(step.penalty_last_n) + ", penalty " +
                 f32(step.repeat_penalty) + ", presence " + f32(step.presence_penalty) + ", frequency " +
                 f32(step.frequency_penalty) + ", part " + std::to_string(part));
    Result r = run(logits, tokens, step, part);
    std::vector<float> want = penalised(logits, tokens, kRing, step);
    // Division may be off by a few ulps in WGSL; a token penalised twice would be off by a factor or a term.
    for (uint32_t i = 0; i < vocab; ++i)
      EXPECT_NEAR(r.logits[i], want[i], 1e-6 * (std::fabs(want[i]) + std::fabs(logits[i]))) << "logit " << i;
    EXPECT_EQ(r.token, ranked(want)[0]);
    expect_history_updated(tokens, r);
    argmax_moved += ranked(want)[0] != ranked(logits)[0];
  }
  EXPECT_GT(argmax_moved, 3) << "the trials do not exercise the penalty";
}

// Upper tail of chi-square with `df` degrees of freedom at probability ~1e-6 (Wilson-Hilferty).
double chi_square_limit(int df) {
  const double z = 4.75, a = 2.0 / (9.0 * df);
  return df * std::pow(1 - a + z * std::sqrt(a), 3);
}

// Chi-square bins of a distribution over n draws: each candidate of expected count >= 5, the rest pooled.
int chi_square_bins(const Distribution& d, uint32_t n) {
  int bins = 0;
  double pooled = 0;
  for (double p : d.p) {
    if (p * n >= 5)
      ++bins;
    else
      pooled += p * n;
  }
  return bins + (pooled > 0);
}

// Draws with many seeds stay in the kept set and follow its tempered softmax: chi-square over bins of
// expected count >= 5 (the rest pooled). Over one part and over many (a small part size, so that the
// candidates come from parts of every size, the last one shorter).
TEST_P(Sample, DrawsFollowTruncatedTemperedSoftmax) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(703);
  const uint32_t n_draws = 600;
  struct Config {
    float temperature;
    uint32_t top_k;
    float top_p, min_p;
  };
  const Config configs[] = {{0.8f, 5, 1.f, 0.f},      {1.3f, 0, 0.9f, 0.f}, {1.f, 0, 1.f, 0.1f},
                            {0.7f, 12, 0.95f, 0.05f}, {2.f, 0, 1.f, 0.f},   {0.9f, 40, 0.98f, 0.f}};
  struct Shape {
    uint32_t vocab, part;
  };
  std::normal_distribution<float> dist(0.f, 1.5f);
  for (const Shape shape : {Shape{50, 0}, Shape{1500, 64}}) {
    for (const Config& c : configs) {
      SCOPED_TRACE("vocab " + std::to_string(shape.vocab) + " part " + std::to_string(shape.part) + " T " +
                   f32(c.temperature) + " top_k " + std::to_string(c.top_k) + " top_p " + f32(c.top_p) +
                   " min_p " + f32(c.min_p));
      std::vector<runtime::GpuRow> steps(n_draws);
      for (uint32_t i = 0; i < n_draws; ++i) {
        steps[i].temperature = c.temperature;
        steps[i].top_k = c.top_k;
        steps[i].top_p = c.top_p;
        steps[i].min_p = c.min_p;
        steps[i].seed = static_cast<uint32_t>(rng());
        steps[i].sample_index = i;
      }
      // Logits whose kept set is not one likely token, so that chi-square has something to test.
      std::vector<float> logits(shape.vocab);
      Distribution want;
      do {
        for (float& x : logits) x = dist(rng);
        want = expected_distribution(logits, steps[0]);
      } while (chi_square_bins(want, n_draws) < 2);
      std::vector<uint32_t> got = draws(logits, steps, shape.part);

      std::vector<double> observed(want.ids.size(), 0);
      for (uint32_t id : got) {
        auto it = std::find(want.ids.begin(), want.ids.end(), id);
        if (it == want.ids.end()) {
          ADD_FAILURE() << "sampled id " << id << " is outside the " << want.ids.size() << " kept candidates";
          continue;
        }
        observed[it - want.ids.begin()] += 1;
      }
      double chi2 = 0, pooled_o = 0, pooled_e = 0;
      for (size_t i = 0; i < want.ids.size(); ++i) {
        const double e = want.p[i] * n_draws;
        if (e < 5) {
          pooled_o += observed[i];
          pooled_e += e;
          continue;
        }
        chi2 += (observed[i] - e) * (observed[i] - e) / e;
      }
      if (pooled_e > 0) chi2 += (pooled_o - pooled_e) * (pooled_o - pooled_e) / std::max(pooled_e, 1.0);
      const int bins = chi_square_bins(want, n_draws);
      EXPECT_LT(chi2, chi_square_limit(bins - 1)) << bins << " bins, " << want.ids.size() << " kept";
    }
  }
}

// Ties at the k-th largest logit are kept by increasing id, up to k: with a flat temperature every kept
// candidate appears and nothing else does.
TEST_P(Sample, TopKBreaksTiesAtTheCutByLowestId) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(704);
  std::vector<float> logits(50);
  for (uint32_t i = 0; i < logits.size(); ++i) logits[i] = -1.f - 0.01f * i;
  logits[30] = 3.f;
  logits[5] = 2.f;
  for (uint32_t i : {33u, 8u, 21u, 12u}) logits[i] = 1.f;  // four tied for third place: 8 is kept
  std::vector<runtime::GpuRow> steps(60);
  for (uint32_t i = 0; i < steps.size(); ++i) {
    steps[i].temperature = 100.f;
    steps[i].top_k = 3;
    steps[i].seed = static_cast<uint32_t>(rng());
    steps[i].sample_index = i;
  }
  std::vector<uint32_t> got = draws(logits, steps);
  EXPECT_EQ(std::set<uint32_t>(got.begin(), got.end()), (std::set<uint32_t>{30, 5, 8}));
}

// Rows of one dispatch, each with its own logits, history and settings (greedy, penalties, top-k draws),
// sample what each samples alone, over one part and over many.
TEST_P(Sample, RowsOfOneDispatchSampleAsEachAlone) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(705);
  for (const auto& [vocab, part] : {std::pair<uint32_t, uint32_t>{300, 0}, {3000, 128}}) {
    SCOPED_TRACE("vocab " + std::to_string(vocab) + " part " + std::to_string(part));
    const uint32_t n = kSlots;
    std::vector<runtime::GpuRow> steps(n);
    steps[0].temperature = 0;
    steps[1].temperature = 0;
    steps[1].repeat_penalty = 1.5f;
    steps[1].frequency_penalty = 0.5f;
    steps[1].penalty_last_n = 64;
    steps[2].temperature = 1.2f;
    steps[2].top_k = 20;
    steps[2].top_p = 0.9f;
    steps[2].presence_penalty = 1.0f;
    steps[2].penalty_last_n = 64;
    std::vector<float> all_logits;  // [rows, vocab]
    std::vector<uint32_t> rings;    // [rows][ring, count]
    std::vector<Result> alone;
    for (uint32_t i = 0; i < n; ++i) {
      steps[i].seed = static_cast<uint32_t>(rng());
      steps[i].sample_index = static_cast<uint32_t>(rng() % 100);
      const std::vector<float> logits = logits_with_tied_max(vocab, 0.f, rng);
      const std::vector<uint32_t> tokens = random_tokens(10 + i, vocab, rng);
      all_logits.insert(all_logits.end(), logits.begin(), logits.end());
      const std::vector<uint32_t> ring = history_ring(tokens, kRing);
      rings.insert(rings.end(), ring.begin(), ring.end());
      alone.push_back(run(logits, tokens, steps[i], part));
    }
    for (uint32_t i = 0; i < n; ++i) {
      steps[i].token = i;
      steps[i].slot = i;
    }
    gpu::Buffer logits_buf = upload(all_logits, "logits"), history = upload(rings, "history");
    gpu::Buffer sampled = device().buffer(4 * n, gpu::kStorage, "sampled");
    sample(upload(steps, "rows"), logits_buf, history, sampled, n, vocab, part);
    const std::vector<uint32_t> ids = download<uint32_t>(sampled, n);
    const std::vector<float> logits_after = download<float>(logits_buf, all_logits.size());
    const std::vector<uint32_t> rings_after = download<uint32_t>(history, rings.size());
    for (uint32_t i = 0; i < n; ++i) {
      SCOPED_TRACE("row " + std::to_string(i));
      EXPECT_EQ(ids[i], alone[i].token);
      EXPECT_EQ(bits_of(std::vector<float>(logits_after.begin() + i * vocab,
                                           logits_after.begin() + (i + 1) * vocab)),
                bits_of(alone[i].logits));
      EXPECT_EQ(std::vector<uint32_t>(rings_after.begin() + i * (kRing + 1),
                                      rings_after.begin() + (i + 1) * (kRing + 1)),
                alone[i].history);
    }
  }
}

// Greedy over a row cut into parts (each part's maximum, then the row's over the parts'): the row's maximum
// wherever it sits, and among equal maxima in different parts the lowest id. Parts of 64 logits (the last
// of 40) and the runtime's parts of Llama 3's vocabulary (62 of 2048 and one of 1280); the expected id is the
// CPU's ranking.
TEST_P(Sample, GreedyAcrossPartsKeepsTheRowsMaximumAndLowestId) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(706);
  for (const auto& [vocab, part_option] : {std::pair<uint32_t, uint32_t>{1000, 64}, {128256, 0}}) {
    const uint32_t part = part_option ? part_option : kernels::sample_part(vocab);
    const uint32_t parts = (vocab + part - 1) / part;
    const uint32_t last = (parts - 1) * part;  // first id of the last part
    ASSERT_GT(parts, 8u);
    ASSERT_NE(vocab % part, 0u) << "the last part should be shorter than the others";
    for (float shift : {0.f, -100.f}) {
      std::normal_distribution<float> dist(shift, 2.f);
      std::vector<float> base(vocab);
      for (float& x : base) x = dist(rng);
      const float top = *std::max_element(base.begin(), base.end()) + 1.f;
      auto with_top = [&](std::vector<uint32_t> ids) {
        std::vector<float> l = base;
        for (uint32_t id : ids) l[id] = top;
        return l;
      };
      std::uniform_int_distribution<uint32_t> any(0, vocab - 1);
      const uint32_t a = any(rng), b = any(rng), c = any(rng);
      const std::pair<std::string, std::vector<float>> cases[] = {
          {"maximum at the last id", with_top({vocab - 1})},
          {"maximum first in the last part", with_top({last})},
          {"maximum in the first part", with_top({1})},
          {"equal maxima last in part 0 and first in part 1", with_top({part, part - 1})},
          {"equal maxima in the last part and before it", with_top({vocab - 1, last + 3, 5 * part + 7})},
          {"equal maxima in parts 7, 2 (twice) and 5",
           with_top({7 * part + 1, 2 * part + 9, 2 * part + 30, 5 * part})},
          {"equal maxima at random ids", with_top({a, b, c})},
          {"every logit equal", std::vector<float>(vocab, shift)},
      };
      for (const auto& [what, logits] : cases) {
        SCOPED_TRACE("vocab " + std::to_string(vocab) + " part " + std::to_string(part) + " shift " +
                     f32(shift) + ": " + what);
        runtime::GpuRow step;
        step.temperature = 0;
        const std::vector<uint32_t> tokens = random_tokens(3, vocab, rng);
        Result r = run(logits, tokens, step, part_option);
        EXPECT_EQ(r.token, ranked(logits)[0]);
        expect_history_updated(tokens, r);
      }
    }
  }
}

// Top-k over a row cut into parts: the row's k largest come from several parts, and the merge keeps them
// and nothing else, with ties at the cut spread over parts (and twice in one) kept by lowest id, and a part
// holding more of the row's largest than k (its own cut decides). With a flat temperature every kept
// candidate is drawn; the expected set is the CPU's ranking.
TEST_P(Sample, TopKAcrossPartsKeepsTheRowsKLargest) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(707);
  const uint32_t k = 6, n_draws = 200;  // a candidate missed by all draws: 6 * (5/6)^200 ~ 1e-15
  for (const auto& [vocab, part_option] : {std::pair<uint32_t, uint32_t>{3000, 128}, {32000, 0}}) {
    const uint32_t part = part_option ? part_option : kernels::sample_part(vocab);
    const uint32_t parts = (vocab + part - 1) / part;
    ASSERT_GT(parts, 8u);
    ASSERT_NE(vocab % part, 0u);
    std::normal_distribution<float> dist(-20.f, 1.f);
    std::uniform_int_distribution<uint32_t> any(0, vocab - 1);
    for (int layout = 0; layout < 3; ++layout) {
      std::vector<float> logits(vocab);
      for (float& x : logits) x = dist(rng);
      std::string what;
      if (layout == 0) {
        what = "3 largest at random ids, 7 tied at the cut in 6 parts";
        for (uint32_t i = 0; i < 3; ++i) logits[any(rng)] = 5.f + float(i);
        for (uint32_t id : {(parts - 1) * part + 2, 4 * part + 11, 4 * part + 12, part - 1, 7 * part,
                            3 * part + 5, (parts - 2) * part + 1})
          logits[id] = 1.f;
      } else if (layout == 1) {
        what = "8 large in part 3 (its own cut keeps 6), the largest and a smaller one in the last part";
        for (uint32_t i = 0; i < 8; ++i) logits[3 * part + 5 * i] = 2.f + 0.25f * float(i);
        logits[vocab - 1] = 9.f;
        logits[(parts - 1) * part] = 1.5f;
      } else {
        what = "every one of the 20 largest tied, one per part";
        for (uint32_t p = 0; p < parts && p < 20; ++p) logits[p * part + p % 7] = 3.f;
      }
      SCOPED_TRACE("vocab " + std::to_string(vocab) + " part " + std::to_string(part) + ": " + what);
      std::vector<runtime::GpuRow> steps(n_draws);
      for (uint32_t i = 0; i < n_draws; ++i) {
        steps[i].temperature = 1000.f;
        steps[i].top_k = k;
        steps[i].seed = static_cast<uint32_t>(rng());
        steps[i].sample_index = i;
      }
      const std::vector<uint32_t> order = ranked(logits);
      const std::set<uint32_t> want(order.begin(), order.begin() + k);
      const std::vector<uint32_t> got = draws(logits, steps, part_option);
      EXPECT_EQ(std::set<uint32_t>(got.begin(), got.end()), want);
    }
  }
}

TEST(SampleKernels, PartsCoverTheVocabularyAndBoundTheMerge) {
  // Llama 3: 62 parts of 2048 and a last one of 1280; small vocabularies are one part.
  kernels::SampleKernels s = kernels::sample_kernels(128256, 256);
  EXPECT_EQ(s.parts, 63u);
  EXPECT_EQ(s.reduce.at("PART"), "2048u");
  EXPECT_EQ(s.merge.at("MERGE"), "1");
  EXPECT_EQ(s.row_bytes, 63u * 256 * 2 * 4);  // each part's 256 candidates' keys and ids
  EXPECT_EQ(kernels::sample_kernels(50, 256).parts, 1u);
  EXPECT_EQ(kernels::sample_kernels(50, 256).row_bytes, 50u * 2 * 4);
  // Past 64 parts of 2048 the parts grow (whole workgroups of logits) instead.
  for (uint32_t vocab : {131072u, 131073u, 151936u, 256000u, 1u << 20}) {
    const uint32_t part = kernels::sample_part(vocab);
    SCOPED_TRACE(vocab);
    EXPECT_LE((vocab + part - 1) / part, 64u);
    EXPECT_GE(part, 2048u);
    EXPECT_EQ(part % 256, 0u);
  }
  EXPECT_THROW(kernels::sample_kernels(0, 256), wgllm::Error);
  EXPECT_THROW(kernels::sample_kernels(100, 0), wgllm::Error);
  EXPECT_THROW(kernels::sample_kernels(70000, 256, 1), wgllm::Error);  // 70000 workgroups per row
}

WGLLM_KERNEL_VARIANTS(Sample);

}  // namespace
}  // namespace wgllm::kernels_test
