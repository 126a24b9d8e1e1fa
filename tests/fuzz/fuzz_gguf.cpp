// A GGUF file from a stranger, as `wgllm run -m FILE` reads it: the reader (header, metadata, tensor
// table), then what trusts what open() validated: every metadata value through the typed getters, every
// tensor's bytes, and the vocabulary. Anything but a clean Error(BadInput) is a failure.
#include <memory>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "fuzz/fuzz_support.hpp"
#include "gguf/gguf_file.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::fuzz {
namespace {

using gguf::GgufFile;
using gguf::ValueType;

// Runs `fn`; an Error(BadInput) is an accepted answer, any other exception escapes to libFuzzer.
template <class Fn>
void tolerate_bad_input(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    check(e.kind() == ErrorKind::BadInput, "a hostile file gave a runtime error, not bad input", e.what());
  }
}

void walk_metadata(const GgufFile& file) {
  for (const gguf::KeyValue& kv : file.metadata()) {
    check(file.find(kv.key) == &kv.value, "find() does not return the key's own value", kv.key);
    check(!gguf::value_type_name(kv.value.type).empty(), "a value type without a name", kv.key);
    if (kv.value.type == ValueType::ARRAY) {
      tolerate_bad_input([&] { file.require_array(kv.key, kv.value.elem_type); });
      (void)kv.value.array_size();
    }
    tolerate_bad_input([&] { file.get_uint(kv.key, 0); });
    tolerate_bad_input([&] { file.get_int(kv.key, 0); });
    tolerate_bad_input([&] { file.get_float(kv.key, 0); });
    tolerate_bad_input([&] { file.get_bool(kv.key, false); });
    tolerate_bad_input([&] { file.get_string(kv.key, ""); });
  }
}

volatile uint8_t sink;

void walk_tensors(const GgufFile& file) {
  uint64_t total = 0;
  for (const gguf::TensorInfo& t : file.tensors()) {
    check(file.find_tensor(t.name) == &t, "find_tensor() does not return the tensor itself", t.name);
    tolerate_bad_input([&] { file.require_tensor(t.name, t.dims); });
    const std::span<const uint8_t> bytes = file.tensor_bytes(t);
    check(bytes.size() == t.n_bytes, "tensor_bytes() size differs from n_bytes", t.name);
    // Touch every byte: a view past the mapping faults here (or under ASan, reports).
    uint8_t sum = 0;
    for (uint8_t b : bytes) sum ^= b;
    sink = sum;
    total += t.n_bytes;
  }
  check(total == file.tensor_data_bytes(), "tensor_data_bytes() is not the sum of the tensors' sizes");
}

void load_vocabulary(const GgufFile& file) {
  tolerate_bad_input([&] {
    const auto tok = tokenizer::Tokenizer::from_gguf(file);
    const std::vector<int32_t> ids = tok->encode("Hello world! <s> 123 \xC3\xA9\xF0\x9F\xA6\x99", true, true);
    for (int32_t id : ids) check(id >= 0 && id < tok->n_vocab(), "encode gave an id outside the vocabulary");
    (void)tok->decode(ids, true);
  });
}

}  // namespace
}  // namespace wgllm::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wgllm;
  const fuzz::MemoryFile input(std::string_view(reinterpret_cast<const char*>(data), size));
  std::unique_ptr<gguf::GgufFile> file;
  try {
    file = gguf::GgufFile::open(input.path());
  } catch (const Error& e) {
    fuzz::check(e.kind() == ErrorKind::BadInput, "open() gave a runtime error, not bad input", e.what());
    return 0;
  }
  fuzz::walk_metadata(*file);
  fuzz::walk_tensors(*file);
  fuzz::load_vocabulary(*file);
  return 0;
}
