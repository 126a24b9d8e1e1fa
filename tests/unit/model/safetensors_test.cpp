// The safetensors reader and the sharded index against hostile files: each defect is an Error(BadInput)
// naming the file, the offset or field, and the limit; good files read back exactly (F32, F16, BF16).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "hf/config.hpp"
#include "hf/safetensors.hpp"
#include "support/test_support.hpp"

namespace wgllm::hf {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// A file with `header` (JSON text) and `data` bytes after it.
std::vector<uint8_t> file_bytes(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out(8 + header.size() + data.size());
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

std::vector<uint8_t> bytes(const std::string& text) {
  return {text.begin(), text.end()};
}

std::string open_error(const std::vector<uint8_t>& bytes) {
  static int n = 0;
  const std::string path = test::write_temp_file("hostile-" + std::to_string(n++) + ".safetensors", bytes);
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_THAT(e.what(), HasSubstr(path));
    return e.what();
  }
  ADD_FAILURE() << "expected an Error";
  return "";
}

TEST(Safetensors, ReadsF32F16Bf16Exactly) {
  // a: F32 [2] = {1.5, -2}; b: F16 [2] = {0.5, 65504}; c: BF16 [1] = {-3} (0xC040).
  std::vector<uint8_t> data(8 + 4 + 2);
  const float a[2] = {1.5f, -2.0f};
  std::memcpy(data.data(), a, 8);
  const uint16_t b[2] = {0x3800, 0x7BFF}, c = 0xC040;
  std::memcpy(data.data() + 8, b, 4);
  std::memcpy(data.data() + 12, &c, 2);
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"c":{"dtype":"BF16","shape":[1],"data_offsets":[12,14]}})";
  const auto f = SafetensorsFile::open(test::write_temp_file("good.safetensors", file_bytes(header, data)));
  EXPECT_EQ(f->metadata().at("format"), "pt");
  float out[2];
  f->read_f32(*f->find("a"), 0, 2, out);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -2.0f);
  f->read_f32(*f->find("b"), 0, 2, out);
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], 65504.0f);
  f->read_strided(*f->find("c"), 0, 1, 1, out);
  EXPECT_EQ(out[0], -3.0f);
  f->read_strided(*f->find("a"), 1, 5, 1, out);  // one element: the stride never applies
  EXPECT_EQ(out[0], -2.0f);
  EXPECT_THROW(f->read_strided(*f->find("a"), 0, 2, 2, out), Error);  // the second is element 2 of 2
  EXPECT_EQ(f->find("c")->offset, 8 + header.size() + 12);
}

