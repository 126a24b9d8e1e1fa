// Corrupt GGUF files: each defect must give Error(BadInput) naming the path, the offset and the field;
// nothing may crash or allocate by an untrusted count. Corruptions start from a small writer-made file
// and patch fields located by their bytes (a key's text, a tensor's name), so each case hits exactly
// the field it means to.
#include <gtest/gtest.h>

#include <chrono>
#include <limits>

#include "gguf/gguf_file.hpp"
#include "gguf/gguf_writer.hpp"
#include "support/test_support.hpp"
#include "unit/gguf/gguf_test_util.hpp"

namespace wgllm::gguf {
namespace {

using test_util::Bytes;
using test_util::expect_bad_input;
using test_util::find_bytes;
using test_util::MemoryFile;
using test_util::poke;

constexpr uint64_t kHuge = std::numeric_limits<uint64_t>::max();

// Two tensors: "w.a" q8_0 [32] at data offset 0 (34 bytes, padded to 64) and "w.b" f32 [4, 2] at 64,
// ending the file exactly, so that every proper prefix of the file lacks some byte it needs.
std::vector<uint8_t> base_file(uint32_t alignment = 32) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_uint32("test.one", 7);
  w.set_uint32("test.two", 8);
  w.set_strings("test.strings", {"a", "bc"});
  w.set_int32s("test.ints", {1, -2, 3});
  w.set_bool("test.flag", true);
  std::vector<uint8_t> q8(34), f32(32);
  for (size_t k = 0; k < q8.size(); ++k) q8[k] = static_cast<uint8_t>(k * 3);
  for (size_t k = 0; k < f32.size(); ++k) f32[k] = static_cast<uint8_t>(k * 5);
  w.add_tensor("w.a", TensorType::Q8_0, {32}, q8);
  w.add_tensor("w.b", TensorType::F32, {4, 2}, f32);
  const std::string path = test::temp_dir() + "/base.gguf";
  w.write(path, alignment);
  const std::string s = test::read_file(path);
  return {s.begin(), s.end()};
}

// Field offsets in base_file(), found from the bytes they follow.
struct Layout {
  size_t arch_key, one_key, two_key, strings_key, ints_key, flag_key, wa, wb;
  explicit Layout(const std::vector<uint8_t>& b)
      : arch_key(find_bytes(b, "general.architecture")),
        one_key(find_bytes(b, "test.one")),
        two_key(find_bytes(b, "test.two")),
        strings_key(find_bytes(b, "test.strings")),
        ints_key(find_bytes(b, "test.ints")),
        flag_key(find_bytes(b, "test.flag")),
        wa(find_bytes(b, "w.a")),
        wb(find_bytes(b, "w.b")) {}
  // A tensor info: name (3 bytes), n_dims u32, dims u64 each, type u32, offset u64.
  static size_t n_dims(size_t name) { return name + 3; }
  static size_t dim(size_t name, int d) { return name + 7 + 8 * d; }
  static size_t type(size_t name, int n_dims) { return name + 7 + 8 * n_dims; }
  static size_t offset(size_t name, int n_dims) { return name + 11 + 8 * n_dims; }
};

class GgufHostile : public ::testing::Test {
 protected:
  void SetUp() override {
    base = base_file();
    at = std::make_unique<Layout>(base);
  }

  // Opens `bytes` and expects Error(BadInput) naming the file and containing `words`.
  void expect_rejected(const std::vector<uint8_t>& bytes, std::vector<std::string> words) {
    const MemoryFile file(bytes);
    words.push_back(file.path() + ": ");
    expect_bad_input([&] { GgufFile::open(file.path()); }, words);
  }
  template <class T>
  void expect_rejected_with(size_t offset, T value, std::vector<std::string> words) {
    std::vector<uint8_t> b = base;
    poke(b, offset, value);
    expect_rejected(b, words);
  }

  std::vector<uint8_t> base;
  std::unique_ptr<Layout> at;
};

TEST_F(GgufHostile, BaseFileIsValid) {
  auto f = GgufFile::open(MemoryFile(base).path());
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->tensors()[1].offset, 64u);
  EXPECT_EQ(f->data_offset() + 96, base.size());
  EXPECT_EQ(f->require_array("test.strings", ValueType::STRING).strings,
            (std::vector<std::string>{"a", "bc"}));
}

