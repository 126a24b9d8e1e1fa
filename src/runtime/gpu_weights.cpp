#include "runtime/gpu_weights.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <numeric>
#include <optional>
#include <string>

#include "core/error.hpp"
#include "kernels/kernel_sources.hpp"
#include "quant/gpu_layout.hpp"

namespace wgllm::runtime {

namespace {

using kernels::f32;
using kernels::u32;

std::span<const uint8_t> words(const std::vector<uint32_t>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4};
}

template <typename T>
std::span<const uint8_t> bytes_of(const T& v) {
  return {reinterpret_cast<const uint8_t*>(&v), sizeof v};
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

// repack.wgsl's Params: one piece of one matrix chunk.
struct RepackParams {
  uint32_t first_block = 0, n_blocks = 0;
  uint32_t pairs_at = 0, bits_at = 0, scales1_at = 0;
  uint32_t pad[3] = {};
};

gpu::KernelDefines repack_defines(gguf::TensorType type, const quant::PlaneLayout& l) {
  gpu::KernelDefines d = {{"WTYPE_" + upper(gguf::type_name(type)), "1"},
                          {"BLOCK_BYTES", u32(gguf::type_traits(static_cast<uint32_t>(type))->block_bytes)},
                          {"CPB", u32(l.chunks_per_block)},
                          {"S0_OFFSET", u32(l.scales[0].offset)},
                          {"S0_BYTES", u32(l.scales[0].bytes)},
                          {"S1_OFFSET", u32(l.scales[1].offset)},
                          {"S1_BYTES", u32(l.scales[1].bytes)}};
  if (l.bytes) d["BYTES"] = "1";
  if (l.nibbles) d["NIBBLES"] = "1";
  if (l.pairs >= 0) {
    d["PAIRS"] = "1";
    d["PAIR_SHIFT"] = u32(l.pairs);
  }
  if (l.bits >= 0) {
    d["BITS"] = "1";
    d["BIT_SHIFT"] = u32(l.bits);
  }
  return d;
}

}  // namespace

struct WeightUpload::Impl {
  gpu::Device& device;
  Options options;
  Impl* outer = nullptr;  // the upload this one hides while alive

  gpu::Buffer scratch, params;  // created at the first piece
  struct Job {
    gpu::Kernel kernel;
    gpu::BindGroup group;  // params, scratch, the chunk's quants and scales
    RepackParams params;
  };
  std::vector<Piece> pieces;
  std::vector<std::optional<Job>> jobs;  // [pieces.size()]: the repack that follows a piece into the scratch
  bool sorted = true;

  uint64_t scratch_size(const gguf::GgufFile& file) {
    if (!scratch) {
      // A small model needs no more than its own size; every size holds two blocks of any type.
      uint64_t size = std::min({options.scratch_bytes, (file.tensor_data_bytes() + 3) & ~uint64_t(3),
                                device.limits().max_storage_buffer_binding_size});
      scratch =
          device.buffer(std::max<uint64_t>(size & ~uint64_t(3), 512), gpu::kStorage, "weight upload scratch");
      params = device.buffer(sizeof(RepackParams), gpu::kUniform, "repack params");
    }
    return scratch.size;
  }

  // Pieces of bytes [offset, offset + size) of the file copied straight into `dst` from `dst_offset`.
  void add_direct(const gguf::GgufFile& file, uint64_t offset, uint64_t size, gpu::Buffer dst,
                  uint64_t dst_offset = 0) {
    const uint64_t step = scratch_size(file);
    for (uint64_t at = 0; at < size; at += step) {
      pieces.push_back({offset + at, std::min(step, size - at), dst, dst_offset + at});
      jobs.emplace_back();
    }
  }

