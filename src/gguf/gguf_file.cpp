#include "gguf/gguf_file.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/error.hpp"

namespace wgllm::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint64_t kMaxElements = std::numeric_limits<int64_t>::max();  // ggml counts elements in int64

bool valid_value_type(uint32_t t) {
  return t <= static_cast<uint32_t>(ValueType::F64);
}

// Fewest bytes one value of type `t` occupies in the file: bounds untrusted counts before any allocation.
uint64_t min_value_bytes(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::BOOL:
      return 1;
    case ValueType::U16:
    case ValueType::I16:
      return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32:
      return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
      return 8;
    case ValueType::STRING:
      return 8;  // the length
    case ValueType::ARRAY:
      return 4 + 8;  // element type and count
  }
  return 1;
}

bool is_signed(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}
bool is_unsigned(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64;
}
bool is_float(ValueType t) {
  return t == ValueType::F32 || t == ValueType::F64;
}

// Untrusted names go into messages: printable ASCII kept, other bytes escaped, long names cut.
std::string quote(std::string_view s) {
  constexpr size_t kShown = 80;
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < kShown; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  out += s.size() > kShown ? "'... (" + std::to_string(s.size()) + " bytes)" : "'";
  return out;
}

bool checked_mul(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

std::string shape_string(std::span<const uint64_t> dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

std::string describe(const Value& v) {
  if (v.type != ValueType::ARRAY) return std::string(value_type_name(v.type));
  return "array of " + std::string(value_type_name(v.elem_type));
}

// Reads little-endian fields from the mapping. Every read names its field through `what`, a callable
// that builds the description only when the read fails (the vocab arrays hold 100k+ strings).
class Cursor {
 public:
  // `bytes` is the whole file, or (GgufFile::parse_header) its first bytes of a file of `file_size`.
  Cursor(const std::string& path, std::span<const uint8_t> bytes, uint64_t file_size)
      : path_(path), bytes_(bytes), file_size_(file_size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return file_size_ - pos_; }
  const uint8_t* here() const { return bytes_.data() + pos_; }

  [[noreturn]] void fail(uint64_t at, const std::string& what, const std::string& problem) const {
    fail_input(path_ + ": offset " + std::to_string(at) + ": " + what + ": " + problem);
  }

  void need(uint64_t n, const auto& what) const {
    if (n > remaining()) {
      fail(pos_, what(),
           "needs " + std::to_string(n) + " bytes but only " + std::to_string(remaining()) +
               " remain before end of file (size " + std::to_string(file_size_) + ")");
    }
    have(pos_ + n);
  }
  // The file holds bytes up to `end`; a prefix must too.
  void have(uint64_t end) const {
    if (end > bytes_.size()) throw PrefixTooShort(path_, bytes_.size(), end);
  }

  template <class T>
  T read(const auto& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, here(), sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  void skip(uint64_t n) { pos_ += n; }  // after need(n)

  std::string_view string(const auto& what, uint64_t max_len = std::numeric_limits<uint64_t>::max()) {
    const uint64_t at = pos_;
    const uint64_t len = read<uint64_t>(what);
    if (len > max_len) {
      fail(at, what(), "length " + std::to_string(len) + " exceeds the limit of " + std::to_string(max_len));
    }
    if (len > remaining()) {
      fail(at, what(),
           "string length " + std::to_string(len) + " runs past end of file (size " +
               std::to_string(file_size_) + ")");
    }
    have(pos_ + len);
    std::string_view s(reinterpret_cast<const char*>(here()), len);
    pos_ += len;
    return s;
  }

  // Checks that `count` items of at least `min_bytes` each can fit in the rest of the file.
  void check_count(uint64_t at, uint64_t count, uint64_t min_bytes, const std::string& what) const {
    if (count > remaining() / min_bytes) {
      fail(at, what,
           "count " + std::to_string(count) + " needs at least " + std::to_string(min_bytes) +
               " bytes each, but only " + std::to_string(remaining()) +
               " bytes remain before end of file (size " + std::to_string(file_size_) + ")");
    }
  }

  // Counts `count` arrays inside an array toward kMaxNestedArrays.
  void count_nested_arrays(uint64_t at, uint64_t count, const std::string& what) {
    nested_arrays_ += count;
    if (nested_arrays_ > kMaxNestedArrays) {
      fail(at, what,
           "count " + std::to_string(count) + " brings the arrays nested in arrays to " +
               std::to_string(nested_arrays_) + ", more than the " + std::to_string(kMaxNestedArrays) +
               " a file may hold");
    }
  }

  uint64_t file_size() const { return file_size_; }

 private:
  const std::string& path_;
  std::span<const uint8_t> bytes_;
  uint64_t file_size_;
  uint64_t pos_ = 0;
  uint64_t nested_arrays_ = 0;
};

ValueType read_value_type(Cursor& c, const auto& what) {
  const uint64_t at = c.pos();
  const uint32_t raw = c.read<uint32_t>(what);
  if (!valid_value_type(raw)) {
    c.fail(at, what(), "invalid value type " + std::to_string(raw) + " (valid: 0 to 12)");
  }
  return static_cast<ValueType>(raw);
}

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// One scalar of type `t` into `v`'s matching field.
void read_scalar(Cursor& c, ValueType t, Value& v, const auto& what) {
  const uint64_t at = c.pos();
  const uint64_t size = min_value_bytes(t);
  c.need(size, what);
  const uint8_t* p = c.here();
  switch (t) {
    case ValueType::U8:
    case ValueType::BOOL:
      v.u = load<uint8_t>(p);
      break;
    case ValueType::I8:
      v.i = load<int8_t>(p);
      break;
    case ValueType::U16:
      v.u = load<uint16_t>(p);
      break;
    case ValueType::I16:
      v.i = load<int16_t>(p);
      break;
    case ValueType::U32:
      v.u = load<uint32_t>(p);
      break;
    case ValueType::I32:
      v.i = load<int32_t>(p);
      break;
    case ValueType::U64:
      v.u = load<uint64_t>(p);
      break;
    case ValueType::I64:
      v.i = load<int64_t>(p);
      break;
    case ValueType::F32:
      v.f = load<float>(p);
      break;
    case ValueType::F64:
      v.f = load<double>(p);
      break;
    case ValueType::STRING:
    case ValueType::ARRAY:
      break;  // not scalars; callers dispatch them
  }
  c.skip(size);
  if (t == ValueType::BOOL && v.u > 1) {
    c.fail(at, what(), "bool value " + std::to_string(v.u) + " is neither 0 nor 1");
  }
}

Value read_value(Cursor& c, ValueType type, const auto& what, int depth);

// A field description built up front; nested arrays use it so that recursion instantiates finitely many
// templates (a lambda per level would be a new type per level).
struct Described {
  std::string text;
  std::string operator()() const { return text; }
};

void read_array(Cursor& c, Value& v, const auto& what, int depth) {
  if (depth > kMaxArrayDepth) {
    c.fail(c.pos(), what(), "arrays nest deeper than " + std::to_string(kMaxArrayDepth) + " levels");
  }
  auto type_what = [&] { return what() + ": array element type"; };
  v.elem_type = read_value_type(c, type_what);
  const uint64_t count_at = c.pos();
  auto count_what = [&] { return what() + ": array count"; };
  const uint64_t count = c.read<uint64_t>(count_what);
  c.check_count(count_at, count, min_value_bytes(v.elem_type), count_what());
  const ValueType et = v.elem_type;
  if (et == ValueType::ARRAY) c.count_nested_arrays(count_at, count, count_what());
  if (et == ValueType::STRING || et == ValueType::ARRAY) {
    if (et == ValueType::STRING) v.strings.reserve(count);
    for (uint64_t k = 0; k < count; ++k) {
      auto elem_what = [&] { return what() + ": element #" + std::to_string(k); };
      if (et == ValueType::STRING) {
        v.strings.emplace_back(c.string(elem_what));
      } else {
        v.arrays.push_back(read_value(c, et, Described{elem_what()}, depth + 1));
      }
    }
    return;
  }
  // Fixed-size elements: the count check above bounds the allocation by the file's size.
  if (is_float(et))
    v.floats.resize(count);
  else if (is_signed(et))
    v.ints.resize(count);
  else
    v.uints.resize(count);
  Value tmp;
  for (uint64_t k = 0; k < count; ++k) {
    auto elem_what = [&] { return what() + ": element #" + std::to_string(k); };
    read_scalar(c, et, tmp, elem_what);
    if (is_float(et))
      v.floats[k] = tmp.f;
    else if (is_signed(et))
      v.ints[k] = tmp.i;
    else
      v.uints[k] = tmp.u;
  }
}

Value read_value(Cursor& c, ValueType type, const auto& what, int depth) {
  Value v;
  v.type = type;
  if (type == ValueType::STRING) {
    v.str = c.string(what);
  } else if (type == ValueType::ARRAY) {
    read_array(c, v, what, depth);
  } else {
    read_scalar(c, type, v, what);
  }
  return v;
}

// A tensor info after its name: dims, type, data offset. `offset_field_at` receives the file offset of
// the data-offset field, which later messages about the tensor's data point at.
TensorInfo read_tensor_info(Cursor& c, const auto& what, uint64_t alignment, uint64_t& offset_field_at) {
  TensorInfo info;

  const uint64_t n_dims_at = c.pos();
  const uint32_t n_dims = c.read<uint32_t>([&] { return what() + ": n_dims"; });
  if (n_dims == 0 || n_dims > kMaxDims) {
    c.fail(n_dims_at, what() + ": n_dims",
           "n_dims " + std::to_string(n_dims) + " is outside 1.." + std::to_string(kMaxDims));
  }
  info.n_elements = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    const uint64_t dim_at = c.pos();
    auto dim_what = [&] { return what() + ": dims[" + std::to_string(d) + "]"; };
    const uint64_t dim = c.read<uint64_t>(dim_what);
    if (dim == 0) c.fail(dim_at, dim_what(), "dimension is 0 (empty tensors are not supported)");
    info.dims.push_back(dim);
    if (!checked_mul(info.n_elements, dim, info.n_elements) || info.n_elements > kMaxElements) {
      c.fail(dim_at, dim_what(),
             "dims " + shape_string(info.dims) + " hold more than 2^63-1 elements (overflow)");
    }
  }

  const uint64_t type_at = c.pos();
  const uint32_t raw_type = c.read<uint32_t>([&] { return what() + ": type"; });
  const auto traits = type_traits(raw_type);
  if (!traits) c.fail(type_at, what() + ": type", "unknown ggml tensor type " + std::to_string(raw_type));
  info.type = static_cast<TensorType>(raw_type);
  if (info.dims[0] % traits->block_elements != 0) {
    c.fail(type_at, what() + ": type",
           "dims[0] " + std::to_string(info.dims[0]) + " is not a multiple of the block size " +
               std::to_string(traits->block_elements) + " of " + std::string(traits->name));
  }
  if (!checked_mul(info.n_elements / traits->block_elements, traits->block_bytes, info.n_bytes)) {
    c.fail(
        type_at, what(),
        "byte size of " + shape_string(info.dims) + " " + std::string(traits->name) + " overflows 64 bits");
  }

  offset_field_at = c.pos();
  auto offset_what = [&] { return what() + ": data offset"; };
  info.offset = c.read<uint64_t>(offset_what);
  if (info.offset % alignment != 0) {
    c.fail(offset_field_at, offset_what(),
           "offset " + std::to_string(info.offset) + " is not a multiple of the alignment " +
               std::to_string(alignment));
  }
  return info;
}

}  // namespace

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8:
      return "u8";
    case ValueType::I8:
      return "i8";
    case ValueType::U16:
      return "u16";
    case ValueType::I16:
      return "i16";
    case ValueType::U32:
      return "u32";
    case ValueType::I32:
      return "i32";
    case ValueType::F32:
      return "f32";
    case ValueType::BOOL:
      return "bool";
    case ValueType::STRING:
      return "string";
    case ValueType::ARRAY:
      return "array";
    case ValueType::U64:
      return "u64";
    case ValueType::I64:
      return "i64";
    case ValueType::F64:
      return "f64";
  }
  return "invalid";
}

