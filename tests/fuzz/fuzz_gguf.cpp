// A GGUF file from a stranger, as `wgllm run -m FILE` reads it: the reader (header, metadata, tensor
// table), then what trusts what open() validated: every metadata value through the typed getters, every
// tensor's bytes, and the vocabulary. Anything but a clean Error(BadInput) is a failure. The browser's
// reader, parse_header() from a prefix of the file, must agree with open(): the same message or the same
// tables, after as many PrefixTooShort rounds as it asks for.
#include <algorithm>
#include <memory>
#include <string>
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

bool same_tables(const GgufFile& a, const GgufFile& b) {
  if (a.version() != b.version() || a.alignment() != b.alignment() || a.data_offset() != b.data_offset() ||
      a.metadata().size() != b.metadata().size() || a.tensors().size() != b.tensors().size())
    return false;
  for (size_t i = 0; i < a.metadata().size(); ++i) {
    const gguf::KeyValue &x = a.metadata()[i], &y = b.metadata()[i];
    if (x.key != y.key || x.offset != y.offset || x.value.type != y.value.type ||
        x.value.array_size() != y.value.array_size())
      return false;
  }
  for (size_t i = 0; i < a.tensors().size(); ++i) {
    const gguf::TensorInfo &x = a.tensors()[i], &y = b.tensors()[i];
    if (x.name != y.name || x.dims != y.dims || x.type != y.type || x.offset != y.offset) return false;
  }
  return true;
}

// `opened`: what open() made of `bytes`, or null with its message in `open_error`.
void check_prefix_parse(std::string_view bytes, const std::string& path, const GgufFile* opened,
                        const std::string& open_error, uint64_t prefix) {
  for (int round = 0;; ++round) {
    check(round < 100, "parse_header keeps asking for more bytes");
    try {
      const auto f = GgufFile::parse_header(path, std::vector<uint8_t>(bytes.begin(), bytes.begin() + prefix),
                                            bytes.size());
      check(opened, "parse_header accepted a file open() refuses", open_error);
      check(same_tables(*f, *opened), "parse_header and open() read different tables");
      return;
    } catch (const gguf::PrefixTooShort& e) {
      check(e.needed() > prefix && e.needed() <= bytes.size(),
            "PrefixTooShort asks for bytes it has, or beyond "
            "the file",
            e.what());
      // As a host reads: at least what is asked, and at least twice what it had (needed() names the end of
      // the next field only, so reading just that would parse the vocabulary once per token).
      prefix = std::max<uint64_t>(e.needed(), std::min<uint64_t>(2 * prefix + 1, bytes.size()));
    } catch (const Error& e) {
      check(!opened, "parse_header refused a file open() accepts", e.what());
      check(e.what() == open_error, "parse_header's message differs from open()'s",
            std::string(e.what()) + " | " + open_error);
      return;
    }
  }
}

}  // namespace
}  // namespace wgllm::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wgllm;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const fuzz::MemoryFile input(bytes);
  std::unique_ptr<gguf::GgufFile> file;
  std::string open_error;
  try {
    file = gguf::GgufFile::open(input.path());
  } catch (const Error& e) {
    fuzz::check(e.kind() == ErrorKind::BadInput, "open() gave a runtime error, not bad input", e.what());
    open_error = e.what();
  }
  // The first prefix tried: a fraction of the file that the last byte chooses.
  const uint64_t prefix = size ? size * data[size - 1] / 255 : 0;
  fuzz::check_prefix_parse(bytes, input.path(), file.get(), open_error, prefix);
  if (!file) return 0;
  fuzz::walk_metadata(*file);
  fuzz::walk_tensors(*file);
  fuzz::load_vocabulary(*file);
  return 0;
}
