// `wgllm perplexity -m MODEL -f TEXT [-c N]`: the model's perplexity on a text, computed as llama.cpp's
// perplexity tool does (tools/perplexity/perplexity.cpp, perplexity()), so the numbers compare:
//   - the text is tokenized as `run` tokenizes a prompt (BOS first when the vocabulary adds it);
//   - it is cut into floor(tokens / N) windows of N tokens that do not overlap (the rest is left out); each
//     window runs from an empty context, its first token replaced by BOS when the vocabulary adds BOS;
//   - only the second half of a window is scored: the logits at positions N/2 .. N-2 predict the tokens at
//     N/2+1 .. N-1 (N - N/2 - 1 tokens per window); the first half is context;
//   - PPL = exp(mean NLL) over all scored tokens, +/- its standard error: PPL * sqrt(var(NLL) / (count - 1)).
// stdout: "[i]PPL," after each window (the running estimate), then "Final estimate: PPL = X +/- Y".
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "runtime/forward.hpp"
#include "runtime/session.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::cli {

namespace {

struct PerplexityFlags {
  std::string model;
  std::string text_file;
  uint32_t ctx_size = 512;
  uint32_t chunks = 0;  // 0: all
  KernelFlags kernels;
  gpu::DeviceOptions device;
};

// -log softmax(logits)[token], in double.
double nll(const std::vector<float>& logits, int32_t token) {
  double max = logits[0];
  for (float v : logits) max = std::max<double>(max, v);
  double sum = 0;
  for (float v : logits) sum += std::exp(v - max);
  return max + std::log(sum) - logits[token];
}

int perplexity(const PerplexityFlags& f) {
  if (f.ctx_size < 4)
    fail_input("--ctx-size " + std::to_string(f.ctx_size) + ": at least 4 tokens are needed");
  auto file = gguf::GgufFile::open(f.model.empty() ? default_model_path() : f.model);
  auto tok = tokenizer::Tokenizer::from_gguf(*file);
  const tokenizer::Vocab& vocab = tok->vocab();
  const bool add_bos = vocab.add_bos && vocab.bos >= 0;
  const std::vector<int32_t> tokens = tok->encode(read_text_file(f.text_file), add_bos);

  const uint32_t n_ctx = f.ctx_size;
  if (tokens.size() < 2ull * n_ctx)
    fail_input(f.text_file + " tokenizes to " + std::to_string(tokens.size()) + " tokens; a context of " +
               std::to_string(n_ctx) + " needs at least " + std::to_string(2ull * n_ctx) +
               " (two windows): pass a longer text or a smaller --ctx-size");
  uint32_t n_chunks = static_cast<uint32_t>(tokens.size() / n_ctx);
  if (f.chunks) n_chunks = std::min(n_chunks, f.chunks);
  const uint32_t first = n_ctx / 2;

  auto device = gpu::open_device(f.device);
  runtime::ForwardOptions fo = forward_options(*device, n_ctx, f.kernels);
  runtime::Forward forward(*device, *file, fo);
  std::fprintf(stderr,
               "perplexity: %zu tokens, %u windows of %u (BOS %s), scoring positions %u..%u of each: %u "
               "tokens\n",
               tokens.size(), n_chunks, n_ctx, add_bos ? "first" : "not added", first + 1, n_ctx - 1,
               n_chunks * (n_ctx - first - 1));

  double sum = 0, sum2 = 0;
  uint64_t count = 0;
  // Read-backs in flight: enough to keep the GPU busy, few enough to bound the staged logits.
  constexpr size_t kInFlight = 16;
  for (uint32_t i = 0; i < n_chunks; ++i) {
    const size_t start = size_t(i) * n_ctx;
    runtime::Session session(forward, runtime::SamplingParams{});  // position 0: an empty context
    std::deque<gpu::ReadTicket> pending;
    uint32_t done = 0;  // positions whose logits were read
    auto read_one = [&] {
      const std::vector<uint8_t> bytes = device->wait(pending.front());
      pending.pop_front();
      const uint32_t pos = done++;
      if (pos < first || pos + 1 >= n_ctx) return;
      std::vector<float> logits(bytes.size() / 4);
      std::memcpy(logits.data(), bytes.data(), bytes.size());
      const double v = nll(logits, tokens[start + pos + 1]);
      sum += v;
      sum2 += v * v;
      ++count;
    };
    for (uint32_t k = 0; k < n_ctx; ++k) {
      pending.push_back(session.evaluate(k == 0 && add_bos ? vocab.bos : tokens[start + k]));
      if (pending.size() > kInFlight) read_one();
    }
    while (!pending.empty()) read_one();
    std::printf("[%u]%.4f,", i + 1, std::exp(sum / count));
    std::fflush(stdout);
  }
  const double mean = sum / count;
  const double var = sum2 / count - mean * mean;
  const double ppl = std::exp(mean);
  std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", ppl,
              var > 0 ? std::sqrt(var / (count - 1)) * ppl : 0.0);
  return 0;
}

}  // namespace

Action add_perplexity(CLI::App& app) {
  auto f = std::make_shared<PerplexityFlags>();
  app.add_option("-m,--model", f->model, "GGUF model file (default: the built-in stories260K)")
      ->check(CLI::ExistingFile);
  app.add_option("-f,--file", f->text_file, "the text to score")->required()->check(CLI::ExistingFile);
  app.add_option("-c,--ctx-size", f->ctx_size,
                 "window of tokens; the second half of each is scored (default 512)");
  app.add_option("--chunks", f->chunks, "score at most this many windows (default: all)");
  add_device_flags(app, f->device, f->kernels);
  return [f] { return perplexity(*f); };
}

}  // namespace wgllm::cli