  // Pieces of `blocks` blocks from `offset` in the file, each followed by its repack into a matrix chunk's
  // buffers from block `first_block` on (even: repack.wgsl writes pairs of blocks) of the chunk's
  // `chunk_blocks` (0: `blocks`).
  void add_repacked(const gguf::GgufFile& file, gguf::TensorType type, uint64_t offset, uint64_t blocks,
                    const GpuMatrix::Chunk& chunk, uint64_t first_block = 0, uint64_t chunk_blocks = 0) {
    const quant::PlaneLayout& layout = *quant::plane_layout(type);
    const uint64_t block_bytes = gguf::type_traits(static_cast<uint32_t>(type))->block_bytes;
    const uint64_t per_piece = std::max<uint64_t>(2, scratch_size(file) / block_bytes / 2 * 2);  // even
    const quant::PlaneOffsets o = quant::plane_offsets(layout, chunk_blocks ? chunk_blocks : blocks);
    gpu::Kernel kernel = device.kernel("repack", repack_defines(type, layout));
    const gpu::BufferSlice bindings[] = {{params}, {scratch}, {chunk.quants}, {chunk.scales}};
    gpu::BindGroup group = device.bind(kernel, bindings);
    for (uint64_t first = 0; first < blocks; first += per_piece) {
      const uint64_t n = std::min(per_piece, blocks - first);
      pieces.push_back({offset + first * block_bytes, n * block_bytes, scratch, 0});
      RepackParams p;
      p.first_block = static_cast<uint32_t>(first_block + first);
      p.n_blocks = static_cast<uint32_t>(n);
      p.pairs_at = static_cast<uint32_t>(o.pairs_at);
      p.bits_at = static_cast<uint32_t>(o.bits_at);
      p.scales1_at = static_cast<uint32_t>(o.scales_at[1]);
      jobs.push_back(Job{kernel, group, p});
    }
  }

  // Without `deferred`, the pieces just added (all of tensor t) are written from the file's mapping and
  // repacked at once.
  void run_from(const gguf::GgufFile& file, const gguf::TensorInfo& t, size_t first) {
    if (options.deferred) {
      sorted = false;
      return;
    }
    const std::span<const uint8_t> bytes = file.tensor_bytes(t);
    const uint64_t start = file.data_offset() + t.offset;
    for (size_t i = first; i < pieces.size(); ++i) {
      const Piece& p = pieces[i];
      device.write(p.dst, p.dst_offset, bytes.subspan(p.file_offset - start, p.size));
      run_job(i);
    }
    pieces.resize(first);
    jobs.resize(first);
  }

  void run_job(size_t i) {
    if (!jobs[i]) return;
    const Job& j = *jobs[i];
    device.write(params, 0, bytes_of(j.params));
    constexpr uint64_t kBlocksPerWorkgroup = 2 * 64;  // repack.wgsl: two blocks per invocation
    const uint64_t groups = (j.params.n_blocks + kBlocksPerWorkgroup - 1) / kBlocksPerWorkgroup;
    const uint64_t max_x = std::max<uint32_t>(1, device.limits().max_compute_workgroups_per_dimension);
    const uint64_t x = std::min(groups, max_x);
    device.dispatch(j.kernel, j.group, static_cast<uint32_t>(x), static_cast<uint32_t>((groups + x - 1) / x));
    device.submit();
  }
};

namespace {

thread_local WeightUpload::Impl* current_upload = nullptr;

}  // namespace

WeightUpload::WeightUpload(gpu::Device& device, const Options& options)
    : impl_(new Impl{device, options, current_upload}) {
  if (impl_->options.deferred) impl_->options.gpu_repack = true;
  if (!impl_->options.gpu_repack) impl_->options.gpu_repack = device.info().adapter_type != "CPU";
  current_upload = impl_.get();
}

WeightUpload::~WeightUpload() {
  current_upload = impl_->outer;
}

bool WeightUpload::active() {
  return current_upload != nullptr;
}

const std::vector<WeightUpload::Piece>& WeightUpload::pieces() {
  Impl& m = *impl_;
  if (!m.sorted) {
    std::vector<size_t> order(m.pieces.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return m.pieces[a].file_offset < m.pieces[b].file_offset; });
    std::vector<Piece> pieces;
    std::vector<std::optional<Impl::Job>> jobs;
    for (size_t i : order) {
      pieces.push_back(m.pieces[i]);
      jobs.push_back(m.jobs[i]);
    }
    m.pieces = std::move(pieces);
    m.jobs = std::move(jobs);
    m.sorted = true;
  }
  return m.pieces;
}

void WeightUpload::finish(size_t piece) {
  pieces();
  impl_->run_job(piece);
}

uint64_t GpuMatrix::gpu_bytes() const {
  uint64_t n = 0;
  for (const Chunk& c : chunks) n += c.quants.size + c.scales.size;
  return n;
}