uint64_t Value::array_size() const {
  if (type != ValueType::ARRAY) return 0;
  if (elem_type == ValueType::STRING) return strings.size();
  if (elem_type == ValueType::ARRAY) return arrays.size();
  if (is_signed(elem_type)) return ints.size();
  if (is_float(elem_type)) return floats.size();
  return uints.size();
}

PrefixTooShort::PrefixTooShort(const std::string& path, uint64_t have, uint64_t needed)
    : Error(ErrorKind::Runtime, path + ": the first " + std::to_string(have) +
                                    " bytes read end before byte " + std::to_string(needed) +
                                    ", which the header or tensor needs"),
      needed_(needed) {}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  MappedFile map(path);
  const std::span<const uint8_t> bytes = map.bytes();
  std::unique_ptr<GgufFile> f(new GgufFile(path, bytes, bytes.size()));
  f->map_ = std::move(map);
  f->parse();
  return f;
}

std::unique_ptr<GgufFile> GgufFile::parse_header(const std::string& name, std::vector<uint8_t> prefix,
                                                 uint64_t file_size) {
  if (prefix.size() > file_size)
    fail_runtime(name + ": a prefix of " + std::to_string(prefix.size()) +
                 " bytes is longer than the file's " + std::to_string(file_size));
  std::unique_ptr<GgufFile> f(new GgufFile(name, {}, file_size));
  f->prefix_ = std::move(prefix);
  f->bytes_ = f->prefix_;
  f->parse();
  return f;
}

