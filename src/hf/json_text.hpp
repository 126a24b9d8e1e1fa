// A JSON value as an error message quotes it. nlohmann's dump() recurses once per nesting level, so a
// hostile file's [[[[...]]]] a few hundred thousand deep would overflow the stack while we describe it;
// a value holding arrays or objects is named by its type instead.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace wgllm::hf {

inline std::string json_text(const nlohmann::json& v) {
  for (const nlohmann::json& item : v) {
    if (item.is_structured()) return std::string("(an ") + v.type_name() + " of arrays or objects)";
  }
  return v.dump();
}

}  // namespace wgllm::hf