TEST_F(GgufHostile, MagicAndVersion) {
  expect_rejected_with<uint8_t>(0, 'X', {"offset 0: magic", "not a GGUF file"});
  expect_rejected({}, {"offset 0: magic", "needs 4 bytes", "end of file (size 0)"});
  expect_rejected_with<uint32_t>(4, 1, {"offset 4: version", "version 1 is not supported"});
  expect_rejected_with<uint32_t>(4, 4, {"offset 4: version", "version 4 is not supported"});
  expect_rejected_with<uint32_t>(4, 0x03000000, {"offset 4: version", "big-endian"});
  // v2 has v3's layout (v3 only added big-endian files).
  std::vector<uint8_t> v2 = base;
  poke<uint32_t>(v2, 4, 2);
  EXPECT_EQ(GgufFile::open(MemoryFile(v2).path())->version(), 2u);
}

TEST_F(GgufHostile, EveryTruncationIsRejected) {
  for (size_t n = 0; n < base.size(); ++n) {
    SCOPED_TRACE("prefix of " + std::to_string(n) + " bytes");
    expect_rejected(std::vector<uint8_t>(base.begin(), base.begin() + n), {"offset ", "end of file"});
    if (HasFailure()) break;
  }
}

TEST_F(GgufHostile, AbsurdCounts) {
  expect_rejected_with<uint64_t>(8, kHuge, {"offset 8: tensor_count", "count 18446744073709551615"});
  expect_rejected_with<uint64_t>(16, uint64_t{1} << 40,
                                 {"offset 16: metadata_kv_count", "count 1099511627776"});
  // Plausible but wrong counts misread the following bytes and fail somewhere after.
  expect_rejected_with<uint64_t>(16, 7, {"offset "});
  expect_rejected_with<uint64_t>(8, 3, {"offset "});
  const size_t strings_count = at->strings_key + 12 + 4 + 4;  // key, value type, element type
  expect_rejected_with<uint64_t>(strings_count, uint64_t{1} << 62,
                                 {"offset " + std::to_string(strings_count), "'test.strings': array count",
                                  "count 4611686018427387904"});
  const size_t ints_count = at->ints_key + 9 + 4 + 4;
  expect_rejected_with<uint64_t>(ints_count, kHuge,
                                 {"'test.ints': array count", "needs at least 4 bytes each"});
  expect_rejected_with<uint64_t>(ints_count, 4, {"offset "});
}

TEST_F(GgufHostile, StringLengths) {
  const size_t key_len = at->arch_key - 8;
  expect_rejected_with<uint64_t>(key_len, kHuge,
                                 {"offset " + std::to_string(key_len) + ": metadata key #0",
                                  "length 18446744073709551615 exceeds the limit of 65535"});
  expect_rejected_with<uint64_t>(key_len, 70000,
                                 {"metadata key #0", "length 70000 exceeds the limit of 65535"});
  expect_rejected_with<uint64_t>(key_len, 60000,
                                 {"metadata key #0", "string length 60000 runs past end of file"});
  expect_rejected_with<uint64_t>(key_len, 0, {"metadata key #0", "empty key"});
  const size_t value_len = at->arch_key + 20 + 4;
  expect_rejected_with<uint64_t>(
      value_len, kHuge,
      {"offset " + std::to_string(value_len) + ": metadata key #0 'general.architecture'",
       "string length 18446744073709551615 runs past end of file (size " + std::to_string(base.size()) +
           ")"});
  const size_t elem_len = at->strings_key + 12 + 4 + 4 + 8;
  expect_rejected_with<uint64_t>(elem_len, kHuge, {"'test.strings': element #0", "string length"});
  expect_rejected_with<uint64_t>(at->wa - 8, kHuge, {"tensor #0", "exceeds the limit of 65535"});
  expect_rejected_with<uint64_t>(at->wa - 8, 0, {"tensor #0", "empty name"});
}

TEST_F(GgufHostile, ValueTypes) {
  const size_t one_type = at->one_key + 8;
  expect_rejected_with<uint32_t>(
      one_type, 13,
      {"offset " + std::to_string(one_type), "'test.one': value type", "invalid value type 13"});
  expect_rejected_with<uint32_t>(one_type, kHuge & 0xffffffff,
                                 {"'test.one'", "invalid value type 4294967295"});
  expect_rejected_with<uint32_t>(at->ints_key + 9 + 4, 99,
                                 {"'test.ints': array element type", "invalid value type 99"});
  expect_rejected_with<uint8_t>(at->flag_key + 9 + 4, 2, {"'test.flag'", "bool value 2"});
}