void GgufFile::parse() {
  Cursor c(path(), bytes_, file_size_);

  const uint32_t magic = c.read<uint32_t>([] { return std::string("magic"); });
  if (magic != kMagic) {
    std::string got(reinterpret_cast<const char*>(&magic), 4);
    c.fail(0, "magic", "expected 'GGUF', got " + quote(got) + " (not a GGUF file)");
  }
  version_ = c.read<uint32_t>([] { return std::string("version"); });
  if (version_ != 2 && version_ != 3) {
    std::string hint;
    const uint32_t swapped = __builtin_bswap32(version_);
    if (swapped == 2 || swapped == 3) hint = " (a big-endian file?)";
    c.fail(4, "version", "version " + std::to_string(version_) + " is not supported (2 and 3 are)" + hint);
  }
  const uint64_t tensor_count = c.read<uint64_t>([] { return std::string("tensor_count"); });
  const uint64_t kv_count = c.read<uint64_t>([] { return std::string("metadata_kv_count"); });
  // Smallest possible entries: a KV with a 1-byte key and a u8 value; a tensor info with a 1-byte name
  // and one dim.
  constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
  constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;
  c.check_count(8, tensor_count, kMinTensorInfoBytes, "tensor_count");
  c.check_count(16, kv_count, kMinKvBytes, "metadata_kv_count");

  for (uint64_t k = 0; k < kv_count; ++k) {
    const uint64_t key_at = c.pos();
    auto key_what = [&] { return "metadata key #" + std::to_string(k); };
    const std::string_view key = c.string(key_what, kMaxNameBytes);
    if (key.empty()) c.fail(key_at, key_what(), "empty key");
    auto what = [&] { return "metadata key #" + std::to_string(k) + " " + quote(key); };
    if (auto it = key_index_.find(key); it != key_index_.end()) {
      c.fail(key_at, what(),
             "duplicate key (first at offset " + std::to_string(metadata_[it->second].offset) + ")");
    }
    const ValueType type = read_value_type(c, [&] { return what() + ": value type"; });
    metadata_.push_back(KeyValue{std::string(key), read_value(c, type, what, 1), key_at});
    key_index_.emplace(key, metadata_.size() - 1);
  }

  if (const KeyValue* kv = find_kv("general.alignment")) {
    if (kv->value.type != ValueType::U32) fail_key(*kv, "must be u32, got " + describe(kv->value));
    if (!std::has_single_bit(kv->value.u)) {
      fail_key(*kv, "alignment " + std::to_string(kv->value.u) + " is not a non-zero power of two");
    }
    alignment_ = kv->value.u;
  } else {
    alignment_ = kDefaultAlignment;
  }

  std::vector<uint64_t> offset_field_at;  // file offset of each tensor's data-offset field, for messages
  for (uint64_t t = 0; t < tensor_count; ++t) {
    const uint64_t info_at = c.pos();
    auto name_what = [&] { return "tensor #" + std::to_string(t); };
    const std::string_view name = c.string(name_what, kMaxNameBytes);
    if (name.empty()) c.fail(info_at, name_what(), "empty name");
    auto what = [&] { return "tensor #" + std::to_string(t) + " " + quote(name); };
    if (auto it = tensor_index_.find(name); it != tensor_index_.end()) {
      c.fail(info_at, what(), "duplicate tensor name (first is tensor #" + std::to_string(it->second) + ")");
    }
    offset_field_at.push_back(0);
    TensorInfo info = read_tensor_info(c, what, alignment_, offset_field_at.back());
    info.name = std::string(name);
    tensors_.push_back(std::move(info));
    tensor_index_.emplace(name, tensors_.size() - 1);
  }

  // Cannot overflow: the position is within the file and alignment_ <= 2^31.
  data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t data_size = data_offset_ < file_size() ? file_size() - data_offset_ : 0;
  auto offset_what = [&](size_t t) {
    return "tensor #" + std::to_string(t) + " " + quote(tensors_[t].name) + ": data offset";
  };
  for (size_t t = 0; t < tensors_.size(); ++t) {
    const TensorInfo& info = tensors_[t];
    if (info.offset > data_size || info.n_bytes > data_size - info.offset) {
      c.fail(offset_field_at[t], offset_what(t),
             std::to_string(info.n_bytes) + " bytes at data offset " + std::to_string(info.offset) +
                 " run past end of file (data section starts at " + std::to_string(data_offset_) +
                 ", file size " + std::to_string(file_size()) + ")");
    }
  }

  // Overlaps: walk tensors by data offset, keeping the one reaching furthest so far.
  std::vector<size_t> order(tensors_.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::pair(tensors_[a].offset, a) < std::pair(tensors_[b].offset, b);
  });
  size_t furthest = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    const TensorInfo& cur = tensors_[order[k]];
    if (k > 0) {
      const TensorInfo& prev = tensors_[furthest];
      const uint64_t prev_end = prev.offset + prev.n_bytes;
      if (cur.offset < prev_end) {
        c.fail(offset_field_at[order[k]], offset_what(order[k]),
               "data [" + std::to_string(cur.offset) + ", " + std::to_string(cur.offset + cur.n_bytes) +
                   ") overlaps tensor #" + std::to_string(furthest) + " " + quote(prev.name) + " [" +
                   std::to_string(prev.offset) + ", " + std::to_string(prev_end) + ")");
      }
      if (cur.offset + cur.n_bytes <= prev_end) continue;
    }
    furthest = order[k];
  }
  for (const TensorInfo& info : tensors_) tensor_data_bytes_ += info.n_bytes;
}

