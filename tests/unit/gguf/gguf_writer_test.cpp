// GgufWriter: exact bytes against a hand encoding of the format, round trips of every value type and
// several tensor types through the reader, and the writer's own input checks.
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>
#include <random>

#include "gguf/gguf_file.hpp"
#include "gguf/gguf_writer.hpp"
#include "support/test_support.hpp"
#include "unit/gguf/gguf_test_util.hpp"

namespace wgllm::gguf {
namespace {

using test_util::Bytes;
using test_util::expect_bad_input;

std::vector<uint8_t> file_bytes(const std::string& path) {
  const std::string s = test::read_file(path);
  return {s.begin(), s.end()};
}

bool same(const Value& a, const Value& b) {
  if (a.type != b.type || a.u != b.u || a.i != b.i || a.f != b.f || a.str != b.str) return false;
  if (a.type != ValueType::ARRAY) return true;
  if (a.elem_type != b.elem_type || a.strings != b.strings || a.ints != b.ints || a.uints != b.uints ||
      a.floats != b.floats || a.arrays.size() != b.arrays.size()) {
    return false;
  }
  for (size_t k = 0; k < a.arrays.size(); ++k) {
    if (!same(a.arrays[k], b.arrays[k])) return false;
  }
  return true;
}

Value scalar(ValueType t, uint64_t u, int64_t i = 0, double f = 0) {
  Value v;
  v.type = t;
  v.u = u;
  v.i = i;
  v.f = f;
  return v;
}

Value array_of(ValueType et) {
  Value v;
  v.type = ValueType::ARRAY;
  v.elem_type = et;
  return v;
}

TEST(GgufWriter, BytesMatchTheFormat) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_uint32("a.b", 7);
  w.add_tensor("w", TensorType::F32, {2}, {1, 2, 3, 4, 5, 6, 7, 8});

