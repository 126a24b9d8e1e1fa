// `wgllm run`: stdout carries exactly the prompt as given, the generated text and one '\n' (CONTRACTS.md);
// everything else goes to stderr. With --chat the prompt is a user message rendered through the model's chat
// template, and stdout carries only the reply and one '\n'.
#include <chrono>
#include <cstdio>
#include <random>

#include "cli/commands.hpp"
#include "cli/mesh_flags.hpp"
#include "core/error.hpp"
#include "core/utf8.hpp"
#include "gguf/gguf_file.hpp"
#include "runtime/forward.hpp"
#include "runtime/session.hpp"
#include "tokenizer/conversation.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::cli {

namespace {

struct RunFlags {
  std::string model;
  std::string prompt;
  std::string prompt_file;
  int64_t n_predict = -1;
  int64_t seed = -1;
  runtime::SamplingParams sampling;
  uint32_t ctx_size = 0;
  bool no_echo = false;
  bool stats = false;
  bool chat = false;
  std::string system;
  std::string chat_template_file;
  bool verbose_prompt = false;
  KernelFlags kernels;
  gpu::DeviceOptions device;
  MeshFlags mesh;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// The prompt's token ids: the text with BOS as the vocabulary says, or with --chat a user turn through the
// chat template.
std::vector<int32_t> prompt_ids(const RunFlags& f, const gguf::GgufFile& file,
                                const tokenizer::Tokenizer& tok, const std::string& prompt) {
  std::vector<int32_t> ids;
  if (f.chat) {
    std::vector<tokenizer::ChatMessage> messages;
    // Templates work on text: bytes that are not UTF-8 become U+FFFD, as a terminal would show them.
    if (!f.system.empty()) messages.push_back({"system", utf8::sanitize(f.system)});
    messages.push_back({"user", utf8::sanitize(prompt)});
    const tokenizer::ChatTemplate tmpl = model_chat_template(file, f.chat_template_file);
    ids = tokenizer::tokenize_chat(tok, tokenizer::render_chat(tmpl, tok, messages, true));
  } else {
    ids = tok.encode(prompt, /*add_bos=*/true);
  }
  if (ids.empty())
    fail_input("the prompt is empty and the vocabulary adds no BOS token: give a prompt with -p");
  return ids;
}

// What run and run_mesh read before they generate: the prompt's text, the model's file and tokenizer, the
// prompt's ids (listed with --verbose-prompt) and the sampling settings with their seed (printed when drawn).
struct Prompt {
  std::string text;
  std::unique_ptr<gguf::GgufFile> file;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  std::vector<int32_t> ids;
  runtime::SamplingParams sampling;
};

Prompt read_prompt(const RunFlags& f, const std::string& model_path) {
  Prompt p;
  p.text = f.prompt_file.empty() ? f.prompt : read_text_file(f.prompt_file);
  p.file = gguf::GgufFile::open(model_path);
  p.tok = tokenizer::Tokenizer::from_gguf(*p.file);
  p.ids = prompt_ids(f, *p.file, *p.tok, p.text);
  if (f.verbose_prompt) print_prompt_tokens(p.ids, 0);
  p.sampling = f.sampling;
  p.sampling.seed = f.seed >= 0 ? static_cast<uint32_t>(f.seed) : std::random_device{}();
  if (f.seed < 0) std::fprintf(stderr, "seed: %u\n", p.sampling.seed);
  return p;
}

int run_mesh(const RunFlags& f);

int run(const RunFlags& f) {
  if (f.mesh.enabled()) return run_mesh(f);
  using clock = std::chrono::steady_clock;
  auto t_load = clock::now();
  std::string model_path = f.model.empty() ? default_model_path() : f.model;
  const Prompt p = read_prompt(f, model_path);

  auto device = gpu::open_device(f.device);
  runtime::ForwardOptions fo = forward_options(*device, f.ctx_size, f.kernels);
  runtime::Forward forward(*device, *p.file, fo);
  runtime::Session session(forward, p.sampling);
  double load_s = seconds_since(t_load);
  std::fprintf(stderr, "loaded %s on %s (%s) in %.2f s: %u layers, dim %u, vocab %u, context %u\n",
               model_path.c_str(), device->info().device.c_str(), device->info().backend.c_str(), load_s,
               forward.config().n_layers, forward.config().dim, forward.config().n_vocab, forward.n_ctx());

  const bool echo = !f.no_echo && !f.chat;
  if (echo) std::fwrite(p.text.data(), 1, p.text.size(), stdout);
  std::fflush(stdout);

  // A reply starts the text (its first piece loses SentencePiece's space), as does a story from BOS alone.
  tokenizer::StreamDecoder decoder(*p.tok, /*strip_leading_space=*/f.chat || p.text.empty());
  GenerateOptions options;
  options.max_new = f.n_predict < 0 ? UINT64_MAX : static_cast<uint64_t>(f.n_predict);
  options.stats_device = f.stats ? device.get() : nullptr;
  auto t_prompt = clock::now();
  double prompt_s = 0;
  uint64_t generated = 0;
  if (options.max_new > 0) {
    Generated g = generate(session, *p.tok, session.prefill(p.ids), options, [&](int32_t id) {
      std::string text = decoder.push(id);
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    });
    prompt_s = std::chrono::duration<double>(g.first_token_at - t_prompt).count();
    generated = g.ids.size();
    if (g.stop == StopReason::ContextFull)
      std::fprintf(stderr, "\nwgllm: stopped: the context of %u tokens is full\n", forward.n_ctx());
  }
  std::string tail = decoder.flush();
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  double gen_s = seconds_since(t_prompt) - prompt_s;
  std::fprintf(stderr,
               "load %.2f s | prompt %zu tokens, %.1f tok/s | generated %llu tokens, %.1f tok/s | "
               "GPU memory %.1f MiB (weights %.1f MiB)\n",
               load_s, p.ids.size(), prompt_s > 0 ? p.ids.size() / prompt_s : 0.0,
               static_cast<unsigned long long>(generated),
               gen_s > 0 && generated > 1 ? (generated - 1) / gen_s : 0.0,
               device->allocated_bytes() / 1048576.0, forward.weight_bytes() / 1048576.0);
  return 0;
}

// run over pipeline stages (--mesh, --devices): the same output, generated through mesh::Pipeline.
int run_mesh(const RunFlags& f) {
  using clock = std::chrono::steady_clock;
  auto t_load = clock::now();
  if (f.stats) fail_input("--stats counts one device's work: it does not combine with --mesh or --devices");
  const std::string model_path = f.model.empty() ? default_model_path() : f.model;
  runtime::ForwardOptions fo;
  fo.n_ctx = f.ctx_size;
  f.kernels.apply(fo);
  std::unique_ptr<mesh::Mesh> mesh = start_mesh(f.mesh, model_path, fo, f.device);
  if (!mesh->driver()) return serve_stage(*mesh);

  const Prompt p = read_prompt(f, model_path);

  mesh::Pipeline& pipeline = mesh->pipeline();
  const double load_s = seconds_since(t_load);
  const bool echo = !f.no_echo && !f.chat;
  if (echo) std::fwrite(p.text.data(), 1, p.text.size(), stdout);
  std::fflush(stdout);
  tokenizer::StreamDecoder decoder(*p.tok, /*strip_leading_space=*/f.chat || p.text.empty());
  const uint64_t max_new = f.n_predict < 0 ? UINT64_MAX : static_cast<uint64_t>(f.n_predict);
  const auto t_prompt = clock::now();
  auto t_first = t_prompt;
  uint64_t generated = 0;
  if (max_new > 0) {
    const std::optional<runtime::Generator::Started> started = pipeline.start(p.ids, p.sampling);
    if (!started) fail_runtime("mesh: no free slot for the prompt");
    for (bool done = false; !done;) {
      for (const runtime::Generator::Sampled& s : pipeline.step()) {
        if (s.slot != started->slot) continue;
        if (generated == 0 && t_first == t_prompt) t_first = clock::now();
        if (p.tok->is_eog(s.token)) {
          done = true;
          break;
        }
        const std::string text = decoder.push(s.token);
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        done = ++generated >= max_new || s.context_full;
        if (s.context_full && generated < max_new)
          std::fprintf(stderr, "\nwgllm: stopped: the context of %u tokens is full\n",
                       pipeline.context_size());
      }
    }
    pipeline.finish(started->slot);
  }
  const std::string tail = decoder.flush();
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const double prompt_s = std::chrono::duration<double>(t_first - t_prompt).count();
  const double gen_s = seconds_since(t_prompt) - prompt_s;
  mesh->shutdown();
  std::fprintf(stderr,
               "load %.2f s | prompt %zu tokens, %.1f tok/s | generated %llu tokens, %.1f tok/s | "
               "pipeline stages: %u\n",
               load_s, p.ids.size(), prompt_s > 0 ? p.ids.size() / prompt_s : 0.0,
               static_cast<unsigned long long>(generated),
               gen_s > 0 && generated > 1 ? (generated - 1) / gen_s : 0.0, mesh->stages());
  if (const std::string traffic = mesh->traffic(); !traffic.empty())
    std::fprintf(stderr, "%s\n", traffic.c_str());
  return 0;
}

}  // namespace

Generated generate(runtime::Session& session, const tokenizer::Tokenizer& tok, gpu::ReadTicket first,
                   const GenerateOptions& options, const std::function<void(int32_t)>& on_token) {
  Generated g;
  gpu::ReadTicket pending = first;
  for (;;) {
    // Run ahead: record and submit the next step before waiting for this one's id.
    const bool interrupted = options.interrupt && *options.interrupt;
    const bool more = g.ids.size() + 1 < options.max_new && !session.context_full() && !interrupted;
    gpu::DeviceStats before, after;
    if (options.stats_device) before = options.stats_device->stats();
    gpu::ReadTicket next = more ? session.step() : gpu::ReadTicket{};
    if (options.stats_device) after = options.stats_device->stats();
    const int32_t id = session.id_of(pending);
    if (g.ids.empty() && g.fed.empty()) g.first_token_at = std::chrono::steady_clock::now();
    if (more) g.fed.push_back(id);
    if (tok.is_eog(id)) {
      g.stop = StopReason::EndOfGeneration;
      if (more) session.id_of(next);  // the step ran on the end token; its id is not wanted
      return g;
    }
    g.ids.push_back(id);
    on_token(id);
    if (options.stats_device && more) {
      std::fprintf(stderr, "[step %u: %llu dispatches, %llu submits, %llu bytes read back]\n",
                   session.position(), static_cast<unsigned long long>(after.dispatches - before.dispatches),
                   static_cast<unsigned long long>(after.submits - before.submits),
                   static_cast<unsigned long long>(after.bytes_read_back - before.bytes_read_back));
    }
    if (!more) {
      g.stop = interrupted                                                ? StopReason::Interrupted
               : session.context_full() && g.ids.size() < options.max_new ? StopReason::ContextFull
                                                                          : StopReason::Limit;
      return g;
    }
    pending = next;
  }
}

void add_sampling_flags(CLI::App& app, runtime::SamplingParams& sampling, int64_t& seed) {
  app.add_option("--seed", seed, "sampling seed (default: random, printed on stderr)");
  app.add_option("--temp", sampling.temperature, "temperature; 0 = greedy")->capture_default_str();
  app.add_option("--top-k", sampling.top_k, "top-k (0 = off)")->capture_default_str();
  app.add_option("--top-p", sampling.top_p, "top-p (1 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--min-p", sampling.min_p, "min-p (0 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--repeat-penalty", sampling.repeat_penalty, "repetition penalty (1 = off)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--repeat-last-n", sampling.penalty_last_n, "tokens the repetition penalty looks back over")
      ->capture_default_str()
      ->check(CLI::Range(0, int(runtime::kPenaltyHistory)));
}

void print_prompt_tokens(std::span<const int32_t> tokens, size_t reused) {
  std::string line =
      "prompt: " + std::to_string(tokens.size()) + " tokens (" + std::to_string(reused) + " reused):";
  for (int32_t id : tokens) line += " " + std::to_string(id);
  std::fprintf(stderr, "%s\n", line.c_str());
}

Action add_run(CLI::App& app) {
  auto f = std::make_shared<RunFlags>();
  app.add_option("-m,--model", f->model, "GGUF model file (default: the built-in stories260K)")
      ->check(CLI::ExistingFile);
  auto* p = app.add_option("-p,--prompt", f->prompt, "prompt text");
  app.add_option("-f,--file", f->prompt_file, "read the prompt from a file")
      ->check(CLI::ExistingFile)
      ->excludes(p);
  app.add_option("-n,--n-predict", f->n_predict,
                 "at most N new tokens (-1: until end of generation or context)");
  add_sampling_flags(app, f->sampling, f->seed);
  app.add_option("-c,--ctx-size", f->ctx_size, "context size in tokens (default: the model's, at most 4096)");
  app.add_flag("--no-echo", f->no_echo, "do not print the prompt");
  app.add_flag("--stats", f->stats,
               "print per-token GPU work (dispatches, submits, bytes read back) on stderr");
  auto* chat = app.add_flag(
      "--chat", f->chat,
      "send the prompt as a user message through the model's chat template; print only the reply");
  app.add_option("--system", f->system, "a system message (with --chat)")->needs(chat);
  app.add_option("--chat-template-file", f->chat_template_file,
                 "use this Jinja chat template instead of the model's")
      ->check(CLI::ExistingFile)
      ->needs(chat);
  app.add_flag("--verbose-prompt", f->verbose_prompt, "print the prompt's token ids on stderr");
  add_device_flags(app, f->device, f->kernels);
  add_mesh_flags(app, f->mesh);
  return [f] { return run(*f); };
}

}  // namespace wgllm::cli
