// Hugging Face safetensors: one file, or a model folder's shards listed by model.safetensors.index.json.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON ({"name": {"dtype", "shape",
// "data_offsets": [begin, end]}, "__metadata__": {string: string}}), then the data section that the offsets
// index. open() maps the file and checks everything up front, as the format's own reader does: the header
// fits the file and is at most kMaxHeaderBytes, every dtype is known, begin <= end, every tensor's byte
// size is its element count times its dtype's size, and the ranges cover the data section exactly, without
// overlaps or holes (the format forbids holes so that no other content can hide in a file). Every defect
// is an Error(BadInput) naming the file, the byte offset and the field.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.hpp"

namespace wgllm::hf {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the safetensors library's limit

// The format's dtypes. Only F32, F16 and BF16 can be read as numbers here (read_f32); the others are
// known so that a file holding them still opens and names them.
enum class Dtype { BOOL, U8, I8, F8_E4M3, F8_E5M2, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };
std::string_view dtype_name(Dtype d);
uint32_t dtype_bytes(Dtype d);

struct TensorInfo {
  std::string name;
  Dtype dtype;
  std::vector<uint64_t> shape;  // PyTorch order: shape.back() varies fastest
  uint64_t offset;              // absolute byte offset of the data in the file
  uint64_t n_bytes;
  uint64_t n_elements;
};

class SafetensorsFile {
 public:
  // Maps and validates the whole file. Throws Error(BadInput).
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return map_.path(); }
  uint64_t data_offset() const { return data_offset_; }  // 8 + header length
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::span<const uint8_t> bytes(const TensorInfo& t) const {
    return map_.bytes().subspan(t.offset, t.n_bytes);
  }

  // Decodes elements [first, first + n) of `t` (flat, row-major) as f32, exactly (F16/BF16 widen without
  // rounding). Throws Error(BadInput) naming the file, tensor and dtype when the dtype is not F32, F16 or
  // BF16, or the range is outside the tensor.
  void read_f32(const TensorInfo& t, uint64_t first, uint64_t n, float* out) const;
  // Elements first, first + stride, ... (n of them): a column of a matrix stored transposed. The same
  // checks as read_f32, over the whole range.
  void read_strided(const TensorInfo& t, uint64_t first, uint64_t stride, uint64_t n, float* out) const;

 private:
  explicit SafetensorsFile(MappedFile map) : map_(std::move(map)) {}
  void parse();
  void check_readable(const TensorInfo& t, uint64_t first, uint64_t n) const;

  MappedFile map_;
  uint64_t data_offset_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A model folder's tensors: model.safetensors, or the shards that model.safetensors.index.json's
// weight_map names (each shard opened once; every name it maps must be in that shard; shard names must be
// plain file names inside the folder). A name in two shards is an error.
class TensorSet {
 public:
  // Throws Error(BadInput) naming the folder when it holds neither file, or naming the index and field.
  static std::unique_ptr<TensorSet> open(const std::string& dir);

  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  const Entry* find(std::string_view name) const;
  // Throws Error(BadInput) naming the folder and the tensor.
  const Entry& require(std::string_view name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  std::vector<std::string> names() const;  // sorted
  const std::string& dir() const { return dir_; }

 private:
  void add(std::unique_ptr<SafetensorsFile> file);

  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace wgllm::hf