const KeyValue* GgufFile::find_kv(std::string_view key) const {
  auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second];
}

const Value* GgufFile::find(std::string_view key) const {
  const KeyValue* kv = find_kv(key);
  return kv ? &kv->value : nullptr;
}

void GgufFile::fail_key(const KeyValue& kv, const std::string& problem) const {
  fail_input(path() + ": offset " + std::to_string(kv.offset) + ": metadata key " + quote(kv.key) + ": " +
             problem);
}

const KeyValue& GgufFile::require_kv(std::string_view key) const {
  const KeyValue* kv = find_kv(key);
  if (!kv) fail_input(path() + ": required metadata key " + quote(key) + " is missing");
  return *kv;
}

uint64_t GgufFile::uint_value(const KeyValue& kv) const {
  const Value& v = kv.value;
  if (is_unsigned(v.type)) return v.u;
  if (!is_signed(v.type)) fail_key(kv, "expected an integer, got " + describe(v));
  if (v.i < 0) fail_key(kv, "value " + std::to_string(v.i) + " is negative, expected an unsigned integer");
  return static_cast<uint64_t>(v.i);
}

uint64_t GgufFile::require_uint(std::string_view key) const {
  return uint_value(require_kv(key));
}

uint64_t GgufFile::get_uint(std::string_view key, uint64_t def) const {
  const KeyValue* kv = find_kv(key);
  return kv ? uint_value(*kv) : def;
}

