// Arrays of arrays are bounded in number (kMaxNestedArrays in all): each becomes a gguf::Value of about 200
// bytes from 12 bytes of file, so 48 MB of empty nested arrays took 0.9 GB and 7.5 s to open (found while
// fuzzing the reader, docs/reliability.md). Files are encoded by hand from the format's description.
#include <gtest/gtest.h>

#include <string>

#include "gguf/gguf_file.hpp"
#include "unit/gguf/gguf_test_util.hpp"

namespace wgllm::gguf {
namespace {

using test_util::Bytes;
using test_util::expect_bad_input;
using test_util::MemoryFile;

// Key "nested.K" holds an array of arrays_per_key[K] arrays, each of `inner` u8 elements.
std::vector<uint8_t> nested(const std::vector<uint64_t>& arrays_per_key, uint64_t inner) {
  Bytes b;
  b.header(3, 0, arrays_per_key.size());
  for (size_t k = 0; k < arrays_per_key.size(); ++k) {
    b.str("nested." + std::to_string(k)).u32(uint32_t(ValueType::ARRAY));
    b.u32(uint32_t(ValueType::ARRAY)).u64(arrays_per_key[k]);
    for (uint64_t a = 0; a < arrays_per_key[k]; ++a) {
      b.u32(uint32_t(ValueType::U8)).u64(inner);
      for (uint64_t i = 0; i < inner; ++i) b.u8(uint8_t(a + i));
    }
  }
  return b.b;
}

TEST(GgufNestedArrays, ArraysOfArraysAreRead) {
  const MemoryFile file(nested({1000}, 3));
  const auto f = GgufFile::open(file.path());
  const Value* v = f->find("nested.0");
  ASSERT_NE(v, nullptr);
  ASSERT_EQ(v->arrays.size(), 1000u);
  EXPECT_EQ(v->arrays[999].uints, (std::vector<uint64_t>{999 % 256, 1000 % 256, 1001 % 256}));
}

TEST(GgufNestedArrays, MoreThanTheLimitInAllIsRefusedAtTheCount) {
  const std::string limit = std::to_string(kMaxNestedArrays);
  // In one array, and over two keys (the second count crosses the limit; its arrays are never read).
  expect_bad_input([&] { GgufFile::open(MemoryFile(nested({kMaxNestedArrays + 1}, 0)).path()); },
                   {"'nested.0': array count", "more than the " + limit});
  expect_bad_input(
      [&] {
        GgufFile::open(MemoryFile(nested({1, kMaxNestedArrays}, 0)).path());
      },
      {"'nested.1': array count", std::to_string(kMaxNestedArrays + 1), "more than the " + limit});
}

}  // namespace
}  // namespace wgllm::gguf
