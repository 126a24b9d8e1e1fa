// GgufFile::parse_header, the browser's reader: from the first bytes of a file it parses what open() parses
// from the whole file, asks for more bytes (PrefixTooShort) rather than misreading a short prefix, and
// rejects a defective file with open()'s own message, since both check against the whole file's size.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf_file.hpp"
#include "support/test_support.hpp"

namespace wgllm::gguf {
namespace {

std::vector<uint8_t> bytes_of(const std::string& path) {
  const std::string s = test::read_file(path);
  return {s.begin(), s.end()};
}

// parse_header as the browser calls it: from `start` bytes, reading at least what each PrefixTooShort asks
// for and at least twice as many as before.
std::unique_ptr<GgufFile> parse_growing(const std::string& name, const std::vector<uint8_t>& file,
                                        uint64_t start, int* rounds) {
  uint64_t have = std::min<uint64_t>(start, file.size());
  for (*rounds = 1;; ++*rounds) {
    try {
      return GgufFile::parse_header(name, {file.begin(), file.begin() + have}, file.size());
    } catch (const PrefixTooShort& e) {
      EXPECT_GT(e.needed(), have);
      EXPECT_LE(e.needed(), file.size());
      if (e.needed() <= have || e.needed() > file.size()) throw;
      have = std::min<uint64_t>(file.size(), std::max<uint64_t>(e.needed(), 2 * have));
    }
  }
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(GgufPrefix, ParsesWhatOpenParses) {
  const std::string path = test::source_path("models/stories260K.gguf");
  const auto whole = GgufFile::open(path);
  const std::vector<uint8_t> file = bytes_of(path);
  for (uint64_t start :
       {uint64_t(0), uint64_t(24), uint64_t(1000), uint64_t(whole->data_offset()), uint64_t(file.size())}) {
    SCOPED_TRACE("first " + std::to_string(start) + " bytes");
    int rounds = 0;
    const auto f = parse_growing(path, file, start, &rounds);
    EXPECT_EQ(f->path(), path);
    EXPECT_EQ(f->file_size(), whole->file_size());
    EXPECT_EQ(f->data_offset(), whole->data_offset());
    EXPECT_EQ(f->alignment(), whole->alignment());
    EXPECT_EQ(f->metadata().size(), whole->metadata().size());
    ASSERT_EQ(f->tensors().size(), whole->tensors().size());
    for (size_t i = 0; i < f->tensors().size(); ++i) {
      EXPECT_EQ(f->tensors()[i].name, whole->tensors()[i].name);
      EXPECT_EQ(f->tensors()[i].offset, whole->tensors()[i].offset);
      EXPECT_EQ(f->tensors()[i].n_bytes, whole->tensors()[i].n_bytes);
    }
    EXPECT_EQ(f->require_string("general.architecture"), whole->require_string("general.architecture"));
    if (start < whole->data_offset()) {
      EXPECT_GT(rounds, 1);
      EXPECT_LT(rounds, 24);
    }
  }
}

TEST(GgufPrefix, TensorBytesOnlyInsideThePrefix) {
  const std::string path = test::source_path("models/stories260K.gguf");
  const auto whole = GgufFile::open(path);
  const std::vector<uint8_t> file = bytes_of(path);
  const TensorInfo& first =
      *std::min_element(whole->tensors().begin(), whole->tensors().end(),
                        [](const TensorInfo& a, const TensorInfo& b) { return a.offset < b.offset; });
  const uint64_t end = whole->data_offset() + first.offset + first.n_bytes;
  const auto f = GgufFile::parse_header(path, {file.begin(), file.begin() + end}, file.size());
  const auto got = f->tensor_bytes(*f->find_tensor(first.name));
  const auto want = whole->tensor_bytes(first);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin(), want.end()));
  for (const TensorInfo& t : f->tensors()) {
    if (whole->data_offset() + t.offset + t.n_bytes <= end) continue;
    try {
      f->tensor_bytes(t);
      ADD_FAILURE() << t.name << " lies beyond the prefix";
    } catch (const PrefixTooShort& e) {
      EXPECT_EQ(e.needed(), whole->data_offset() + t.offset + t.n_bytes);
    }
  }
}

// Defective files: the same message from any prefix long enough to show the defect, and from open().
TEST(GgufPrefix, DefectsGiveOpensMessage) {
  SCOPED_TRACE(test::seed_note());
  const std::vector<uint8_t> model = bytes_of(test::source_path("models/stories260K.gguf"));
  const uint64_t data_offset = GgufFile::open(test::source_path("models/stories260K.gguf"))->data_offset();
  std::vector<std::vector<uint8_t>> defects = {
      std::vector<uint8_t>(model.begin(), model.begin() + 100),              // ends inside the header
      std::vector<uint8_t>(model.begin(), model.end() - 10000),              // tensor data past the end
      std::vector<uint8_t>(model.begin(), model.begin() + data_offset - 3),  // ends inside the table
  };
  defects.push_back(model);
  defects.back()[0] = 'X';  // magic
  auto rng = test::rng();
  for (int i = 0; i < 20; ++i) {  // random bytes of the header changed
    defects.push_back(model);
    defects.back()[rng() % data_offset] = static_cast<uint8_t>(rng());
  }
  for (size_t d = 0; d < defects.size(); ++d) {
    SCOPED_TRACE("defect " + std::to_string(d));
    const std::string path = test::write_temp_file("defect" + std::to_string(d) + ".gguf", defects[d]);
    const std::string expected = message_of([&] { GgufFile::open(path); });
    int rounds = 0;
    const std::string got = message_of([&] { parse_growing(path, defects[d], 64, &rounds); });
    EXPECT_EQ(got, expected);
  }
}

}  // namespace
}  // namespace wgllm::gguf