int64_t GgufFile::get_int(std::string_view key, int64_t def) const {
  const KeyValue* kv = find_kv(key);
  if (!kv) return def;
  const Value& v = kv->value;
  if (is_signed(v.type)) return v.i;
  if (is_unsigned(v.type)) {
    if (v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail_key(*kv, "value " + std::to_string(v.u) + " does not fit a signed 64-bit integer");
    }
    return static_cast<int64_t>(v.u);
  }
  fail_key(*kv, "expected an integer, got " + describe(v));
}

double GgufFile::require_float(std::string_view key) const {
  const KeyValue& kv = require_kv(key);
  if (!is_float(kv.value.type)) fail_key(kv, "expected f32 or f64, got " + describe(kv.value));
  return kv.value.f;
}

double GgufFile::get_float(std::string_view key, double def) const {
  return find_kv(key) ? require_float(key) : def;
}

bool GgufFile::get_bool(std::string_view key, bool def) const {
  const KeyValue* kv = find_kv(key);
  if (!kv) return def;
  if (kv->value.type != ValueType::BOOL) fail_key(*kv, "expected bool, got " + describe(kv->value));
  return kv->value.u != 0;
}

const std::string& GgufFile::require_string(std::string_view key) const {
  const KeyValue& kv = require_kv(key);
  if (kv.value.type != ValueType::STRING) fail_key(kv, "expected string, got " + describe(kv.value));
  return kv.value.str;
}

