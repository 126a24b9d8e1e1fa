// wgllm: the command-line front end. Subcommands live in cmd_*.cpp; this file parses and maps failures to
// the exit codes of CONTRACTS.md: 0 success, 1 runtime failure, 2 bad usage or bad input.
#include <cstdio>
#include <string>

#include "cli/commands.hpp"
#include "core/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"wgllm: Llama-family language models on WebGPU"};
  // At most one subcommand; its absence is reported after parsing, so that an unknown flag before it is
  // named as such instead of as a missing subcommand.
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", "wgllm 0.1.0");
  std::vector<std::pair<CLI::App*, wgllm::cli::Action>> commands;
  auto add = [&](auto adder, const char* name, const char* help) {
    CLI::App* sub = app.add_subcommand(name, help);
    commands.emplace_back(sub, adder(*sub));
  };
  add(wgllm::cli::add_run, "run", "generate text from a prompt");
  add(wgllm::cli::add_chat, "chat", "a multi-turn chat through the model's chat template");
  add(wgllm::cli::add_info, "info", "show a GGUF file's metadata and tensors");
  add(wgllm::cli::add_devices, "devices", "list the WebGPU adapters");
  add(wgllm::cli::add_logits, "logits", "print every position's logits for given tokens");
  add(wgllm::cli::add_bench, "bench", "measure prompt and generation speed (llama-bench's tests)");
  add(wgllm::cli::add_quantize, "quantize", "rewrite a GGUF model in a quantization mix (q8_0, q4_k_m, ...)");
  add(wgllm::cli::add_convert, "convert", "write a Hugging Face model folder as a GGUF file (f16, q8_0, ...)");
  add(wgllm::cli::add_perplexity, "perplexity", "a model's perplexity on a text (llama.cpp's windows and scoring)");
  add(wgllm::cli::add_tokenize, "tokenize", "print the token ids of a text");
  add(wgllm::cli::add_detokenize, "detokenize", "print the text of token ids");
  add(wgllm::cli::add_serve, "serve", "serve the OpenAI API and a chat page over HTTP");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "wgllm: %s (see wgllm --help)\n", e.what());
    return 2;
  }
  if (app.get_subcommands().empty()) {
    std::fprintf(stderr, "wgllm: a command is required: run, info, devices, logits, bench, ... (see wgllm --help)\n");
    return 2;
  }
  try {
    for (auto& [sub, action] : commands)
      if (sub->parsed()) return action();
  } catch (const wgllm::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "wgllm: %s\n", e.what());
    return e.kind() == wgllm::ErrorKind::BadInput ? 2 : 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "wgllm: %s\n", e.what());
    return 1;
  }
  return 2;
}
