#include "runtime/gpu_weights.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "quant/gpu_layout.hpp"

namespace wgllm::runtime {

namespace {

std::span<const uint8_t> words(const std::vector<uint32_t>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4};
}

std::string upper(std::string_view s) {
  std::string u(s);
  for (char& ch : u) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return u;
}

std::string gpu_type_names() {
  std::string names;
  for (uint32_t raw = 0; raw < 64; ++raw) {
    const auto traits = gguf::type_traits(raw);
    if (!traits || !quant::has_gpu_layout(static_cast<gguf::TensorType>(raw))) continue;
    names += (names.empty() ? "" : ", ") + std::string(traits->name);
  }
  return names;
}

}  // namespace

uint64_t GpuMatrix::gpu_bytes() const {
  uint64_t n = 0;
  for (const Chunk& c : chunks) n += c.quants.size + c.scales.size;
  return n;
}

GpuMatrix upload_matrix(gpu::Device& device, const gguf::GgufFile& file, const gguf::TensorInfo& t) {
  if (!quant::has_gpu_layout(t.type))
    fail_input(file.path() + ": tensor '" + t.name + "' has type " + std::string(gguf::type_name(t.type)) +
               ", which the GPU kernels do not read (they read " + gpu_type_names() + ")");
  GpuMatrix m;
  m.type = t.type;
  m.cols = static_cast<uint32_t>(t.dims[0]);
  m.rows = static_cast<uint32_t>(t.rows());
  m.bytes = t.n_bytes;
  const uint64_t row_bytes = t.n_bytes / m.rows;
  // Chunks hold whole rows, a multiple of the GEMV's 8 rows per workgroup, within one binding.
  const uint64_t limit =
      std::min(device.limits().max_storage_buffer_binding_size, device.limits().max_buffer_size);
  uint64_t rows_per_chunk = std::max<uint64_t>(8, (limit / (row_bytes + 8)) / 8 * 8);
  std::span<const uint8_t> bytes = file.tensor_bytes(t);
  for (uint64_t first = 0; first < m.rows; first += rows_per_chunk) {
    uint64_t n = std::min<uint64_t>(rows_per_chunk, m.rows - first);
    quant::GpuLayout packed = quant::repack(t.type, bytes.data() + first * row_bytes, n, m.cols);
    GpuMatrix::Chunk c;
    c.first_row = static_cast<uint32_t>(first);
    c.rows = static_cast<uint32_t>(n);
    c.quants = device.buffer(packed.quants.size() * 4, gpu::kStorage, t.name);
    device.write(c.quants, 0, words(packed.quants));
    if (!packed.scales.empty()) {
      c.scales = device.buffer(packed.scales.size() * 4, gpu::kStorage, t.name + " scales");
      device.write(c.scales, 0, words(packed.scales));
    }
    m.chunks.push_back(c);
  }
  return m;
}

gpu::Buffer upload_f32(gpu::Device& device, const gguf::GgufFile& file, const gguf::TensorInfo& t) {
  if (t.type != gguf::TensorType::F32)
    fail_input(file.path() + ": tensor '" + t.name + "' must be f32, is " +
               std::string(gguf::type_name(t.type)));
  gpu::Buffer b = device.buffer(t.n_bytes, gpu::kStorage, t.name);
  device.write(b, 0, file.tensor_bytes(t));
  return b;
}

gpu::KernelDefines weight_defines(gguf::TensorType type) {
  using T = gguf::TensorType;
  switch (type) {
    case T::F32:
      return {{"WTYPE_F32", "1"}};
    case T::F16:
      return {{"WTYPE_F16", "1"}, {"HALVES", "1"}};
    case T::BF16:
      return {{"WTYPE_BF16", "1"}, {"HALVES", "1"}};
    default:
      if (!quant::has_gpu_layout(type))
        fail_input("no GPU kernel for tensor type " + std::string(gguf::type_name(type)));
      return {{"WTYPE_" + upper(gguf::type_name(type)), "1"}, {"QUANT", "1"}};
  }
}

}  // namespace wgllm::runtime