TEST_F(GgufHostile, DuplicateNames) {
  std::vector<uint8_t> b = base;
  std::memcpy(b.data() + at->two_key, "test.one", 8);
  expect_rejected(b, {"offset " + std::to_string(at->two_key - 8), "metadata key #2 'test.one'",
                      "duplicate key", "first at offset " + std::to_string(at->one_key - 8)});
  b = base;
  b[at->wb + 2] = 'a';
  expect_rejected(b, {"tensor #1 'w.a'", "duplicate tensor name", "tensor #0"});
}

TEST_F(GgufHostile, TensorShapes) {
  const size_t wa = at->wa, wb = at->wb;
  expect_rejected_with<uint32_t>(Layout::n_dims(wa), 5,
                                 {"offset " + std::to_string(Layout::n_dims(wa)), "tensor #0 'w.a': n_dims",
                                  "n_dims 5 is outside 1..4"});
  expect_rejected_with<uint32_t>(Layout::n_dims(wa), 0, {"'w.a': n_dims", "n_dims 0"});
  expect_rejected_with<uint32_t>(Layout::n_dims(wb), 0xffffffff, {"'w.b': n_dims", "n_dims 4294967295"});
  expect_rejected_with<uint64_t>(Layout::dim(wb, 1), 0, {"'w.b': dims[1]", "dimension is 0"});
  std::vector<uint8_t> b = base;
  poke<uint64_t>(b, Layout::dim(wb, 0), uint64_t{1} << 32);
  poke<uint64_t>(b, Layout::dim(wb, 1), uint64_t{1} << 32);
  expect_rejected(b, {"offset " + std::to_string(Layout::dim(wb, 1)), "'w.b': dims[1]",
                      "[4294967296, 4294967296]", "overflow"});
  // Elements fit (2^62) but f64 bytes (2^65) do not.
  poke<uint64_t>(b, Layout::dim(wb, 0), uint64_t{1} << 31);
  poke<uint64_t>(b, Layout::dim(wb, 1), uint64_t{1} << 31);
  poke<uint32_t>(b, Layout::type(wb, 2), static_cast<uint32_t>(TensorType::F64));
  expect_rejected(b, {"'w.b'", "overflows 64 bits"});
  expect_rejected_with<uint64_t>(Layout::dim(wa, 0), 16,
                                 {"'w.a': type", "dims[0] 16", "block size 32 of q8_0"});
  // A plausible shape whose data is not in the file.
  expect_rejected_with<uint64_t>(Layout::dim(wb, 1), 1000, {"'w.b': data offset", "run past end of file"});
}

TEST_F(GgufHostile, TensorTypes) {
  expect_rejected_with<uint32_t>(Layout::type(at->wa, 1), 99,
                                 {"offset " + std::to_string(Layout::type(at->wa, 1)),
                                  "tensor #0 'w.a': type", "unknown ggml tensor type 99"});
  expect_rejected_with<uint32_t>(Layout::type(at->wa, 1), 4, {"'w.a'", "unknown ggml tensor type 4"});
}

TEST_F(GgufHostile, DataOffsets) {
  const size_t off_b = Layout::offset(at->wb, 2);
  expect_rejected_with<uint64_t>(off_b, 65,
                                 {"offset " + std::to_string(off_b), "'w.b': data offset",
                                  "offset 65 is not a multiple of the alignment 32"});
  expect_rejected_with<uint64_t>(off_b, uint64_t{1} << 40, {"'w.b': data offset", "run past end of file"});
  expect_rejected_with<uint64_t>(off_b, kHuge - 31, {"'w.b': data offset", "run past end of file"});
  expect_rejected_with<uint64_t>(off_b, 96, {"'w.b': data offset", "run past end of file"});
  expect_rejected_with<uint64_t>(off_b, 0,
                                 {"tensor #1 'w.b': data offset", "overlaps tensor #0 'w.a' [0, 34)"});
  expect_rejected_with<uint64_t>(Layout::offset(at->wa, 1), 32,
                                 {"tensor #1 'w.b'", "[64, 96) overlaps tensor #0 'w.a' [32, 66)"});
}

TEST_F(GgufHostile, AlignmentKey) {
  const std::vector<uint8_t> b64 = base_file(64);
  const size_t key = find_bytes(b64, "general.alignment");
  auto with = [&](size_t at_offset, uint32_t v) {
    std::vector<uint8_t> b = b64;
    poke(b, at_offset, v);
    return b;
  };
  EXPECT_EQ(GgufFile::open(MemoryFile(b64).path())->alignment(), 64u);
  const std::string key_at = "offset " + std::to_string(key - 8) + ": metadata key 'general.alignment'";
  expect_rejected(with(key + 17 + 4, 48), {key_at, "alignment 48 is not a non-zero power of two"});
  expect_rejected(with(key + 17 + 4, 0), {key_at, "alignment 0 is not"});
  expect_rejected(with(key + 17, static_cast<uint32_t>(ValueType::I32)), {key_at, "must be u32, got i32"});
  expect_rejected(with(key + 17, static_cast<uint32_t>(ValueType::F32)), {key_at, "must be u32, got f32"});
}

