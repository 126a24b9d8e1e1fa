// The `wgllm` subcommands. Each registers its flags on a CLI11 subcommand and returns the action to run
// once parsing succeeded; the action returns the exit code (errors are thrown as wgllm::Error).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "gpu/device.hpp"

namespace wgllm::cli {

using Action = std::function<int()>;

Action add_run(CLI::App& app);
Action add_info(CLI::App& app);
Action add_devices(CLI::App& app);
Action add_logits(CLI::App& app);
Action add_bench(CLI::App& app);
Action add_quantize(CLI::App& app);
Action add_perplexity(CLI::App& app);
Action add_serve(CLI::App& app);
Action add_convert(CLI::App& app);

// Shared pieces.
std::string default_model_path();  // the built-in stories260K, found beside the binary
void add_device_flags(CLI::App& cmd, gpu::DeviceOptions& options, bool& no_subgroups);
std::string read_text_file(const std::string& path);

}  // namespace wgllm::cli
