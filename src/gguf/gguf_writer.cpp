#include "gguf/gguf_writer.hpp"

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.hpp"

namespace wgllm::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF"
constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
// llama.cpp keeps tensor names in a char[GGML_MAX_NAME = 64] with its terminator: longer names would
// make files it cannot load.
constexpr size_t kMaxTensorName = 63;

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

void put_string(std::vector<uint8_t>& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

[[noreturn]] void bad_value(const std::string& key, const std::string& problem) {
  fail_input("GGUF writer: metadata key '" + key + "': " + problem);
}

bool in_range(ValueType t, uint64_t u, int64_t i) {
  switch (t) {
    case ValueType::U8:
      return u <= UINT8_MAX;
    case ValueType::U16:
      return u <= UINT16_MAX;
    case ValueType::U32:
      return u <= UINT32_MAX;
    case ValueType::BOOL:
      return u <= 1;
    case ValueType::I8:
      return i >= INT8_MIN && i <= INT8_MAX;
    case ValueType::I16:
      return i >= INT16_MIN && i <= INT16_MAX;
    case ValueType::I32:
      return i >= INT32_MIN && i <= INT32_MAX;
    default:
      return true;
  }
}

bool fits_f32(double f) {
  return !std::isfinite(f) || std::fabs(f) <= std::numeric_limits<float>::max();
}

// One scalar (u/i/f as Value holds them) in the file's representation of `t`.
void put_scalar(std::vector<uint8_t>& out, ValueType t, uint64_t u, int64_t i, double f) {
  switch (t) {
    case ValueType::U8:
    case ValueType::BOOL:
      put<uint8_t>(out, static_cast<uint8_t>(u));
      break;
    case ValueType::U16:
      put<uint16_t>(out, static_cast<uint16_t>(u));
      break;
    case ValueType::U32:
      put<uint32_t>(out, static_cast<uint32_t>(u));
      break;
    case ValueType::U64:
      put<uint64_t>(out, u);
      break;
    case ValueType::I8:
      put<int8_t>(out, static_cast<int8_t>(i));
      break;
    case ValueType::I16:
      put<int16_t>(out, static_cast<int16_t>(i));
      break;
    case ValueType::I32:
      put<int32_t>(out, static_cast<int32_t>(i));
      break;
    case ValueType::I64:
      put<int64_t>(out, i);
      break;
    case ValueType::F32:
      put<float>(out, static_cast<float>(f));
      break;
    case ValueType::F64:
      put<double>(out, f);
      break;
    case ValueType::STRING:
    case ValueType::ARRAY:
      break;  // not scalars
  }
}

// Checks that `v` is something the reader accepts (types, ranges, nesting), so a writer mistake surfaces
// at set time naming the key rather than as an unreadable file.
void validate(const std::string& key, const Value& v, int depth) {
  auto valid_type = [](ValueType t) {
    return static_cast<uint32_t>(t) <= static_cast<uint32_t>(ValueType::F64);
  };
  if (!valid_type(v.type))
    bad_value(key, "invalid value type " + std::to_string(static_cast<uint32_t>(v.type)));
  auto check_scalar = [&](ValueType t, uint64_t u, int64_t i, double f) {
    if (!in_range(t, u, i)) {
      const bool is_signed = t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32;
      bad_value(key, "value " + (is_signed ? std::to_string(i) : std::to_string(u)) + " does not fit " +
                         std::string(value_type_name(t)));
    }
    if (t == ValueType::F32 && !fits_f32(f))
      bad_value(key, "value " + std::to_string(f) + " does not fit f32");
  };
  if (v.type == ValueType::STRING) return;
  if (v.type != ValueType::ARRAY) return check_scalar(v.type, v.u, v.i, v.f);
  if (depth > kMaxArrayDepth)
    bad_value(key, "arrays nest deeper than " + std::to_string(kMaxArrayDepth) + " levels");
  const ValueType et = v.elem_type;
  if (!valid_type(et))
    bad_value(key, "invalid array element type " + std::to_string(static_cast<uint32_t>(et)));
  switch (et) {
    case ValueType::STRING:
      break;
    case ValueType::ARRAY:
      for (const Value& a : v.arrays) {
        if (a.type != ValueType::ARRAY)
          bad_value(key, "array of arrays holds a " + std::string(value_type_name(a.type)));
        validate(key, a, depth + 1);
      }
      break;
    case ValueType::I8:
    case ValueType::I16:
    case ValueType::I32:
    case ValueType::I64:
      for (int64_t i : v.ints) check_scalar(et, 0, i, 0);
      break;
    case ValueType::F32:
    case ValueType::F64:
      for (double f : v.floats) check_scalar(et, 0, 0, f);
      break;
    default:
      for (uint64_t u : v.uints) check_scalar(et, u, 0, 0);
  }
}

void put_value(std::vector<uint8_t>& out, const Value& v) {
  if (v.type == ValueType::STRING) return put_string(out, v.str);
  if (v.type != ValueType::ARRAY) return put_scalar(out, v.type, v.u, v.i, v.f);
  const ValueType et = v.elem_type;
  put<uint32_t>(out, static_cast<uint32_t>(et));
  put<uint64_t>(out, v.array_size());
  switch (et) {
    case ValueType::STRING:
      for (const std::string& s : v.strings) put_string(out, s);
      break;
    case ValueType::ARRAY:
      for (const Value& a : v.arrays) put_value(out, a);
      break;
    case ValueType::I8:
    case ValueType::I16:
    case ValueType::I32:
    case ValueType::I64:
      for (int64_t i : v.ints) put_scalar(out, et, 0, i, 0);
      break;
    case ValueType::F32:
    case ValueType::F64:
      for (double f : v.floats) put_scalar(out, et, 0, 0, f);
      break;
    default:
      for (uint64_t u : v.uints) put_scalar(out, et, u, 0, 0);
  }
}

uint64_t align_up(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

// The temporary output: removed on destruction unless committed, so no failure leaves it behind.
class TempOutput {
 public:
  explicit TempOutput(const std::string& path) : path_(path), tmp_(path + ".tmp") {
    file_ = std::fopen(tmp_.c_str(), "wb");
    if (!file_) fail_input(tmp_ + ": cannot create: " + std::strerror(errno));
  }
  ~TempOutput() {
    if (file_) std::fclose(file_);
    if (!committed_) std::remove(tmp_.c_str());
  }
  TempOutput(const TempOutput&) = delete;
  TempOutput& operator=(const TempOutput&) = delete;

  void write(const uint8_t* data, size_t n) {
    if (n && std::fwrite(data, 1, n, file_) != n)
      fail_runtime(tmp_ + ": write failed: " + std::strerror(errno));
  }
  void commit() {
    const int rc = std::fclose(file_);
    file_ = nullptr;
    if (rc != 0) fail_runtime(tmp_ + ": write failed: " + std::strerror(errno));
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      fail_runtime(path_ + ": cannot rename " + tmp_ + " into place: " + std::strerror(errno));
    }
    committed_ = true;
  }

 private:
  std::string path_;
  std::string tmp_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

}  // namespace

void GgufWriter::set(const std::string& key, Value v) {
  if (key.empty() || key.size() > kMaxNameBytes) {
    fail_input("GGUF writer: metadata key '" + key.substr(0, 80) + "': length " + std::to_string(key.size()) +
               " is outside 1.." + std::to_string(kMaxNameBytes));
  }
  validate(key, v, 1);
  for (auto& [k, old] : kv_) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::set_uint32(const std::string& key, uint32_t v) {
  Value x;
  x.type = ValueType::U32;
  x.u = v;
  set(key, std::move(x));
}

void GgufWriter::set_int32(const std::string& key, int32_t v) {
  Value x;
  x.type = ValueType::I32;
  x.i = v;
  set(key, std::move(x));
}

void GgufWriter::set_uint64(const std::string& key, uint64_t v) {
  Value x;
  x.type = ValueType::U64;
  x.u = v;
  set(key, std::move(x));
}

void GgufWriter::set_float32(const std::string& key, float v) {
  Value x;
  x.type = ValueType::F32;
  x.f = v;
  set(key, std::move(x));
}

void GgufWriter::set_bool(const std::string& key, bool v) {
  Value x;
  x.type = ValueType::BOOL;
  x.u = v;
  set(key, std::move(x));
}

void GgufWriter::set_string(const std::string& key, const std::string& v) {
  Value x;
  x.type = ValueType::STRING;
  x.str = v;
  set(key, std::move(x));
}

void GgufWriter::set_strings(const std::string& key, const std::vector<std::string>& v) {
  Value x;
  x.type = ValueType::ARRAY;
  x.elem_type = ValueType::STRING;
  x.strings = v;
  set(key, std::move(x));
}

void GgufWriter::set_float32s(const std::string& key, const std::vector<float>& v) {
  Value x;
  x.type = ValueType::ARRAY;
  x.elem_type = ValueType::F32;
  x.floats.assign(v.begin(), v.end());
  set(key, std::move(x));
}

void GgufWriter::set_int32s(const std::string& key, const std::vector<int32_t>& v) {
  Value x;
  x.type = ValueType::ARRAY;
  x.elem_type = ValueType::I32;
  x.ints.assign(v.begin(), v.end());
  set(key, std::move(x));
}

void GgufWriter::set_value(const std::string& key, const Value& v) {
  set(key, v);
}

uint64_t GgufWriter::check_tensor(const std::string& name, TensorType type,
                                  const std::vector<uint64_t>& dims) const {
  auto fail = [&](const std::string& problem) {
    fail_input("GGUF writer: tensor '" + name.substr(0, 80) + "': " + problem);
  };
  if (name.empty() || name.size() > kMaxTensorName) {
    fail("name length " + std::to_string(name.size()) + " is outside 1.." + std::to_string(kMaxTensorName));
  }
  for (const Tensor& t : tensors_) {
    if (t.name == name) fail("duplicate tensor name");
  }
  const auto traits = type_traits(static_cast<uint32_t>(type));
  if (!traits) fail("unknown tensor type " + std::to_string(static_cast<uint32_t>(type)));
  if (dims.empty() || dims.size() > kMaxDims) {
    fail(std::to_string(dims.size()) + " dims, expected 1.." + std::to_string(kMaxDims));
  }
  uint64_t n = 1;
  for (uint64_t d : dims) {
    if (d == 0) fail("a dimension is 0");
    if (__builtin_mul_overflow(n, d, &n) || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail("too many elements");
    }
  }
  if (dims[0] % traits->block_elements != 0) {
    fail("dims[0] " + std::to_string(dims[0]) + " is not a multiple of the block size " +
         std::to_string(traits->block_elements) + " of " + std::string(traits->name));
  }
  uint64_t expected = 0;
  if (__builtin_mul_overflow(n / traits->block_elements, traits->block_bytes, &expected))
    fail("too many bytes");
  return expected;
}

void GgufWriter::add_tensor(const std::string& name, TensorType type, std::vector<uint64_t> dims,
                            std::vector<uint8_t> bytes) {
  const uint64_t expected = check_tensor(name, type, dims);
  if (expected != bytes.size()) {
    fail_input("GGUF writer: tensor '" + name.substr(0, 80) + "': " + std::to_string(bytes.size()) +
               " bytes given, " + std::string(type_name(type)) + " of these dims takes " +
               std::to_string(expected));
  }
  tensors_.push_back(Tensor{name, type, std::move(dims), expected, std::move(bytes), nullptr});
}

void GgufWriter::add_streamed_tensor(const std::string& name, TensorType type, std::vector<uint64_t> dims,
                                     TensorSource source) {
  const uint64_t expected = check_tensor(name, type, dims);
  tensors_.push_back(Tensor{name, type, std::move(dims), expected, {}, std::move(source)});
}

void GgufWriter::write(const std::string& path, uint32_t alignment) const {
  if (!std::has_single_bit(alignment)) {
    fail_input(path + ": GGUF writer: alignment " + std::to_string(alignment) +
               " is not a non-zero power of two");
  }
  // The written general.alignment always matches the layout: an existing key (e.g. copied from another
  // file) is overwritten where it stands; otherwise it is added only when it differs from the default.
  Value align_value;
  align_value.type = ValueType::U32;
  align_value.u = alignment;
  bool has_alignment_key = false;
  for (const auto& kv : kv_) has_alignment_key |= kv.first == "general.alignment";
  const bool add_alignment_key = !has_alignment_key && alignment != kDefaultAlignment;

  std::vector<uint8_t> head;
  put<uint32_t>(head, kMagic);
  put<uint32_t>(head, kVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_.size() + (add_alignment_key ? 1 : 0));
  auto put_kv = [&](const std::string& key, const Value& v) {
    put_string(head, key);
    put<uint32_t>(head, static_cast<uint32_t>(v.type));
    put_value(head, v);
  };
  for (const auto& [key, v] : kv_) put_kv(key, key == "general.alignment" ? align_value : v);
  if (add_alignment_key) put_kv("general.alignment", align_value);

  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) put<uint64_t>(head, d);
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, offset);
    offset = align_up(offset + t.n_bytes, alignment);
  }
  head.resize(align_up(head.size(), alignment), 0);

  TempOutput out(path);
  out.write(head.data(), head.size());
  const std::vector<uint8_t> zeros(alignment, 0);
  for (const Tensor& t : tensors_) {
    if (t.source) {
      const std::vector<uint8_t> bytes = t.source();
      if (bytes.size() != t.n_bytes) {
        fail_input("GGUF writer: tensor '" + t.name + "': its source produced " +
                   std::to_string(bytes.size()) + " bytes, " + std::string(type_name(t.type)) +
                   " of these dims takes " + std::to_string(t.n_bytes));
      }
      out.write(bytes.data(), bytes.size());
    } else {
      out.write(t.bytes.data(), t.bytes.size());
    }
    out.write(zeros.data(), align_up(t.n_bytes, alignment) - t.n_bytes);
  }
  out.commit();
}

}  // namespace wgllm::gguf