  for (uint32_t alignment : {32u, 64u}) {
    SCOPED_TRACE("alignment " + std::to_string(alignment));
    const std::string path = test::temp_dir() + "/exact.gguf";
    w.write(path, alignment);
    Bytes e;
    e.header(3, 1, alignment == 32 ? 2 : 3);
    e.str("general.architecture").u32(8).str("llama");
    e.str("a.b").u32(4).u32(7);
    if (alignment != 32) e.str("general.alignment").u32(4).u32(alignment);
    e.str("w").u32(1).u64(2).u32(0).u64(0);
    e.pad_to(alignment);
    for (uint8_t k = 1; k <= 8; ++k) e.u8(k);
    e.pad_to(alignment);
    EXPECT_EQ(file_bytes(path), e.b);
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  }
}

TEST(GgufWriter, RoundTripEveryValueTypeAndSeveralTensorTypes) {
  SCOPED_TRACE(test::seed_note());
  auto rng = test::rng(1);
  std::vector<std::pair<std::string, Value>> kvs;
  kvs.emplace_back("t.u8", scalar(ValueType::U8, 255));
  kvs.emplace_back("t.i8", scalar(ValueType::I8, 0, -128));
  kvs.emplace_back("t.u16", scalar(ValueType::U16, 65535));
  kvs.emplace_back("t.i16", scalar(ValueType::I16, 0, -32768));
  kvs.emplace_back("t.u32", scalar(ValueType::U32, 4294967295u));
  kvs.emplace_back("t.i32", scalar(ValueType::I32, 0, std::numeric_limits<int32_t>::min()));
  kvs.emplace_back("t.u64", scalar(ValueType::U64, std::numeric_limits<uint64_t>::max()));
  kvs.emplace_back("t.i64", scalar(ValueType::I64, 0, std::numeric_limits<int64_t>::min()));
  kvs.emplace_back("t.f32", scalar(ValueType::F32, 0, 0, 0.1f));
  kvs.emplace_back("t.f32inf", scalar(ValueType::F32, 0, 0, -std::numeric_limits<double>::infinity()));
  kvs.emplace_back("t.f64", scalar(ValueType::F64, 0, 0, 0.1));
  kvs.emplace_back("t.true", scalar(ValueType::BOOL, 1));
  kvs.emplace_back("t.false", scalar(ValueType::BOOL, 0));
  Value s = scalar(ValueType::STRING, 0);
  s.str = std::string("caf\xc3\xa9 \0 nul", 11);
  kvs.emplace_back("t.string", s);
  kvs.emplace_back("t.empty_string", scalar(ValueType::STRING, 0));

  Value strings = array_of(ValueType::STRING);
  strings.strings = {"", "a", "\xe2\x96\x81the", std::string(300, 'x')};
  kvs.emplace_back("a.strings", strings);
  const ValueType int_types[] = {ValueType::I8, ValueType::I16, ValueType::I32, ValueType::I64};
  const ValueType uint_types[] = {ValueType::U8, ValueType::U16, ValueType::U32, ValueType::U64,
                                  ValueType::BOOL};
  for (ValueType t : int_types) {
    Value a = array_of(t);
    a.ints = {-1, 0, 1, 100};
    if (t == ValueType::I64) a.ints.push_back(std::numeric_limits<int64_t>::min());
    kvs.emplace_back("a." + std::string(value_type_name(t)), a);
  }
  for (ValueType t : uint_types) {
    Value a = array_of(t);
    a.uints = {0, 1, 1, 0};
    if (t != ValueType::BOOL) a.uints.push_back(200);
    kvs.emplace_back("a." + std::string(value_type_name(t)), a);
  }
  Value f32s = array_of(ValueType::F32), f64s = array_of(ValueType::F64);
  f32s.floats = {0.5, -1000.0, static_cast<float>(1e-30)};
  f64s.floats = {0.1, 1e300, -0.0};
  kvs.emplace_back("a.f32", f32s);
  kvs.emplace_back("a.f64", f64s);
  kvs.emplace_back("a.empty", array_of(ValueType::U32));
  // Arrays of arrays: ragged i32 rows, rows of strings, and three levels.
  Value nested = array_of(ValueType::ARRAY);
  for (int n : {3, 0, 1}) {
    Value row = array_of(ValueType::I32);
    for (int k = 0; k < n; ++k) row.ints.push_back(k * 7 - 3);
    nested.arrays.push_back(row);
  }
  kvs.emplace_back("n.ints", nested);
  Value nested_strings = array_of(ValueType::ARRAY);
  nested_strings.arrays.push_back(strings);
  nested_strings.arrays.push_back(array_of(ValueType::STRING));
  kvs.emplace_back("n.strings", nested_strings);
  Value deep = array_of(ValueType::ARRAY);
  deep.arrays = {nested, nested_strings};
  kvs.emplace_back("n.deep", deep);

  struct T {
    std::string name;
    TensorType type;
    std::vector<uint64_t> dims;
    size_t bytes;
  };
  const std::vector<T> tensors = {
      {"f32", TensorType::F32, {4, 3}, 48},
      {"f16", TensorType::F16, {8}, 16},
      {"q8_0", TensorType::Q8_0, {64, 2}, 4 * 34},
      {"q4_k", TensorType::Q4_K, {256, 1}, 144},
      {"q6_k", TensorType::Q6_K, {256, 2}, 2 * 210},
      {"i8", TensorType::I8, {5}, 5},
      {"bf16.4d", TensorType::BF16, {3, 2, 2, 1}, 24},
      {"q4_0", TensorType::Q4_0, {32, 3, 1}, 3 * 18},
  };
  std::vector<std::vector<uint8_t>> data;
  GgufWriter w;
  for (const auto& [k, v] : kvs) w.set_value(k, v);
  for (const T& t : tensors) {
    std::vector<uint8_t> b(t.bytes);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    data.push_back(b);
    w.add_tensor(t.name, t.type, t.dims, b);
  }

  for (uint32_t alignment : {32u, 64u}) {
    SCOPED_TRACE("alignment " + std::to_string(alignment));
    const std::string path = test::temp_dir() + "/roundtrip.gguf";
    w.write(path, alignment);
    auto f = GgufFile::open(path);
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->alignment(), alignment);
    EXPECT_EQ(f->data_offset() % alignment, 0u);
    const size_t n_kv = kvs.size() + (alignment == 32 ? 0 : 1);
    ASSERT_EQ(f->metadata().size(), n_kv);
    for (size_t k = 0; k < kvs.size(); ++k) {
      EXPECT_EQ(f->metadata()[k].key, kvs[k].first);
      EXPECT_TRUE(same(f->metadata()[k].value, kvs[k].second)) << kvs[k].first;
    }
    if (alignment != 32) {
      EXPECT_EQ(f->metadata().back().key, "general.alignment");
      EXPECT_EQ(f->require_uint("general.alignment"), alignment);
    }
    ASSERT_EQ(f->tensors().size(), tensors.size());
    uint64_t total = 0;
    for (size_t k = 0; k < tensors.size(); ++k) {
      const TensorInfo& info = f->tensors()[k];
      EXPECT_EQ(info.name, tensors[k].name);
      EXPECT_EQ(info.type, tensors[k].type);
      EXPECT_EQ(info.dims, tensors[k].dims);
      EXPECT_EQ(info.offset % alignment, 0u);
      EXPECT_EQ(info.n_bytes, tensors[k].bytes);
      auto got = f->tensor_bytes(info);
      EXPECT_EQ(std::vector<uint8_t>(got.begin(), got.end()), data[k]) << info.name;
      total += info.n_bytes;
    }
    EXPECT_EQ(f->tensor_data_bytes(), total);
    EXPECT_EQ(f->file_size() % alignment, 0u);  // the last tensor is padded too, as ggml writes it
  }
}

