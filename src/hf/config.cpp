#include "hf/config.hpp"

#include <limits>

#include "core/error.hpp"
#include "core/mapped_file.hpp"
#include "hf/json_text.hpp"

namespace wgllm::hf {

using json = nlohmann::json;

Config Config::read(const std::string& path) {
  Config c;
  c.path_ = path;
  const MappedFile file(path);
  try {
    c.root_ = json::parse(file.bytes().begin(), file.bytes().end());
  } catch (const json::exception& e) {
    fail_input(path + ": not valid JSON: " + e.what());
  }
  if (!c.root_.is_object()) fail_input(path + ": the top level is not a JSON object");
  auto tc = c.root_.find("text_config");
  if (tc != c.root_.end() && !tc->is_null()) {
    if (!tc->is_object()) fail_input(path + ": text_config is not an object");
    c.nested_ = true;
  }
  return c;
}

void Config::fail(const std::string& key, const std::string& problem) const {
  fail_input(path_ + ": " + (nested_ ? "text_config." : "") + key + " " + problem);
}

std::string Config::architecture() const {
  auto it = root_.find("architectures");
  if (it == root_.end() || !it->is_array() || it->empty() || !(*it)[0].is_string()) {
    fail_input(path_ + ": architectures is missing or not a list of names");
  }
  return (*it)[0].get<std::string>();
}

std::string Config::model_type() const {
  const json* v = find("model_type");
  return v && v->is_string() ? v->get<std::string>() : "";
}

const json* Config::find(const std::string& key) const {
  const json& t = text();
  auto it = t.find(key);
  return it == t.end() || it->is_null() ? nullptr : &*it;
}

const json& Config::require(const std::string& key) const {
  const json* v = find(key);
  if (!v) fail(key, "is missing");
  return *v;
}

bool Config::has(const std::string& key) const {
  return find(key) != nullptr;
}

uint32_t Config::u32(const std::string& key) const {
  const json& v = require(key);
  if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
      v.get<int64_t>() > std::numeric_limits<uint32_t>::max()) {
    fail(key, "= " + json_text(v) + " is not an integer from 0 to 4294967295");
  }
  return static_cast<uint32_t>(v.get<int64_t>());
}

uint32_t Config::u32(const std::string& key, uint32_t def) const {
  return has(key) ? u32(key) : def;
}

double Config::number(const std::string& key) const {
  const json& v = require(key);
  if (!v.is_number()) fail(key, "= " + json_text(v) + " is not a number");
  return v.get<double>();
}

double Config::number(const std::string& key, double def) const {
  return has(key) ? number(key) : def;
}

bool Config::boolean(const std::string& key, bool def) const {
  const json* v = find(key);
  if (!v) return def;
  if (!v->is_boolean()) fail(key, "= " + json_text(*v) + " is not true or false");
  return v->get<bool>();
}

std::string Config::string(const std::string& key, const std::string& def) const {
  const json* v = find(key);
  if (!v) return def;
  if (!v->is_string()) fail(key, "= " + json_text(*v) + " is not a string");
  return v->get<std::string>();
}

std::vector<int64_t> Config::ints(const std::string& key) const {
  const json* v = find(key);
  if (!v) return {};
  if (!v->is_array()) fail(key, "is not a list");
  std::vector<int64_t> out;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_number_integer()) fail(key + "[" + std::to_string(i) + "]", "is not an integer");
    out.push_back((*v)[i].get<int64_t>());
  }
  return out;
}

std::vector<std::string> Config::strings(const std::string& key) const {
  const json* v = find(key);
  if (!v) return {};
  if (!v->is_array()) fail(key, "is not a list");
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) fail(key + "[" + std::to_string(i) + "]", "is not a string");
    out.push_back((*v)[i].get<std::string>());
  }
  return out;
}

Rope Config::rope_from(const json& params, const std::string& where) const {
  Rope r;
  if (!params.is_object()) fail(where, "is not an object");
  auto num = [&](const char* key, double def) {
    auto it = params.find(key);
    if (it == params.end() || it->is_null()) return def;
    if (!it->is_number()) fail(where + "." + key, "= " + json_text(*it) + " is not a number");
    return it->get<double>();
  };
  for (const char* key : {"rope_type", "type"}) {
    auto it = params.find(key);
    if (it == params.end() || it->is_null()) continue;
    if (!it->is_string()) fail(where + "." + key, "is not a string");
    r.type = it->get<std::string>();
    break;
  }
  r.theta = num("rope_theta", number("rope_theta", 10000));
  r.factor = num("factor", 1);
  r.low_freq_factor = num("low_freq_factor", 1);
  r.high_freq_factor = num("high_freq_factor", 4);
  if (auto it = params.find("original_max_position_embeddings"); it != params.end() && !it->is_null()) {
    r.original_max_position_embeddings = num("original_max_position_embeddings", 0);
  } else if (has("original_max_position_embeddings")) {
    r.original_max_position_embeddings = number("original_max_position_embeddings");
  }
  r.partial_rotary_factor = num("partial_rotary_factor", number("partial_rotary_factor", 1));
  return r;
}

Rope Config::rope() const {
  if (const json* p = find("rope_parameters")) {
    if (!p->is_object()) fail("rope_parameters", "is not an object");
    if (p->contains("rope_type") || p->contains("rope_theta") || p->contains("type")) {
      return rope_from(*p, "rope_parameters");
    }
    auto full = p->find("full_attention");
    if (full == p->end()) {
      fail("rope_parameters", "has neither rope_type/rope_theta nor a \"full_attention\" entry");
    }
    return rope_from(*full, "rope_parameters.full_attention");
  }
  if (const json* s = find("rope_scaling")) return rope_from(*s, "rope_scaling");
  return rope_from(json::object(), "rope_scaling");
}

}  // namespace wgllm::hf
