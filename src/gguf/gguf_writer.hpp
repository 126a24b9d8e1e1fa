// GGUF v3 writer: metadata and tensors in, a standard file out. Tests build synthetic models with it;
// `wgllm quantize` and `convert` write through it. Output goes to PATH.tmp and is renamed into place
// only when complete, so a failure never leaves a half-written file under the final name.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"

namespace wgllm::gguf {

// Setting a key again replaces its value where it stands (insertion order is kept). Values are checked
// (types, ranges, nesting) when set; tensors (name, type, dims, byte size) when added: Error(BadInput)
// naming the key or tensor. Tensors are laid out in insertion order, each padded to the alignment.
class GgufWriter {
 public:
  void set_uint32(const std::string& key, uint32_t v);
  void set_int32(const std::string& key, int32_t v);
  void set_uint64(const std::string& key, uint64_t v);
  void set_float32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_float32s(const std::string& key, const std::vector<float>& v);
  void set_int32s(const std::string& key, const std::vector<int32_t>& v);
  void set_value(const std::string& key, const Value& v);  // any Value, e.g. copied from another file

  // `dims` in ggml order (1..4 dims, each >= 1, dims[0] a multiple of the block size); `bytes` must be
  // exactly the type's size for those dims. Names are limited to 63 bytes, as llama.cpp's loader is.
  void add_tensor(const std::string& name, TensorType type, std::vector<uint64_t> dims,
                  std::vector<uint8_t> bytes);
  // The same, with the bytes produced while write() streams the file (in tensor order), so that a
  // converter holds one tensor at a time. A wrong size then fails the write, naming the tensor.
  using TensorSource = std::function<std::vector<uint8_t>()>;
  void add_streamed_tensor(const std::string& name, TensorType type, std::vector<uint64_t> dims,
                           TensorSource source);

  // `alignment`: a non-zero power of two, recorded as general.alignment when not 32 (or when the key
  // was set, whose value it then replaces). Throws Error(BadInput) when PATH.tmp can't be created,
  // Error(Runtime) when writing or renaming fails; PATH.tmp never survives a failure.
  void write(const std::string& path, uint32_t alignment = 32) const;

 private:
  void set(const std::string& key, Value v);
  // Checks name, type and dims; returns the byte size of such a tensor.
  uint64_t check_tensor(const std::string& name, TensorType type, const std::vector<uint64_t>& dims) const;

  struct Tensor {
    std::string name;
    TensorType type;
    std::vector<uint64_t> dims;
    uint64_t n_bytes;
    std::vector<uint8_t> bytes;  // empty when `source` produces them
    TensorSource source;
  };
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace wgllm::gguf
