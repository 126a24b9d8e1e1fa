// `wgllm info`: a GGUF file's metadata and tensor table, as a person inspecting a file wants to see it:
// long arrays abbreviated, tensors with type, shape and size.
#include <cstdio>
#include <map>

#include "cli/commands.hpp"
#include "gguf/gguf_file.hpp"

namespace wgllm::cli {

namespace {

std::string show(const gguf::Value& v, size_t max_items = 6) {
  using T = gguf::ValueType;
  switch (v.type) {
    case T::U8:
    case T::U16:
    case T::U32:
    case T::U64:
      return std::to_string(v.u);
    case T::BOOL:
      return v.u ? "true" : "false";
    case T::I8:
    case T::I16:
    case T::I32:
    case T::I64:
      return std::to_string(v.i);
    case T::F32:
    case T::F64: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.9g", v.f);
      return buf;
    }
    case T::STRING: {
      std::string s = v.str.size() > 120 ? v.str.substr(0, 117) + "..." : v.str;
      std::string out = "\"";
      for (char ch : s) out += ch == '\n' ? std::string("\\n") : std::string(1, ch);
      return out + "\"";
    }
    case T::ARRAY: {
      std::string out = "[" + std::string(gguf::value_type_name(v.elem_type)) + " x " +
                        std::to_string(v.array_size()) + "] [";
      size_t n = std::min<uint64_t>(v.array_size(), max_items);
      for (size_t i = 0; i < n; ++i) {
        if (i) out += ", ";
        if (!v.strings.empty())
          out += show(gguf::Value{.type = T::STRING, .str = v.strings[i]});
        else if (!v.ints.empty())
          out += std::to_string(v.ints[i]);
        else if (!v.uints.empty())
          out += std::to_string(v.uints[i]);
        else if (!v.floats.empty())
          out += show(gguf::Value{.type = T::F64, .f = v.floats[i]});
        else if (!v.arrays.empty())
          out += show(v.arrays[i], 2);
      }
      if (v.array_size() > n) out += ", ...";
      return out + "]";
    }
  }
  return "?";
}

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / 1073741824.0);
  else if (b >= (1ull << 20))
    std::snprintf(buf, sizeof buf, "%.2f MiB", b / 1048576.0);
  else if (b >= 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

}  // namespace

Action add_info(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto all = std::make_shared<bool>(false);
  app.add_option("model", *path, "GGUF file")->required()->check(CLI::ExistingFile);
  app.add_flag("--all-tensors", *all, "list every tensor (default: the first 40)");
  return [path, all] {
    auto f = gguf::GgufFile::open(*path);
    std::printf("%s: GGUF v%u, %s, %zu metadata keys, %zu tensors (%s), alignment %llu, data at byte %llu\n",
                path->c_str(), f->version(), human_bytes(f->file_size()).c_str(), f->metadata().size(),
                f->tensors().size(), human_bytes(f->tensor_data_bytes()).c_str(),
                static_cast<unsigned long long>(f->alignment()),
                static_cast<unsigned long long>(f->data_offset()));
    std::printf("\nmetadata:\n");
    for (const auto& kv : f->metadata())
      std::printf("  %-44s %-6s %s\n", kv.key.c_str(),
                  std::string(gguf::value_type_name(kv.value.type)).c_str(), show(kv.value).c_str());
    std::map<std::string, std::pair<size_t, uint64_t>> by_type;
    for (const auto& t : f->tensors()) {
      auto& e = by_type[std::string(gguf::type_name(t.type))];
      e.first++;
      e.second += t.n_bytes;
    }
    std::printf("\ntensor types:");
    for (const auto& [name, e] : by_type)
      std::printf("  %s: %zu (%s)", name.c_str(), e.first, human_bytes(e.second).c_str());
    std::printf("\n\ntensors:\n");
    size_t shown = 0;
    for (const auto& t : f->tensors()) {
      if (!*all && shown == 40) {
        std::printf("  ... %zu more (--all-tensors)\n", f->tensors().size() - shown);
        break;
      }
      std::string dims;
      for (size_t i = 0; i < t.dims.size(); ++i) dims += (i ? " x " : "") + std::to_string(t.dims[i]);
      std::printf("  %-40s %-6s [%s] %s\n", t.name.c_str(), std::string(gguf::type_name(t.type)).c_str(),
                  dims.c_str(), human_bytes(t.n_bytes).c_str());
      ++shown;
    }
    return 0;
  };
}

}  // namespace wgllm::cli
