// The `wgllm` subcommands. Each registers its flags on a CLI11 subcommand and returns the action to run
// once parsing succeeded; the action returns the exit code (errors are thrown as wgllm::Error).
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "gpu/device.hpp"
#include "runtime/session.hpp"
#include "tokenizer/chat_template.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::cli {

using Action = std::function<int()>;

Action add_run(CLI::App& app);
Action add_info(CLI::App& app);
Action add_devices(CLI::App& app);
Action add_logits(CLI::App& app);
Action add_bench(CLI::App& app);
Action add_quantize(CLI::App& app);
Action add_perplexity(CLI::App& app);
Action add_tokenize(CLI::App& app);
Action add_detokenize(CLI::App& app);
Action add_chat(CLI::App& app);
Action add_convert(CLI::App& app);
Action add_serve(CLI::App& app);

// Shared pieces.
std::string default_model_path();  // the built-in stories260K, found beside the binary
// The kernel choices every command that runs a model offers (add_device_flags).
struct KernelFlags {
  bool no_subgroups = false;     // --no-subgroups
  bool f32_activations = false;  // --f32-activations
  void apply(runtime::ForwardOptions& fo) const {
    fo.use_subgroups = !no_subgroups;
    fo.int8_activations = !f32_activations;
  }
};
void add_device_flags(CLI::App& cmd, gpu::DeviceOptions& options, KernelFlags& kernels);
// Forward's options from the common flags, with the device's memory where the Vulkan loader tells it (so a
// model too large fails before its upload, naming the bytes).
runtime::ForwardOptions forward_options(const gpu::Device& device, uint32_t ctx_size,
                                        const KernelFlags& kernels);
std::string read_text_file(const std::string& path);

// Generation shared by run and chat (cmd_run.cpp).
enum class StopReason { EndOfGeneration, Limit, ContextFull, Interrupted };
struct Generated {
  std::vector<int32_t> ids;  // the generated tokens, without an end-of-generation one
  std::vector<int32_t> fed;  // those the model also ran on (it runs one ahead), an end token included
  StopReason stop = StopReason::Limit;
  std::chrono::steady_clock::time_point first_token_at;  // when the first id was read back
};
struct GenerateOptions {
  uint64_t max_new = UINT64_MAX;
  // Set by a signal handler; generation stops after the token being read when it is non-zero.
  const volatile std::sig_atomic_t* interrupt = nullptr;
  gpu::Device* stats_device = nullptr;  // per-step GPU work on stderr (run --stats)
};
// Reads the tokens that follow a prefill (its ticket `first`), calling on_token for each generated one, until
// an end-of-generation token, options.max_new tokens, a full context or an interrupt. Each step is submitted
// before the previous id is read (the sampled id stays on the GPU), so the model has run on every token
// read but the last.
Generated generate(runtime::Session& session, const tokenizer::Tokenizer& tok, gpu::ReadTicket first,
                   const GenerateOptions& options, const std::function<void(int32_t)>& on_token);
// --seed, --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n.
void add_sampling_flags(CLI::App& app, runtime::SamplingParams& sampling, int64_t& seed);
// --verbose-prompt: the token ids a turn feeds, on stderr as one line: "prompt: N tokens (R reused): ids".
void print_prompt_tokens(std::span<const int32_t> tokens, size_t reused);

// The chat template for a model (cmd_chat.cpp): `template_file` when given, else the file's
// tokenizer.chat_template, else ChatML with a warning on stderr.
tokenizer::ChatTemplate model_chat_template(const gguf::GgufFile& file, const std::string& template_file);

}  // namespace wgllm::cli