std::vector<uint8_t> nested_arrays(int levels) {
  Bytes b;
  b.header(3, 0, 1).str("deep").u32(static_cast<uint32_t>(ValueType::ARRAY));
  for (int l = 1; l < levels; ++l) b.u32(static_cast<uint32_t>(ValueType::ARRAY)).u64(1);
  b.u32(static_cast<uint32_t>(ValueType::U8)).u64(0);
  return b.b;
}

TEST_F(GgufHostile, NestingDepth) {
  auto f = GgufFile::open(MemoryFile(nested_arrays(kMaxArrayDepth)).path());
  EXPECT_EQ(f->find("deep")->arrays.size(), 1u);
  expect_rejected(nested_arrays(kMaxArrayDepth + 1), {"'deep': element #0", "nest deeper than 8"});
  // A file full of nesting levels must not recurse without bound.
  expect_rejected(nested_arrays(100000), {"'deep'", "nest deeper"});
}

TEST_F(GgufHostile, TensorsOutOfOrderAndWithGapsAreAccepted) {
  Bytes b;
  b.header(3, 2, 0);
  b.str("second").u32(1).u64(8).u32(0).u64(64);
  b.str("first").u32(1).u64(8).u32(0).u64(0);
  b.pad_to(32);
  const size_t data = b.b.size();
  for (int k = 0; k < 96; ++k) b.u8(static_cast<uint8_t>(k));
  auto f = GgufFile::open(MemoryFile(b.b).path());
  EXPECT_EQ(f->data_offset(), data);
  EXPECT_EQ(f->tensor_bytes(*f->find_tensor("second"))[0], 64);
  EXPECT_EQ(f->tensor_bytes(*f->find_tensor("first"))[31], 31);
}

// Keys are bytes (the reader does not insist on UTF-8); messages show such bytes escaped.
TEST_F(GgufHostile, NonUtf8KeysAreAcceptedAndEscapedInMessages) {
  const std::string key = "k\xff\n";
  Bytes one;
  one.header(3, 0, 1).str(key).u32(static_cast<uint32_t>(ValueType::U32)).u32(1);
  EXPECT_EQ(GgufFile::open(MemoryFile(one.b).path())->require_uint(key), 1u);
  Bytes two = one;
  poke<uint64_t>(two.b, 16, 2);
  two.str(key).u32(static_cast<uint32_t>(ValueType::U32)).u32(2);
  expect_rejected(two.b, {"metadata key #1 'k\\xff\\x0a'", "duplicate key"});
}

// Random damage: every mutant either parses (and then its tensors are readable) or throws
// Error(BadInput); anything else (another exception, a crash, a sanitizer report) fails.
TEST_F(GgufHostile, RandomMutations) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(7);
  const auto start = std::chrono::steady_clock::now();
  const uint64_t extremes[] = {0, 1, 0x7fffffff, 0xffffffff, uint64_t{1} << 32, uint64_t{1} << 63, kHuge};
  int parsed = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    std::vector<uint8_t> b = base;
    const int n_mutations = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < n_mutations; ++m) {
      const size_t pos = rng() % b.size();
      switch (rng() % 4) {
        case 0:
          b[pos] = static_cast<uint8_t>(rng());
          break;
        case 1:
          b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 2:
          if (pos + 8 <= b.size()) poke<uint64_t>(b, pos, extremes[rng() % std::size(extremes)]);
          break;
        case 3:
          b.resize(pos + 1);
          break;
      }
    }
    const MemoryFile file(b);
    const std::string& path = file.path();
    try {
      auto f = GgufFile::open(path);
      uint64_t sum = 0;
      for (const TensorInfo& t : f->tensors()) {
        for (uint8_t x : f->tensor_bytes(t)) sum += x;
      }
      for (const KeyValue& kv : f->metadata()) sum += kv.value.array_size();
      volatile uint64_t sink = sum;  // keeps the reads that the sanitizers check
      (void)sink;
      ++parsed;
    } catch (const Error& e) {
      ASSERT_EQ(e.kind(), ErrorKind::BadInput) << e.what();
      ASSERT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iter << ": unexpected exception: " << e.what();
    }
  }
  RecordProperty("parsed", parsed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

}  // namespace
}  // namespace wgllm::gguf
