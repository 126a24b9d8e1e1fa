#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "mesh/device_memory.hpp"

namespace wgllm::cli {

std::string default_model_path() {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  const char* name = "stories260K.gguf";
  std::vector<fs::path> candidates;
  if (!ec) {
    candidates.push_back(exe.parent_path() / "models" / name);
    candidates.push_back(exe.parent_path().parent_path() / "models" / name);
    candidates.push_back(exe.parent_path().parent_path() / "share" / "wgllm" / name);
  }
  candidates.push_back(fs::path(WGLLM_SOURCE_DIR) / "models" / name);
  for (const auto& p : candidates)
    if (fs::exists(p, ec)) return p.string();
  fail_input("the built-in model stories260K.gguf was not found beside the binary; pass -m FILE");
}

void add_device_flags(CLI::App& cmd, gpu::DeviceOptions& options, KernelFlags& kernels) {
  cmd.add_option("--backend", options.backend, "WebGPU backend: vulkan or gl (OpenGL ES)")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, gpu::Backend>{{"vulkan", gpu::Backend::Vulkan}, {"gl", gpu::Backend::OpenGL}},
          CLI::ignore_case));
  cmd.add_option("--adapter", options.adapter, "use adapter N of `wgllm devices` (GPUs are numbered first)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_flag("--no-subgroups", kernels.no_subgroups,
               "use the kernels' workgroup-memory reductions even where subgroups exist");
  cmd.add_flag(
      "--f32-activations", kernels.f32_activations,
      "multiply quantized weights by f32 inputs (the float reference's arithmetic) instead of inputs "
      "quantized to int8 per 32 values (the default, as llama.cpp's q8_1: faster)");
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

runtime::ForwardOptions forward_options(const gpu::Device& device, uint32_t ctx_size,
                                        const KernelFlags& kernels) {
  runtime::ForwardOptions fo;
  fo.n_ctx = ctx_size;
  kernels.apply(fo);
  fo.device_memory = mesh::device_memory_bytes(device.info());
  return fo;
}

}  // namespace wgllm::cli
