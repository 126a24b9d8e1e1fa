// `wgllm convert HF_DIR OUT.gguf [--type TYPE]`: a Hugging Face model folder (config.json, safetensors,
// tokenizer.json) to the GGUF file llama.cpp's convert_hf_to_gguf.py writes for it (model/convert_hf.hpp),
// stored as f32, f16 or bf16, or in one of llama.cpp's quantization mixes (quant/mix.hpp) as llama-quantize
// would make it from the f32 model. Everything that can be refused is refused before anything is written;
// tensors are then converted one at a time while the file streams to OUT.gguf.tmp, which is renamed into
// place only when complete (and removed on failure or Ctrl-C).
#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.hpp"
#include "cli/output_file.hpp"
#include "core/error.hpp"
#include "gguf/gguf_writer.hpp"
#include "model/convert_hf.hpp"
#include "quant/codec.hpp"
#include "quant/mix.hpp"

namespace wgllm::cli {

namespace {

using gguf::TensorType;

struct ConvertFlags {
  std::string in;
  std::string out;
  std::string type = "f16";
  unsigned threads = 0;
};

constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION

// An output type: a plain one (every matrix stored so) or a quantization mix.
struct OutputType {
  std::optional<TensorType> plain;
  std::optional<quant::FileType> mix;
  uint32_t file_type;  // general.file_type (LLAMA_FTYPE)
};

OutputType parse_type(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "f32") return {TensorType::F32, std::nullopt, 0};
  if (lower == "f16") return {TensorType::F16, std::nullopt, 1};
  if (lower == "bf16") return {TensorType::BF16, std::nullopt, 32};
  if (auto mix = quant::parse_file_type(lower)) return {std::nullopt, mix, static_cast<uint32_t>(*mix)};
  fail_input("--type '" + name + "' is not known (expected one of: f32, f16, bf16, " +
             quant::file_type_names() + ")");
}

int convert(const ConvertFlags& f) {
  const OutputType out_type = parse_type(f.type);
  const auto model = model::HfModel::open(f.in);
  for (const std::string& input : model->input_files()) refuse_overwriting_input(input, f.out);

  const std::vector<model::ConvertTensor>& tensors = model->tensors();
  std::vector<TensorType> types;
  if (out_type.plain) {
    for (const model::ConvertTensor& t : tensors)
      types.push_back(t.keep_f32 ? TensorType::F32 : *out_type.plain);
  } else {
    // The mix as llama-quantize applies it to the f32 model: what it does not quantize stays f32.
    std::vector<gguf::TensorInfo> infos;
    for (const model::ConvertTensor& t : tensors) {
      infos.push_back(gguf::TensorInfo{t.name, t.dims, TensorType::F32, 0, t.elements(), t.elements() * 4});
    }
    const std::vector<quant::TensorChoice> choices =
        quant::choose_types(*out_type.mix, model->model_info(), infos);
    for (size_t i = 0; i < tensors.size(); ++i) {
      types.push_back(tensors[i].keep_f32 ? TensorType::F32 : choices[i].type);
      if (choices[i].fallback_from) {
        std::fprintf(stderr, "warning: %s: row length %llu is not a multiple of %s's blocks: stored as %s\n",
                     tensors[i].name.c_str(), static_cast<unsigned long long>(tensors[i].dims[0]),
                     std::string(gguf::type_name(*choices[i].fallback_from)).c_str(),
                     std::string(gguf::type_name(choices[i].type)).c_str());
      }
    }
  }

  gguf::GgufWriter writer = model->metadata();
  writer.set_uint32("general.file_type", out_type.file_type);
  if (out_type.mix) writer.set_uint32("general.quantization_version", kQuantizationVersion);
  const unsigned threads = f.threads ? f.threads : std::max(1u, std::thread::hardware_concurrency());
  uint64_t total = 0, out_bytes = 0;
  for (const model::ConvertTensor& t : tensors) total += t.elements();
  Progress progress(total, "converting");
  std::map<std::string, size_t> type_counts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const model::ConvertTensor& t = tensors[i];
    const TensorType type = types[i];
    out_bytes += quant::row_bytes(type, static_cast<int64_t>(t.dims[0])) * t.rows();
    ++type_counts[std::string(gguf::type_name(type))];
    writer.add_streamed_tensor(t.name, type, t.dims, [&t, type, threads, &progress] {
      return t.encode(type, threads, [&progress](uint64_t n) { progress.advance(n); });
    });
  }
  {
    TmpCleanupOnSignal cleanup(f.out + ".tmp");
    writer.write(f.out);
  }
  progress.finish();
  std::string counts;
  for (const auto& [name, n] : type_counts)
    counts += (counts.empty() ? "" : ", ") + std::to_string(n) + " " + name;
  std::fprintf(stderr, "wrote %s: %s, %s, %zu tensors (%s), %.2f MiB, %.2f bits per weight\n", f.out.c_str(),
               model->arch().c_str(), f.type.c_str(), tensors.size(), counts.c_str(), out_bytes / 1048576.0,
               total ? out_bytes * 8.0 / total : 0.0);
  return 0;
}

}  // namespace

Action add_convert(CLI::App& app) {
  auto f = std::make_shared<ConvertFlags>();
  app.add_option("input", f->in, "Hugging Face model folder (config.json, *.safetensors, tokenizer.json)")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("output", f->out, "GGUF file to write")->required();
  app.add_option("--type", f->type,
                 "tensor type: f32, f16 (default), bf16, or a quantization mix: " + quant::file_type_names());
  app.add_option("-t,--threads", f->threads, "worker threads (default: all cores)");
  return [f] { return convert(*f); };
}

}  // namespace wgllm::cli