TEST(Safetensors, RejectsHostileHeaders) {
  const std::vector<uint8_t> four(4, 0);
  EXPECT_THAT(open_error({1, 2, 3}), AllOf(HasSubstr("offset 0"), HasSubstr("too short")));
  // A header length past the end, and over the limit.
  std::vector<uint8_t> big = file_bytes("{}", {});
  const uint64_t past = 1000;
  std::memcpy(big.data(), &past, 8);
  EXPECT_THAT(open_error(big),
              AllOf(HasSubstr("header length 1000"), HasSubstr("past the end of the file (10 bytes)")));
  const uint64_t huge = kMaxHeaderBytes + 1;
  std::memcpy(big.data(), &huge, 8);
  EXPECT_THAT(open_error(big), HasSubstr("exceeds the limit 100000000"));
  // Truncated JSON, a header that is not an object.
  EXPECT_THAT(open_error(file_bytes(R"({"a":{"dtype":"F32",)", {})),
              AllOf(HasSubstr("header (bytes 8..28)"), HasSubstr("not valid JSON")));
  EXPECT_THAT(open_error(file_bytes("[1,2]", {})), HasSubstr("not a JSON object"));
  // Fields.
  EXPECT_THAT(open_error(file_bytes(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", four)),
              AllOf(HasSubstr("tensor 'a'"), HasSubstr("dtype \"F33\""), HasSubstr("known: BOOL")));
  EXPECT_THAT(open_error(file_bytes(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", four)),
              HasSubstr("dtype is missing"));
  EXPECT_THAT(open_error(file_bytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four)),
              HasSubstr("shape[0] = -1 is not a non-negative integer"));
  EXPECT_THAT(open_error(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", four)),
              HasSubstr("data_offsets = [4] is not [begin, end]"));
  EXPECT_THAT(open_error(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", four)),
              HasSubstr("end before they begin"));
  EXPECT_THAT(open_error(file_bytes(
                  R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", four)),
              HasSubstr("more than 2^64 elements"));
}

// Found while writing fuzz_safetensors (tests/fuzz/regressions/safetensors/): quoting a field nested 200000
// deep in the error message recursed once per level and overflowed the stack.
TEST(Safetensors, DeeplyNestedFieldIsAnErrorNotAStackOverflow) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  EXPECT_THAT(
      open_error(file_bytes(R"({"a":{"dtype":"F32","shape":[)" + deep + R"(],"data_offsets":[0,0]}})", {})),
      AllOf(HasSubstr("header (bytes 8.."), HasSubstr("tensor 'a': shape[0] = (an array of arrays"),
            HasSubstr("is not a non-negative integer")));
  EXPECT_THAT(
      open_error(file_bytes(R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,)" + deep + "]}}", {})),
      AllOf(HasSubstr("tensor 'a': data_offsets = (an array of arrays"), HasSubstr("is not [begin, end]")));
  const std::string config =
      test::write_temp_file("deep-config.json", bytes(R"({"hidden_size":)" + deep + "}"));
  try {
    (void)Config::read(config).u32("hidden_size");
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_THAT(e.what(), AllOf(HasSubstr(config), HasSubstr("hidden_size = (an array of arrays")));
  }
}

TEST(Safetensors, RejectsBadRanges) {
  const std::vector<uint8_t> eight(8, 0);
  // Past the end of the data section (a truncated file).
  EXPECT_THAT(open_error(file_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", eight)),
              AllOf(HasSubstr("tensor 'a'"), HasSubstr("end 16"),
                    HasSubstr("past the end of the data section (8 bytes")));
  // Size not matching dtype x shape.
  EXPECT_THAT(open_error(file_bytes(R"({"a":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}})", eight)),
              AllOf(HasSubstr("hold 8 bytes"), HasSubstr("F16 [3] takes 6")));
  // Overlap, hole, trailing bytes.
  EXPECT_THAT(
      open_error(file_bytes(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          eight)),
      AllOf(HasSubstr("overlap"), HasSubstr("which ends at 8")));
  EXPECT_THAT(open_error(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight)),
              HasSubstr("leaves bytes 0..4 of the data section unused"));
  EXPECT_THAT(open_error(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", eight)),
              HasSubstr("cover 4 bytes of the data section, but it has 8"));
}

TEST(Safetensors, ReadingOtherDtypesOrOutsideIsAnError) {
  const std::string header = R"({"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})";
  const auto f = SafetensorsFile::open(
      test::write_temp_file("i64.safetensors", file_bytes(header, std::vector<uint8_t>(8))));
  float v;
  try {
    f->read_f32(*f->find("i"), 0, 1, &v);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                AllOf(HasSubstr("tensor 'i' has dtype I64"), HasSubstr("supported: F32, F16, BF16")));
  }
  const std::string h2 = R"({"f":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  const auto g =
      SafetensorsFile::open(test::write_temp_file("f.safetensors", file_bytes(h2, std::vector<uint8_t>(4))));
  EXPECT_THROW(g->read_f32(*g->find("f"), 1, 1, &v), Error);
  EXPECT_THROW(g->read_strided(*g->find("f"), 0, UINT64_MAX, 3, &v), Error);  // overflowing span
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string set_error(const std::string& dir) {
  try {
    TensorSet::open(dir);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an Error";
  return "";
}

TEST(TensorSet, ShardedIndex) {
  const std::string dir = test::temp_dir() + "/sharded";
  std::filesystem::create_directories(dir);
  const std::vector<uint8_t> four(4, 0);
  const auto shard = [&](const std::string& name, const std::string& tensor) {
    const auto bytes =
        file_bytes(R"({")" + tensor + R"(":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", four);
    std::ofstream(dir + "/" + name, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  };
  shard("a.safetensors", "x");
  shard("b.safetensors", "y");
  write(dir + "/model.safetensors.index.json", R"({"weight_map":{"x":"a.safetensors","y":"b.safetensors"}})");
  const auto set = TensorSet::open(dir);
  EXPECT_EQ(set->names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_THAT(set->require("y").file->path(), HasSubstr("b.safetensors"));
  EXPECT_THAT(set_error(dir + "/none"),
              HasSubstr("neither model.safetensors nor model.safetensors.index.json"));

  write(dir + "/model.safetensors.index.json", R"({"weight_map":{"x":"b.safetensors"}})");
  EXPECT_THAT(set_error(dir), AllOf(HasSubstr("puts 'x' in b.safetensors, which has no such tensor")));
  write(dir + "/model.safetensors.index.json", R"({"weight_map":{"x":"../a.safetensors"}})");
  EXPECT_THAT(set_error(dir), HasSubstr("is not a file name inside"));
  write(dir + "/model.safetensors.index.json", R"({"weight_map":{"x":"c.safetensors"}})");
  EXPECT_THAT(set_error(dir), AllOf(HasSubstr("c.safetensors"), HasSubstr("cannot open")));
  write(dir + "/model.safetensors.index.json", R"({"weight_map":[]})");
  EXPECT_THAT(set_error(dir), HasSubstr("weight_map is missing or not an object"));
  write(dir + "/model.safetensors.index.json", R"({"weight_map":{"x":"a.saf)");
  EXPECT_THAT(set_error(dir), HasSubstr("not valid JSON"));
  const auto two = file_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("z":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                              std::vector<uint8_t>(8));
  std::ofstream(dir + "/c.safetensors", std::ios::binary)
      .write(reinterpret_cast<const char*>(two.data()), two.size());
  write(dir + "/model.safetensors.index.json", R"({"weight_map":{"x":"a.safetensors","z":"c.safetensors"}})");
  EXPECT_THAT(set_error(dir), HasSubstr("is in both"));
}

}  // namespace
}  // namespace wgllm::hf