// Copying a real file's metadata and tensors through the writer reproduces them.
TEST(GgufWriter, CopiesARealFile) {
  auto src = GgufFile::open(test::source_path("models/stories260K.gguf"));
  GgufWriter w;
  for (const KeyValue& kv : src->metadata()) w.set_value(kv.key, kv.value);
  for (const TensorInfo& t : src->tensors()) {
    auto b = src->tensor_bytes(t);
    w.add_tensor(t.name, t.type, t.dims, {b.begin(), b.end()});
  }
  const std::string path = test::temp_dir() + "/copy.gguf";
  w.write(path);
  // The source was written by llama.cpp with the same layout rules, so the copy is byte-identical.
  EXPECT_EQ(file_bytes(path), file_bytes(test::source_path("models/stories260K.gguf")));
}

TEST(GgufWriter, SettingAKeyAgainReplacesItInPlace) {
  GgufWriter w;
  w.set_uint32("a", 1);
  w.set_string("b", "x");
  w.set_bool("a", true);
  const std::string path = test::temp_dir() + "/replace.gguf";
  w.write(path);
  auto f = GgufFile::open(path);
  ASSERT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(f->metadata()[0].key, "a");
  EXPECT_TRUE(f->get_bool("a", false));
}

TEST(GgufWriter, AlignmentKeyFollowsTheLayout) {
  GgufWriter w;
  w.set_uint32("general.alignment", 64);  // e.g. copied from a file written with 64
  w.set_string("general.name", "x");
  w.add_tensor("t", TensorType::F32, {3}, std::vector<uint8_t>(12));
  const std::string path = test::temp_dir() + "/align.gguf";
  w.write(path, 128);
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->metadata()[0].key, "general.alignment");
  EXPECT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(f->alignment(), 128u);
  EXPECT_EQ(f->data_offset() % 128, 0u);
  w.write(path);
  EXPECT_EQ(GgufFile::open(path)->alignment(), 32u);
}

TEST(GgufWriter, RejectsBadTensors) {
  GgufWriter w;
  w.add_tensor("ok", TensorType::F32, {2}, std::vector<uint8_t>(8));
  expect_bad_input(
      [&] {
        w.add_tensor("short", TensorType::F32, {2, 2}, std::vector<uint8_t>(15));
      },
      {"'short'", "15 bytes", "16"});
  expect_bad_input([&] { w.add_tensor("q", TensorType::Q8_0, {33}, std::vector<uint8_t>(34)); },
                   {"'q'", "block size 32", "q8_0"});
  expect_bad_input([&] { w.add_tensor("zero", TensorType::F32, {2, 0}, {}); }, {"'zero'", "0"});
  expect_bad_input(
      [&] {
        w.add_tensor("five", TensorType::F32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4));
      },
      {"'five'", "5 dims"});
  expect_bad_input([&] { w.add_tensor("none", TensorType::F32, {}, {}); }, {"'none'", "0 dims"});
  expect_bad_input([&] { w.add_tensor("type4", static_cast<TensorType>(4), {32}, std::vector<uint8_t>(20)); },
                   {"'type4'", "unknown tensor type 4"});
  expect_bad_input(
      [&] {
        w.add_tensor("huge", TensorType::F32, {1ull << 32, 1ull << 32}, {});
      },
      {"'huge'", "elements"});
  expect_bad_input([&] { w.add_tensor("ok", TensorType::F32, {2}, std::vector<uint8_t>(8)); },
                   {"'ok'", "duplicate"});
  expect_bad_input([&] { w.add_tensor(std::string(64, 'n'), TensorType::F32, {1}, std::vector<uint8_t>(4)); },
                   {"name length 64"});
  expect_bad_input([&] { w.add_tensor("", TensorType::F32, {1}, std::vector<uint8_t>(4)); },
                   {"name length 0"});
}

