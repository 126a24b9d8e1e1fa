#include "hf/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "hf/json_text.hpp"
#include "quant/half.hpp"

namespace wgllm::hf {

namespace {

using json = nlohmann::json;

struct DtypeInfo {
  Dtype dtype;
  std::string_view name;
  uint32_t bytes;
};

constexpr DtypeInfo kDtypes[] = {
    {Dtype::BOOL, "BOOL", 1},       {Dtype::U8, "U8", 1},           {Dtype::I8, "I8", 1},
    {Dtype::F8_E4M3, "F8_E4M3", 1}, {Dtype::F8_E5M2, "F8_E5M2", 1}, {Dtype::I16, "I16", 2},
    {Dtype::U16, "U16", 2},         {Dtype::F16, "F16", 2},         {Dtype::BF16, "BF16", 2},
    {Dtype::I32, "I32", 4},         {Dtype::U32, "U32", 4},         {Dtype::F32, "F32", 4},
    {Dtype::F64, "F64", 8},         {Dtype::I64, "I64", 8},         {Dtype::U64, "U64", 8},
};

const DtypeInfo& info(Dtype d) {
  for (const DtypeInfo& i : kDtypes)
    if (i.dtype == d) return i;
  fail_runtime("safetensors: dtype " + std::to_string(static_cast<int>(d)) + " has no table entry");
}

std::string known_dtypes() {
  std::string s;
  for (const DtypeInfo& i : kDtypes) s += (s.empty() ? "" : ", ") + std::string(i.name);
  return s;
}

// A non-negative JSON integer that fits u64.
bool as_u64(const json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

}  // namespace

std::string_view dtype_name(Dtype d) {
  return info(d).name;
}

uint32_t dtype_bytes(Dtype d) {
  return info(d).bytes;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile(MappedFile(path)));
  f->parse();
  return f;
}

void SafetensorsFile::parse() {
  const std::span<const uint8_t> all = map_.bytes();
  const std::string& p = path();
  if (all.size() < 8) {
    fail_input(p + ": offset 0: " + std::to_string(all.size()) +
               " bytes, too short for the 8-byte header length of a safetensors file");
  }
  uint64_t n = 0;
  std::memcpy(&n, all.data(), 8);
  if (n > kMaxHeaderBytes) {
    fail_input(p + ": offset 0: header length " + std::to_string(n) + " exceeds the limit " +
               std::to_string(kMaxHeaderBytes));
  }
  if (n > all.size() - 8) {
    fail_input(p + ": offset 0: header length " + std::to_string(n) + " runs past the end of the file (" +
               std::to_string(all.size()) + " bytes)");
  }
  data_offset_ = 8 + n;
  const uint64_t data_size = all.size() - data_offset_;
  const std::string where = p + ": header (bytes 8.." + std::to_string(data_offset_) + ")";

  json header;
  try {
    header = json::parse(all.begin() + 8, all.begin() + static_cast<ptrdiff_t>(data_offset_));
  } catch (const json::exception& e) {
    fail_input(where + ": not valid JSON: " + e.what());
  }
  if (!header.is_object()) fail_input(where + ": the header is not a JSON object");

  struct Range {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Range> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail_input(where + ": __metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail_input(where + ": __metadata__." + k + " is not a string");
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string at = where + ": tensor '" + name + "'";
    if (!entry.is_object()) fail_input(at + " is not an object");
    // clang 14 cannot capture a structured binding; an init-capture names it instead.
    const auto field = [&at, &entry = entry](const char* key) -> const json& {
      auto it = entry.find(key);
      if (it == entry.end()) fail_input(at + ": " + key + " is missing");
      return *it;
    };
    TensorInfo t;
    t.name = name;
    const json& dtype = field("dtype");
    if (!dtype.is_string()) fail_input(at + ": dtype is not a string");
    const DtypeInfo* d = nullptr;
    for (const DtypeInfo& i : kDtypes)
      if (i.name == dtype.get_ref<const std::string&>()) d = &i;
    if (!d) {
      fail_input(at + ": dtype \"" + dtype.get<std::string>() +
                 "\" is not a safetensors dtype (known: " + known_dtypes() + ")");
    }
    t.dtype = d->dtype;
    const json& shape = field("shape");
    if (!shape.is_array()) fail_input(at + ": shape is not an array");
    uint64_t elements = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
      uint64_t dim = 0;
      if (!as_u64(shape[i], dim)) {
        fail_input(at + ": shape[" + std::to_string(i) + "] = " + json_text(shape[i]) +
                   " is not a non-negative integer");
      }
      if (__builtin_mul_overflow(elements, dim, &elements)) {
        fail_input(at + ": shape " + shape.dump() + " has more than 2^64 elements");
      }
      t.shape.push_back(dim);
    }
    t.n_elements = elements;
    const json& offsets = field("data_offsets");
    uint64_t begin = 0, end = 0;
    if (!offsets.is_array() || offsets.size() != 2 || !as_u64(offsets[0], begin) ||
        !as_u64(offsets[1], end)) {
      fail_input(at + ": data_offsets = " + json_text(offsets) +
                 " is not [begin, end] of non-negative integers");
    }
    if (begin > end) {
      fail_input(at + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] end before they begin");
    }
    if (end > data_size) {
      fail_input(at + ": data_offsets end " + std::to_string(end) + " (file offset " +
                 std::to_string(data_offset_ + end) + ") is past the end of the data section (" +
                 std::to_string(data_size) + " bytes from offset " + std::to_string(data_offset_) + ")");
    }
    uint64_t expected = 0;
    if (__builtin_mul_overflow(elements, d->bytes, &expected) || expected != end - begin) {
      fail_input(at + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] hold " +
                 std::to_string(end - begin) + " bytes, but " + std::string(d->name) + " " + shape.dump() +
                 " takes " + (expected == elements * d->bytes ? std::to_string(expected) : "over 2^64"));
    }
    t.offset = data_offset_ + begin;
    t.n_bytes = end - begin;
    ranges.push_back({begin, end, tensors_.size()});
    index_.emplace(name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const Range& r = ranges[i];
    const std::string name = tensors_[r.tensor].name;
    if (r.begin < covered) {
      fail_input(where + ": tensor '" + name + "': data_offsets [" + std::to_string(r.begin) + ", " +
                 std::to_string(r.end) + "] overlap tensor '" + tensors_[ranges[i - 1].tensor].name +
                 "', which ends at " + std::to_string(covered));
    }
    if (r.begin > covered) {
      fail_input(where + ": tensor '" + name + "': data_offsets begin " + std::to_string(r.begin) +
                 " leaves bytes " + std::to_string(covered) + ".." + std::to_string(r.begin) +
                 " of the data section unused (the format allows no holes)");
    }
    covered = r.end;
  }
  if (covered != data_size) {
    fail_input(where + ": the tensors cover " + std::to_string(covered) +
               " bytes of the data section, but it has " + std::to_string(data_size) + " (from offset " +
               std::to_string(data_offset_) + "; the format allows no trailing bytes)");
  }
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::check_readable(const TensorInfo& t, uint64_t first, uint64_t n) const {
  if (t.dtype != Dtype::F32 && t.dtype != Dtype::F16 && t.dtype != Dtype::BF16) {
    fail_input(path() + ": tensor '" + t.name + "' has dtype " + std::string(dtype_name(t.dtype)) +
               ", which cannot be read as weights (supported: F32, F16, BF16)");
  }
  if (first > t.n_elements || n > t.n_elements - first) {
    fail_input(path() + ": tensor '" + t.name + "': elements [" + std::to_string(first) + ", " +
               std::to_string(first + n) + ") are outside its " + std::to_string(t.n_elements));
  }
}

void SafetensorsFile::read_f32(const TensorInfo& t, uint64_t first, uint64_t n, float* out) const {
  read_strided(t, first, 1, n, out);
}

void SafetensorsFile::read_strided(const TensorInfo& t, uint64_t first, uint64_t stride, uint64_t n,
                                   float* out) const {
  if (n == 0) return;
  uint64_t span = 0;  // elements from `first` to the last one read, inclusive
  if (__builtin_mul_overflow(n - 1, stride, &span) || __builtin_add_overflow(span, 1, &span))
    span = UINT64_MAX;
  check_readable(t, first, span);
  const uint32_t size = dtype_bytes(t.dtype);
  const uint8_t* src = map_.bytes().data() + t.offset + first * size;
  if (t.dtype == Dtype::F32 && stride == 1) {
    std::memcpy(out, src, n * 4);
    return;
  }
  for (uint64_t i = 0; i < n; ++i) {
    const uint8_t* e = src + i * stride * size;
    if (t.dtype == Dtype::F32) {
      std::memcpy(out + i, e, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, e, 2);
      out[i] = t.dtype == Dtype::F16 ? quant::f16_to_f32(h) : quant::bf16_to_f32(h);
    }
  }
}

std::unique_ptr<TensorSet> TensorSet::open(const std::string& dir) {
  namespace fs = std::filesystem;
  auto set = std::unique_ptr<TensorSet>(new TensorSet);
  set->dir_ = dir;
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single = fs::path(dir) / "model.safetensors";
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    if (!fs::exists(single, ec)) {
      fail_input(dir + ": holds neither model.safetensors nor model.safetensors.index.json");
    }
    set->add(SafetensorsFile::open(single.string()));
    return set;
  }

  const std::string ip = index_path.string();
  json index;
  {
    const MappedFile file(ip);
    try {
      index = json::parse(file.bytes().begin(), file.bytes().end());
    } catch (const json::exception& e) {
      fail_input(ip + ": not valid JSON: " + e.what());
    }
  }
  auto map_it = index.is_object() ? index.find("weight_map") : index.end();
  if (map_it == index.end() || !map_it->is_object())
    fail_input(ip + ": weight_map is missing or not an object");
  std::map<std::string, std::vector<std::string>> by_shard;  // shard -> tensor names
  for (const auto& [name, shard] : map_it->items()) {
    if (!shard.is_string()) fail_input(ip + ": weight_map[\"" + name + "\"] is not a string");
    const std::string s = shard.get<std::string>();
    if (s.empty() || s.find('/') != std::string::npos || s.find('\\') != std::string::npos || s == "." ||
        s == "..") {
      fail_input(ip + ": weight_map[\"" + name + "\"] = \"" + s + "\" is not a file name inside " + dir);
    }
    by_shard[s].push_back(name);
  }
  if (by_shard.empty()) fail_input(ip + ": weight_map is empty");
  for (const auto& [shard, names] : by_shard) {
    auto file = SafetensorsFile::open((fs::path(dir) / shard).string());
    for (const std::string& name : names) {
      if (!file->find(name)) {
        fail_input(ip + ": weight_map puts '" + name + "' in " + shard + ", which has no such tensor");
      }
    }
    set->add(std::move(file));
  }
  return set;
}

void TensorSet::add(std::unique_ptr<SafetensorsFile> file) {
  for (const TensorInfo& t : file->tensors()) {
    auto [it, inserted] = entries_.emplace(t.name, Entry{file.get(), &t});
    if (!inserted) {
      fail_input(dir_ + ": tensor '" + t.name + "' is in both " + it->second.file->path() + " and " +
                 file->path());
    }
  }
  files_.push_back(std::move(file));
}

const TensorSet::Entry* TensorSet::find(std::string_view name) const {
  auto it = entries_.find(std::string(name));
  return it == entries_.end() ? nullptr : &it->second;
}

const TensorSet::Entry& TensorSet::require(std::string_view name) const {
  const Entry* e = find(name);
  if (!e) fail_input(dir_ + ": the model has no tensor '" + std::string(name) + "'");
  return *e;
}

std::vector<std::string> TensorSet::names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace wgllm::hf
