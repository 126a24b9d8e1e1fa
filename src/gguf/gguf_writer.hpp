// GGUF v3 writer: metadata and tensors in, a standard file out. Tests build synthetic models with it;
// `wgllm quantize` and `convert` write through it. Output goes to PATH.tmp and is renamed into place
// only when complete, so a failure never leaves a half-written file under the final name.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"

namespace wgllm::gguf {

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

  // `dims` in ggml order; `bytes` must be exactly the type's size for those dims.
  void add_tensor(const std::string& name, TensorType type, std::vector<uint64_t> dims,
                  std::vector<uint8_t> bytes);

  void write(const std::string& path, uint32_t alignment = 32) const;

 private:
  struct Tensor {
    std::string name;
    TensorType type;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> bytes;
  };
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace wgllm::gguf