TEST(GgufWriter, RejectsBadValues) {
  GgufWriter w;
  expect_bad_input([&] { w.set_value("k.u8", scalar(ValueType::U8, 256)); }, {"'k.u8'", "256", "u8"});
  expect_bad_input([&] { w.set_value("k.i16", scalar(ValueType::I16, 0, 40000)); }, {"'k.i16'", "40000"});
  expect_bad_input([&] { w.set_value("k.bool", scalar(ValueType::BOOL, 2)); }, {"'k.bool'", "bool"});
  expect_bad_input([&] { w.set_value("k.f32", scalar(ValueType::F32, 0, 0, 1e300)); }, {"'k.f32'", "f32"});
  expect_bad_input([&] { w.set_value("k.type", scalar(static_cast<ValueType>(13), 0)); }, {"'k.type'", "13"});
  Value a = array_of(ValueType::U16);
  a.uints = {1, 70000};
  expect_bad_input([&] { w.set_value("k.arr", a); }, {"'k.arr'", "70000", "u16"});
  Value holder = array_of(ValueType::ARRAY);
  holder.arrays.push_back(scalar(ValueType::U8, 1));
  expect_bad_input([&] { w.set_value("k.nest", holder); }, {"'k.nest'", "array of arrays holds a u8"});
  Value deep = array_of(ValueType::U8);
  for (int d = 1; d < kMaxArrayDepth; ++d) {
    Value up = array_of(ValueType::ARRAY);
    up.arrays.push_back(deep);
    deep = up;
  }
  w.set_value("k.deepest", deep);  // kMaxArrayDepth levels: allowed
  Value too_deep = array_of(ValueType::ARRAY);
  too_deep.arrays.push_back(deep);
  expect_bad_input([&] { w.set_value("k.too_deep", too_deep); }, {"'k.too_deep'", "nest deeper"});
  expect_bad_input([&] { w.set_uint32("", 1); }, {"length 0"});
  expect_bad_input([&] { w.set_uint32(std::string(65536, 'k'), 1); }, {"length 65536"});
  // The nesting limit is the reader's: the deepest allowed value reads back.
  const std::string path = test::temp_dir() + "/deep.gguf";
  w.write(path);
  EXPECT_TRUE(same(*GgufFile::open(path)->find("k.deepest"), deep));
}

TEST(GgufWriter, RejectsBadAlignment) {
  GgufWriter w;
  for (uint32_t alignment : {0u, 48u, 33u}) {
    expect_bad_input([&] { w.write(test::temp_dir() + "/x.gguf", alignment); },
                     {"alignment " + std::to_string(alignment), "power of two"});
  }
}

TEST(GgufWriter, LeavesNoTemporaryFileOnFailure) {
  GgufWriter w;
  w.set_uint32("a", 1);
  // The final name is a directory: writing PATH.tmp works, the rename into place fails.
  const std::string dir = test::temp_dir() + "/is_a_dir.gguf";
  std::filesystem::create_directory(dir);
  try {
    w.write(dir);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Runtime);
    EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir + ".tmp"));
  EXPECT_TRUE(std::filesystem::is_directory(dir));

  const std::string missing = test::temp_dir() + "/no/such/dir/x.gguf";
  expect_bad_input([&] { w.write(missing); }, {missing + ".tmp", "cannot create"});
}

}  // namespace
}  // namespace wgllm::gguf
