// `wgllm quantize IN.gguf OUT.gguf TYPE`: rewrites a model in one of llama.cpp's quantization mixes
// (quant/mix.hpp) with ggml's reference quantizers, so the tensor data equals what llama-quantize writes
// without an importance matrix. Metadata is copied; general.file_type and general.quantization_version are
// set. The output is assembled in memory and written through GgufWriter (PATH.tmp, then rename), so memory
// holds the whole output file; docs/quantization.md has the details.
#include <cstdio>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.hpp"
#include "cli/output_file.hpp"
#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "gguf/gguf_writer.hpp"
#include "quant/codec.hpp"
#include "quant/mix.hpp"

namespace wgllm::cli {

namespace {

using gguf::TensorType;

struct QuantizeFlags {
  std::string in;
  std::string out;
  std::string type;
  unsigned threads = 0;
};

constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION: the block layouts of quant/codec.hpp

bool is_plain(TensorType t) {
  return t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16;
}

std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / 1048576.0);
  return buf;
}

// Converts one tensor to `type`, rows split into chunks that `threads` workers take in turn: each decodes a
// chunk to f32 and encodes it, so memory beyond the output is one chunk per thread.
std::vector<uint8_t> convert(const gguf::TensorInfo& t, std::span<const uint8_t> src, TensorType type,
                             unsigned threads, Progress& progress) {
  const int64_t row_len = static_cast<int64_t>(t.dims[0]);
  const int64_t rows = static_cast<int64_t>(t.rows());
  const uint64_t src_row_bytes = quant::row_bytes(t.type, row_len);
  const std::string what = "tensor '" + t.name + "'";
  return quant::quantize_rows_parallel(
      type, rows, row_len, 16384,  // llama.cpp's chunk: 32 * 512 weights
      threads,
      [&](int64_t first, int64_t n, float* out) {
        quant::dequantize_row(t.type, src.data() + first * src_row_bytes, out, n * row_len, what);
      },
      [&](uint64_t elements) { progress.advance(elements); }, what);
}

int quantize(const QuantizeFlags& f) {
  const std::optional<quant::FileType> ftype = quant::parse_file_type(f.type);
  if (!ftype) {
    fail_input("unknown quantization type '" + f.type + "' (expected one of: " + quant::file_type_names() +
               ")");
  }
  refuse_overwriting_input(f.in, f.out);
  const auto file = gguf::GgufFile::open(f.in);
  const std::vector<gguf::TensorInfo>& tensors = file->tensors();
  const std::vector<quant::TensorChoice> choices =
      quant::choose_types(*ftype, quant::model_info(*file), tensors);

  // Everything that can be refused is refused before any work.
  uint64_t convert_weights = 0;
  size_t requantized = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const gguf::TensorInfo& t = tensors[i];
    const quant::TensorChoice& c = choices[i];
    if (c.type == t.type) continue;
    if (!quant::is_supported(t.type)) {
      fail_input(f.in + ": tensor '" + t.name + "' is " + std::string(gguf::type_name(t.type)) +
                 ", which cannot be decoded (supported: " + quant::supported_type_names() + ")");
    }
    if (!is_plain(t.type)) ++requantized;
    convert_weights += t.n_elements;
    if (c.fallback_from) {
      std::fprintf(stderr,
                   "warning: %s: row length %llu is not a multiple of %s's %u-weight blocks: stored as %s\n",
                   t.name.c_str(), static_cast<unsigned long long>(t.dims[0]),
                   std::string(gguf::type_name(*c.fallback_from)).c_str(),
                   gguf::type_traits(static_cast<uint32_t>(*c.fallback_from))->block_elements,
                   std::string(gguf::type_name(c.type)).c_str());
    }
  }
  if (requantized) {
    std::fprintf(
        stderr,
        "warning: %zu tensors are already quantized: they are decoded and quantized again, which loses "
        "more precision than quantizing the original f32/f16/bf16 weights\n",
        requantized);
  }

  gguf::GgufWriter writer;
  for (const gguf::KeyValue& kv : file->metadata()) {
    // A quantized model is one file: split-file bookkeeping does not carry over (llama.cpp drops it too).
    if (kv.key == "split.no" || kv.key == "split.count" || kv.key == "split.tensors.count") continue;
    writer.set_value(kv.key, kv.value);
  }
  writer.set_uint32("general.quantization_version", kQuantizationVersion);
  writer.set_uint32("general.file_type", static_cast<uint32_t>(*ftype));

  const unsigned threads = f.threads ? f.threads : std::max(1u, std::thread::hardware_concurrency());
  Progress progress(convert_weights, "quantizing");
  std::map<std::string, size_t> type_counts;
  uint64_t in_bytes = 0, out_bytes = 0, weights = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const gguf::TensorInfo& t = tensors[i];
    const std::span<const uint8_t> src = file->tensor_bytes(t);
    const TensorType type = choices[i].type;
    std::vector<uint8_t> data = type == t.type ? std::vector<uint8_t>(src.begin(), src.end())
                                               : convert(t, src, type, threads, progress);
    in_bytes += src.size();
    out_bytes += data.size();
    weights += t.n_elements;
    ++type_counts[std::string(gguf::type_name(type))];
    writer.add_tensor(t.name, type, t.dims, std::move(data));
  }
  progress.finish();

  {
    TmpCleanupOnSignal cleanup(f.out + ".tmp");
    writer.write(f.out, static_cast<uint32_t>(file->alignment()));
  }
  std::string counts;
  for (const auto& [name, n] : type_counts)
    counts += (counts.empty() ? "" : ", ") + std::to_string(n) + " " + name;
  std::fprintf(stderr,
               "wrote %s: %s (general.file_type %u), %zu tensors (%s); %s -> %s, %.2f bits per weight\n",
               f.out.c_str(), std::string(quant::file_type_name(*ftype)).c_str(),
               static_cast<uint32_t>(*ftype), tensors.size(), counts.c_str(), mib(in_bytes).c_str(),
               mib(out_bytes).c_str(), weights ? out_bytes * 8.0 / weights : 0.0);
  return 0;
}

}  // namespace

Action add_quantize(CLI::App& app) {
  auto f = std::make_shared<QuantizeFlags>();
  app.add_option("input", f->in, "GGUF model to quantize (f32, f16, bf16 or already quantized)")->required();
  app.add_option("output", f->out, "GGUF file to write (not the input)")->required();
  app.add_option("type", f->type, "quantization mix: " + quant::file_type_names())->required();
  app.add_option("-t,--threads", f->threads, "worker threads (default: all cores)");
  return [f] { return quantize(*f); };
}

}  // namespace wgllm::cli
