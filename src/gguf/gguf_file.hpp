// GGUF v2/v3 reader. The file is mmap'd; the header, metadata and tensor table are parsed and validated
// up front, so everything after open() can trust offsets and sizes. Every defect is an Error(BadInput)
// naming the file, the byte offset and the field.
//
// What open() accepts, where the format leaves room:
// - little-endian v2 and v3 only (they share one layout; v1 had 32-bit counts).
// - keys and tensor names: 1 to 65535 bytes (the spec's key limit), any bytes; no duplicates.
// - arrays may nest (arrays of arrays) up to kMaxArrayDepth levels, with at most kMaxNestedArrays arrays
//   inside arrays in all; BOOL values must be 0 or 1.
// - tensors: 1 to 4 dims (GGML_MAX_DIMS), every dim >= 1 (ggml's own reader divides by dims, so a zero dim
//   is no valid ggml tensor), at most 2^63-1 elements, dims[0] a multiple of the type's block size, data
//   offsets multiples of general.alignment, data inside the file, no two tensors' data overlapping (any
//   order; gaps allowed). A file without tensors may end before the aligned data section starts.
// - general.alignment, when present: a u32, a non-zero power of two.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/error.hpp"
#include "core/mapped_file.hpp"
#include "gguf/tensor_type.hpp"

namespace wgllm::gguf {

constexpr uint64_t kMaxNameBytes = 65535;  // keys and tensor names
constexpr uint32_t kMaxDims = 4;           // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;          // levels of arrays in one value: an array of arrays of u8 is 2
// Arrays inside arrays, in the whole file: each becomes a Value of about 200 bytes from as little as 12
// bytes of file, so without a bound 1 GB of empty nested arrays would take 17 GB (no real file nests).
constexpr uint64_t kMaxNestedArrays = uint64_t{1} << 20;

// clang-format off
enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
// clang-format on
std::string_view value_type_name(ValueType t);

// A metadata value. Scalars live in the matching field; arrays hold their element type and elements.
// Numeric arrays are stored widened (ints in `ints` or `uints`, floats in `floats`) so 150k-entry vocab
// arrays cost 8 bytes per element, not one Value each.
struct Value {
  ValueType type = ValueType::U8;
  uint64_t u = 0;                       // U8, U16, U32, U64, BOOL
  int64_t i = 0;                        // I8, I16, I32, I64
  double f = 0;                         // F32, F64
  std::string str;                      // STRING
  ValueType elem_type = ValueType::U8;  // ARRAY: element type
  std::vector<std::string> strings;     // ARRAY of STRING
  std::vector<int64_t> ints;            // ARRAY of I8..I64
  std::vector<uint64_t> uints;          // ARRAY of U8..U64, BOOL
  std::vector<double> floats;           // ARRAY of F32/F64
  std::vector<Value> arrays;            // ARRAY of ARRAY (rare; nested)
  uint64_t array_size() const;          // elements of an ARRAY (from the vector its elem_type uses)
};

struct KeyValue {
  std::string key;
  Value value;
  uint64_t offset;  // byte offset of the key in the file, for error messages
};

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: dims[0] is the row length (fastest-varying)
  TensorType type;
  uint64_t offset;  // from the start of the tensor data section
  uint64_t n_elements;
  uint64_t n_bytes;
  uint64_t rows() const { return dims.empty() ? 0 : n_elements / dims[0]; }
};

// Thrown by a file made from a prefix (GgufFile::parse_header) when the header, or a tensor's data asked
// for, lies beyond the bytes it holds: read at least the first needed() bytes and parse again.
class PrefixTooShort : public Error {
 public:
  PrefixTooShort(const std::string& path, uint64_t have, uint64_t needed);
  uint64_t needed() const { return needed_; }

 private:
  uint64_t needed_;
};

class GgufFile {
 public:
  // Maps and validates the whole file. Throws Error(BadInput).
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // The same from the first bytes of a file of `file_size` bytes whose tensor data stays elsewhere (the
  // browser streams it straight to the GPU): the same checks and the same error messages as open(), where
  // `name` stands for the path. Throws PrefixTooShort when the tensor table ends beyond the prefix;
  // tensor_bytes() then works for tensors inside the prefix only.
  static std::unique_ptr<GgufFile> parse_header(const std::string& name, std::vector<uint8_t> prefix,
                                                uint64_t file_size);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute offset of the tensor data section
  uint64_t file_size() const { return file_size_; }

  const std::vector<KeyValue>& metadata() const { return metadata_; }
  const Value* find(std::string_view key) const;

  // Typed access. The `require_*` forms throw naming the key when it is missing or of another type;
  // the `get_*` forms return the default when the key is missing and throw when its type is wrong.
  // Integer getters accept any integer type whose value fits.
  uint64_t require_uint(std::string_view key) const;
  uint64_t get_uint(std::string_view key, uint64_t def) const;
  int64_t get_int(std::string_view key, int64_t def) const;
  double require_float(std::string_view key) const;
  double get_float(std::string_view key, double def) const;
  bool get_bool(std::string_view key, bool def) const;
  const std::string& require_string(std::string_view key) const;
  std::string get_string(std::string_view key, std::string_view def) const;
  const Value& require_array(std::string_view key, ValueType elem_type) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;
  // Throws naming the tensor when it is missing or its dims differ from `dims` (ggml order), with both
  // shapes.
  const TensorInfo& require_tensor(std::string_view name, std::span<const uint64_t> dims) const;
  std::span<const uint8_t> tensor_bytes(const TensorInfo& t) const;
  uint64_t tensor_data_bytes() const { return tensor_data_bytes_; }  // sum of all tensors' n_bytes

 private:
  GgufFile(std::string path, std::span<const uint8_t> bytes, uint64_t file_size)
      : path_(std::move(path)), bytes_(bytes), file_size_(file_size) {}
  void parse();
  const KeyValue& require_kv(std::string_view key) const;
  const KeyValue* find_kv(std::string_view key) const;
  uint64_t uint_value(const KeyValue& kv) const;
  [[noreturn]] void fail_key(const KeyValue& kv, const std::string& problem) const;

  std::string path_;
  std::optional<MappedFile> map_;   // open(): the whole file
  std::vector<uint8_t> prefix_;     // parse_header(): its first bytes
  std::span<const uint8_t> bytes_;  // whichever of the two
  uint64_t file_size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<KeyValue> metadata_;
  std::vector<TensorInfo> tensors_;
  uint64_t tensor_data_bytes_ = 0;
  // Views into bytes_ (stable for the object's life): name -> index.
  std::unordered_map<std::string_view, size_t> key_index_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

}  // namespace wgllm::gguf