std::string GgufFile::get_string(std::string_view key, std::string_view def) const {
  return find_kv(key) ? require_string(key) : std::string(def);
}

const Value& GgufFile::require_array(std::string_view key, ValueType elem_type) const {
  const KeyValue& kv = require_kv(key);
  if (kv.value.type != ValueType::ARRAY || kv.value.elem_type != elem_type) {
    fail_key(kv,
             "expected array of " + std::string(value_type_name(elem_type)) + ", got " + describe(kv.value));
  }
  return kv.value;
}

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& GgufFile::require_tensor(std::string_view name, std::span<const uint64_t> dims) const {
  const TensorInfo* t = find_tensor(name);
  if (!t) fail_input(path() + ": required tensor " + quote(name) + " is missing");
  if (!std::equal(t->dims.begin(), t->dims.end(), dims.begin(), dims.end())) {
    fail_input(path() + ": tensor " + quote(name) + ": expected shape " + shape_string(dims) + ", got " +
               shape_string(t->dims) + " (ggml order)");
  }
  return *t;
}

std::span<const uint8_t> GgufFile::tensor_bytes(const TensorInfo& t) const {
  const uint64_t end = data_offset_ + t.offset + t.n_bytes;
  if (end > bytes_.size()) throw PrefixTooShort(path(), bytes_.size(), end);
  return bytes_.subspan(data_offset_ + t.offset, t.n_bytes);
}

}  // namespace wgllm::gguf