GpuMatrix upload_matrix(gpu::Device& device, const gguf::GgufFile& file, const gguf::TensorInfo& t,
                        uint32_t group_rows) {
  if (!quant::has_gpu_layout(t.type))
    fail_input(file.path() + ": tensor '" + t.name + "' has type " + std::string(gguf::type_name(t.type)) +
               ", which the GPU kernels do not read (they read " + gpu_type_names() + ")");
  WeightUpload::Impl* up = current_upload && &current_upload->device == &device ? current_upload : nullptr;
  GpuMatrix m;
  m.type = t.type;
  m.cols = static_cast<uint32_t>(t.dims[0]);
  m.rows = static_cast<uint32_t>(t.rows());
  m.bytes = t.n_bytes;
  const uint64_t row_bytes = t.n_bytes / m.rows;
  // Chunks hold whole rows, a multiple of the GEMV's 8 rows per workgroup, within one binding.
  const uint64_t limit =
      up && up->options.chunk_limit
          ? up->options.chunk_limit
          : std::min(device.limits().max_storage_buffer_binding_size, device.limits().max_buffer_size);
  uint64_t rows_per_chunk = std::max<uint64_t>(8, (limit / (row_bytes + 8)) / 8 * 8);
  if (group_rows > 1) {
    if (m.rows % group_rows != 0 || uint64_t(group_rows) * (row_bytes + 8) > limit)
      fail_input(file.path() + ": tensor '" + t.name + "' of " + std::to_string(m.rows) +
                 " rows is not whole experts of " + std::to_string(group_rows) +
                 " rows that each fit one GPU binding of " + std::to_string(limit) + " bytes");
    rows_per_chunk = limit / (row_bytes + 8) / group_rows * group_rows;
  }
  const quant::PlaneLayout* layout = quant::plane_layout(t.type);
  const uint64_t block_elements = gguf::type_traits(static_cast<uint32_t>(t.type))->block_elements;
  const size_t first_piece = up ? up->pieces.size() : 0;
  for (uint64_t first = 0; first < m.rows; first += rows_per_chunk) {
    const uint64_t n = std::min<uint64_t>(rows_per_chunk, m.rows - first);
    GpuMatrix::Chunk c;
    c.first_row = static_cast<uint32_t>(first);
    c.rows = static_cast<uint32_t>(n);
    if (up && *up->options.gpu_repack) {
      const uint64_t offset = file.data_offset() + t.offset + first * row_bytes;
      if (layout) {
        const uint64_t blocks = n * m.cols / block_elements;
        const quant::PlaneOffsets o = quant::plane_offsets(*layout, blocks);
        c.quants = device.buffer(o.quant_words * 4, gpu::kStorage, t.name);
        c.scales = device.buffer(o.scale_words * 4, gpu::kStorage, t.name + " scales");
        up->add_repacked(file, t.type, offset, blocks, c);
      } else {
        c.quants = device.buffer((n * row_bytes + 3) / 4 * 4, gpu::kStorage, t.name);
        up->add_direct(file, offset, n * row_bytes, c.quants);
      }
    } else {
      quant::GpuLayout packed =
          quant::repack(t.type, file.tensor_bytes(t).data() + first * row_bytes, n, m.cols);
      c.quants = device.buffer(packed.quants.size() * 4, gpu::kStorage, t.name);
      device.write(c.quants, 0, words(packed.quants));
      if (!packed.scales.empty()) {
        c.scales = device.buffer(packed.scales.size() * 4, gpu::kStorage, t.name + " scales");
        device.write(c.scales, 0, words(packed.scales));
      }
    }
    m.chunks.push_back(c);
  }
  if (up && *up->options.gpu_repack) up->run_from(file, t, first_piece);
  return m;
}

