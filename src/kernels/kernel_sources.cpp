#include "kernels/kernel_sources.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace wgllm::kernels {

namespace {

// WGLLM_KERNEL_DIR: kernels are read from NAME.wgsl in that folder where one exists, so that a kernel can
// be changed and measured on a machine without rebuilding the binary there (performance work; docs/perf.md).
// Read once per name and kept for the life of the process.
std::string_view override_source(std::string_view name) {
  static const char* dir = std::getenv("WGLLM_KERNEL_DIR");
  if (!dir || !*dir) return {};
  static std::mutex mutex;
  static std::map<std::string, std::string, std::less<>> loaded;
  std::lock_guard lock(mutex);
  if (auto it = loaded.find(name); it != loaded.end()) return it->second;
  std::ifstream in(std::string(dir) + "/" + std::string(name) + ".wgsl", std::ios::binary);
  if (!in) return loaded[std::string(name)] = {};
  std::stringstream text;
  text << in.rdbuf();
  return loaded[std::string(name)] = text.str();
}

}  // namespace

std::string_view source(std::string_view name) {
  if (std::string_view o = override_source(name); !o.empty()) return o;
  for (const auto& k : all_sources())
    if (k.name == name) return k.wgsl;
  fail_runtime("no embedded WGSL kernel named '" + std::string(name) + "'");
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool is_on(const KernelDefines& defines, std::string_view name) {
  auto it = defines.find(std::string(name));
  return it != defines.end() && it->second != "0" && it->second != "false";
}

// Resolves the #if/#else/#endif lines of one file and collects its #use lines into `uses`.
std::string expand(std::string_view name, std::string_view wgsl, const KernelDefines& defines,
                   std::vector<std::string>& uses) {
  struct Frame {
    bool parent_active, condition, in_else;
  };
  std::vector<Frame> stack;
  bool active = true;
  std::string out;
  out.reserve(wgsl.size() + 64 * defines.size());
  size_t line_no = 0;
  auto where = [&] { return std::string(name) + ".wgsl:" + std::to_string(line_no) + ": "; };
  while (!wgsl.empty()) {
    ++line_no;
    size_t nl = wgsl.find('\n');
    std::string_view line = wgsl.substr(0, nl);
    wgsl.remove_prefix(nl == std::string_view::npos ? wgsl.size() : nl + 1);
    std::string_view t = trim(line);
    if (t.starts_with("#if ")) {
      std::string_view cond = trim(t.substr(4));
      bool negate = cond.starts_with('!');
      if (negate) cond = trim(cond.substr(1));
      bool value = is_on(defines, cond) != negate;
      stack.push_back({active, value, false});
      active = active && value;
      out += '\n';
    } else if (t == "#else") {
      if (stack.empty() || stack.back().in_else) fail_runtime(where() + "#else without #if");
      stack.back().in_else = true;
      active = stack.back().parent_active && !stack.back().condition;
      out += '\n';
    } else if (t == "#endif") {
      if (stack.empty()) fail_runtime(where() + "#endif without #if");
      active = stack.back().parent_active;
      stack.pop_back();
      out += '\n';
    } else if (t.starts_with("#use ")) {
      if (active) uses.emplace_back(trim(t.substr(5)));
      out += '\n';
    } else {
      if (active) out += line;
      out += '\n';
    }
  }
  if (!stack.empty()) fail_runtime(std::string(name) + ".wgsl: #if without #endif");
  return out;
}

}  // namespace

std::string specialise(std::string_view name, std::string_view wgsl, const KernelDefines& defines) {
  std::vector<std::string> uses;
  std::string out = expand(name, wgsl, defines, uses);
  for (const auto& [key, value] : defines) out += "const " + key + " = " + value + ";\n";
  // Included files see the same defines (their #if lines select per type, say); each is appended once,
  // also when several files use it.
  for (size_t i = 0; i < uses.size(); ++i) {
    const std::string use = uses[i];  // a copy: expanding it may grow `uses`
    if (std::find(uses.begin(), uses.begin() + i, use) != uses.begin() + i) continue;
    out += expand(use, source(use), defines, uses);
  }
  return out;
}

std::string u32(uint64_t v) {
  return std::to_string(v) + "u";
}

std::string f32(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  std::string s = buf;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

void add_subgroup_defines(KernelDefines& defines, uint32_t min_subgroup_size) {
  defines.insert_or_assign("SUBGROUPS", std::string("1"));
  uint32_t lanes = 32;
  while (lanes > min_subgroup_size) lanes /= 2;
  if (lanes >= 8) defines.insert_or_assign("SUM_LANES", u32(lanes));
}

}  // namespace wgllm::kernels