std::optional<GpuMatrix> upload_stacked(gpu::Device& device, const gguf::GgufFile& file,
                                        std::span<const gguf::TensorInfo* const> tensors) {
  const gguf::TensorInfo& t0 = *tensors.front();
  if (!quant::has_gpu_layout(t0.type)) return std::nullopt;
  WeightUpload::Impl* up = current_upload && &current_upload->device == &device ? current_upload : nullptr;
  const quant::PlaneLayout* layout = quant::plane_layout(t0.type);
  const uint64_t block_elements = gguf::type_traits(static_cast<uint32_t>(t0.type))->block_elements;
  GpuMatrix m;
  m.type = t0.type;
  m.cols = static_cast<uint32_t>(t0.dims[0]);
  for (const gguf::TensorInfo* t : tensors) {
    const uint64_t blocks = t->rows() * m.cols / block_elements;
    // The GPU path places each tensor at a whole word (raw) or an even block (repacked).
    if (t->type != m.type || t->dims[0] != m.cols || t->n_bytes % 4 != 0 || (layout && blocks % 2 != 0))
      return std::nullopt;
    m.rows += static_cast<uint32_t>(t->rows());
    m.bytes += t->n_bytes;
  }
  const uint64_t limit =
      up && up->options.chunk_limit
          ? up->options.chunk_limit
          : std::min(device.limits().max_storage_buffer_binding_size, device.limits().max_buffer_size);
  if (m.bytes + 64 > limit) return std::nullopt;  // one chunk: the planes' padding is a few words
  GpuMatrix::Chunk c;
  c.rows = m.rows;
  const std::string name = t0.name + " (stacked)";
  if (up && *up->options.gpu_repack) {
    const uint64_t total_blocks = uint64_t(m.rows) * m.cols / block_elements;
    if (layout) {
      const quant::PlaneOffsets o = quant::plane_offsets(*layout, total_blocks);
      c.quants = device.buffer(o.quant_words * 4, gpu::kStorage, name);
      c.scales = device.buffer(o.scale_words * 4, gpu::kStorage, name + " scales");
    } else {
      c.quants = device.buffer(m.bytes, gpu::kStorage, name);
    }
    uint64_t first_block = 0, at = 0;
    for (const gguf::TensorInfo* t : tensors) {
      const size_t first_piece = up->pieces.size();
      const uint64_t offset = file.data_offset() + t->offset;
      const uint64_t blocks = t->rows() * m.cols / block_elements;
      if (layout) {
        up->add_repacked(file, t->type, offset, blocks, c, first_block, total_blocks);
      } else {
        up->add_direct(file, offset, t->n_bytes, c.quants, at);
      }
      up->run_from(file, *t, first_piece);
      first_block += blocks;
      at += t->n_bytes;
    }
  } else {
    std::vector<uint8_t> bytes;
    bytes.reserve(m.bytes);
    for (const gguf::TensorInfo* t : tensors) {
      const std::span<const uint8_t> b = file.tensor_bytes(*t);
      bytes.insert(bytes.end(), b.begin(), b.end());
    }
    quant::GpuLayout packed = quant::repack(m.type, bytes.data(), m.rows, m.cols);
    c.quants = device.buffer(packed.quants.size() * 4, gpu::kStorage, name);
    device.write(c.quants, 0, words(packed.quants));
    if (!packed.scales.empty()) {
      c.scales = device.buffer(packed.scales.size() * 4, gpu::kStorage, name + " scales");
      device.write(c.scales, 0, words(packed.scales));
    }
  }
  m.chunks.push_back(c);
  return m;
}

gpu::Buffer upload_f32(gpu::Device& device, const gguf::GgufFile& file, const gguf::TensorInfo& t) {
  const gguf::TensorInfo* one[] = {&t};
  return upload_f32s(device, file, one);
}

gpu::Buffer upload_f32s(gpu::Device& device, const gguf::GgufFile& file,
                        std::span<const gguf::TensorInfo* const> tensors) {
  uint64_t bytes = 0;
  for (const gguf::TensorInfo* t : tensors) {
    if (t->type != gguf::TensorType::F32)
      fail_input(file.path() + ": tensor '" + t->name + "' must be f32, is " +
                 std::string(gguf::type_name(t->type)));
    bytes += t->n_bytes;
  }
  gpu::Buffer b = device.buffer(bytes, gpu::kStorage, tensors.front()->name);
  WeightUpload::Impl* up = current_upload && &current_upload->device == &device ? current_upload : nullptr;
  uint64_t at = 0;
  for (const gguf::TensorInfo* t : tensors) {
    if (up && up->options.deferred) {
      const size_t first_piece = up->pieces.size();
      up->add_direct(file, file.data_offset() + t->offset, t->n_bytes, b, at);
      up->run_from(file, *t, first_piece);
    } else {
      device.write(b, at, file.tensor_bytes(*t));
    }
    at += t->n_bytes;
  }
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
