#include "server/openai_request.hpp"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "server/api_error.hpp"

namespace wgllm::server {

namespace {

using nlohmann::json;

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::discarded:
      return "nothing";
    default:
      return "a number";
  }
}

json parse_body(std::string_view body) {
  struct TooDeep {};
  try {
    json parsed = json::parse(body, [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth) throw TooDeep{};
      return true;
    });
    if (!parsed.is_object()) bad_request("the request body must be a JSON object, got " + type_name(parsed));
    return parsed;
  } catch (const json::parse_error& e) {
    bad_request(std::string("the request body is not valid JSON: ") + e.what());
  } catch (const json::exception& e) {
    // Valid JSON the parser cannot hold, e.g. a number beyond a double's range (1e400).
    bad_request(std::string("the request body holds a value this server cannot read: ") + e.what());
  } catch (const TooDeep&) {
    bad_request("the request body nests JSON deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
}

// A field's value, or nullptr when it is absent or null (OpenAI's clients send null for "not set").
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

[[noreturn]] void wrong_type(const char* name, const char* expected, const json& v) {
  bad_request(std::string("'") + name + "' must be " + expected + ", got " + type_name(v), name);
}

std::optional<double> number(const json& body, const char* name, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(name, "a number", *v);
  double x = v->get<double>();
  auto text = [](double d) {
    return d == std::trunc(d) ? std::to_string(static_cast<int64_t>(d)) : json(d).dump();
  };
  if (!(x >= lo && x <= hi))
    bad_request(
        std::string("'") + name + "' must be between " + text(lo) + " and " + text(hi) + ", got " + v->dump(),
        name);
  return x;
}

std::optional<int64_t> integer(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  // 3.0 is accepted as 3, as Python's OpenAI server accepts it.
  bool whole =
      v->is_number_integer() || (v->is_number_float() && std::trunc(v->get<double>()) == v->get<double>() &&
                                 std::abs(v->get<double>()) < 9.0e15);
  if (!whole) wrong_type(name, "an integer", *v);
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    bad_request(std::string("'") + name + "' must be at most " + std::to_string(hi) + ", got " + v->dump(),
                name);
  int64_t x = v->is_number_float() ? static_cast<int64_t>(v->get<double>()) : v->get<int64_t>();
  if (x < lo || x > hi)
    bad_request(std::string("'") + name + "' must be between " + std::to_string(lo) + " and " +
                    std::to_string(hi) + ", got " + v->dump(),
                name);
  return x;
}

std::optional<bool> boolean(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(name, "true or false", *v);
  return v->get<bool>();
}

// The fields both endpoints share: model, sampling, limits, stop, streaming.
GenerationRequest parse_common(const json& body) {
  GenerationRequest r;
  if (const json* v = field(body, "model")) {
    if (!v->is_string()) wrong_type("model", "a string", *v);
    r.model = v->get<std::string>();
  }
  runtime::SamplingParams& s = r.sampling;
  if (auto x = number(body, "temperature", 0, 2)) s.temperature = static_cast<float>(*x);
  if (auto x = number(body, "top_p", 0, 1)) s.top_p = static_cast<float>(*x);
  if (auto x = number(body, "min_p", 0, 1)) s.min_p = static_cast<float>(*x);
  if (auto x = integer(body, "top_k", 0, std::numeric_limits<int32_t>::max()))
    s.top_k = static_cast<int32_t>(*x);
  if (auto x = number(body, "repeat_penalty", 0, 100)) {
    // The sampler divides by it in f32, where a positive double below 1e-45 is 0.
    if (!(static_cast<float>(*x) > 0))
      bad_request("'repeat_penalty' must be above 0 (1 = off), got " + field(body, "repeat_penalty")->dump(),
                  "repeat_penalty");
    s.repeat_penalty = static_cast<float>(*x);
  }
  if (auto x = integer(body, "repeat_last_n", 0, runtime::kPenaltyHistory))
    s.penalty_last_n = static_cast<int32_t>(*x);
  if (auto x = number(body, "presence_penalty", -2, 2)) s.presence_penalty = static_cast<float>(*x);
  if (auto x = number(body, "frequency_penalty", -2, 2)) s.frequency_penalty = static_cast<float>(*x);
  // OpenAI's seeds are 64-bit; the sampler's RNG takes 32 bits, so seeds equal modulo 2^32 draw alike.
  if (auto x =
          integer(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    r.seed = static_cast<uint32_t>(static_cast<uint64_t>(*x));
  for (const char* name : {"max_completion_tokens", "max_tokens"}) {
    if (auto x = integer(body, name, 1, std::numeric_limits<int64_t>::max())) {
      r.max_tokens = static_cast<uint64_t>(*x);
      break;
    }
  }
  if (const json* v = field(body, "stop")) {
    if (v->is_string()) {
      r.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (v->size() > kMaxStopSequences)
        bad_request("'stop' holds " + std::to_string(v->size()) + " sequences, at most " +
                        std::to_string(kMaxStopSequences) + " are allowed",
                    "stop");
      for (const json& s : *v) {
        if (!s.is_string()) wrong_type("stop", "a string or an array of strings", s);
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      wrong_type("stop", "a string or an array of strings", *v);
    }
    for (const std::string& s : r.stop)
      if (s.empty()) bad_request("'stop' holds an empty string", "stop");
  }
  r.stream = boolean(body, "stream").value_or(false);
  if (const json* v = field(body, "stream_options")) {
    if (!v->is_object()) wrong_type("stream_options", "an object", *v);
    if (!r.stream) bad_request("'stream_options' is only allowed when 'stream' is true", "stream_options");
    r.include_usage = boolean(*v, "include_usage").value_or(false);
  }
  if (auto n = integer(body, "n", 1, 1 << 20); n && *n != 1)
    bad_request("'n' must be 1: one choice per request is supported", "n");
  if (const json* v = field(body, "logit_bias"); v && !(v->is_object() && v->empty()))
    bad_request("'logit_bias' is not supported", "logit_bias");
  return r;
}

std::string message_content(const json& message, size_t index) {
  std::string name = "messages[" + std::to_string(index) + "].content";
  const json* content = field(message, "content");
  if (!content) return {};
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array())
    bad_request("'" + name + "' must be a string or an array of text parts, got " + type_name(*content),
                name);
  // Text parts are concatenated, as OpenAI does for system and assistant messages.
  std::string text;
  for (size_t i = 0; i < content->size(); ++i) {
    const json& part = (*content)[i];
    std::string part_name = name + "[" + std::to_string(i) + "]";
    if (!part.is_object())
      bad_request("'" + part_name + "' must be an object, got " + type_name(part), part_name);
    const json* type = field(part, "type");
    if (!type || !type->is_string() || type->get<std::string>() != "text")
      bad_request("'" + part_name + ".type' must be \"text\": this model reads text only",
                  part_name + ".type");
    const json* t = field(part, "text");
    if (!t || !t->is_string())
      bad_request("'" + part_name + ".text' must be a string, got " + (t ? type_name(*t) : "nothing"),
                  part_name + ".text");
    text += t->get<std::string>();
  }
  return text;
}

}  // namespace

GenerationRequest parse_chat_request(std::string_view body_text) {
  json body = parse_body(body_text);
  GenerationRequest r = parse_common(body);
  if (const json* v = field(body, "logprobs"); v && !(v->is_boolean() && !v->get<bool>()))
    bad_request("'logprobs' is not supported", "logprobs");
  if (const json* v = field(body, "tools"); v && !(v->is_array() && v->empty()))
    bad_request("'tools' is not supported", "tools");
  if (const json* v = field(body, "response_format")) {
    const json* type = v->is_object() ? field(*v, "type") : nullptr;
    if (!type || *type != "text")
      bad_request("'response_format' other than {\"type\": \"text\"} is not supported", "response_format");
  }
  const json* messages = field(body, "messages");
  if (!messages) bad_request("'messages' is required", "messages");
  if (!messages->is_array()) wrong_type("messages", "an array", *messages);
  if (messages->empty()) bad_request("'messages' must hold at least one message", "messages");
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    std::string name = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad_request("'" + name + "' must be an object, got " + type_name(m), name);
    const json* role = field(m, "role");
    if (!role || !role->is_string())
      bad_request("'" + name + ".role' must be a string, got " + (role ? type_name(*role) : "nothing"),
                  name + ".role");
    std::string r_name = role->get<std::string>();
    // OpenAI's newer "developer" role is the system role of the chat templates.
    if (r_name == "developer") r_name = "system";
    if (r_name != "system" && r_name != "user" && r_name != "assistant" && r_name != "tool")
      bad_request(
          "'" + name + ".role' must be system, developer, user, assistant or tool, got \"" + r_name + "\"",
          name + ".role");
    r.messages.push_back({r_name, message_content(m, i)});
  }
  return r;
}

GenerationRequest parse_completion_request(std::string_view body_text) {
  json body = parse_body(body_text);
  GenerationRequest r = parse_common(body);
  if (const json* v = field(body, "logprobs"); v && !(v->is_number_integer() && v->get<int64_t>() == 0))
    bad_request("'logprobs' is not supported", "logprobs");
  if (boolean(body, "echo").value_or(false)) bad_request("'echo' is not supported", "echo");
  if (const json* v = field(body, "suffix"); v && !(v->is_string() && v->get<std::string>().empty()))
    bad_request("'suffix' is not supported", "suffix");
  if (auto b = integer(body, "best_of", 1, 1 << 20); b && *b != 1)
    bad_request("'best_of' must be 1", "best_of");

  const json* prompt = field(body, "prompt");
  if (!prompt) bad_request("'prompt' is required", "prompt");
  // OpenAI accepts a string, a token array, or a list of either; one prompt per request here.
  const json* p = prompt;
  if (p->is_array() && !p->empty() && !(*p)[0].is_number()) {
    if (p->size() != 1)
      bad_request(
          "'prompt' holds " + std::to_string(p->size()) + " prompts; one prompt per request is supported",
          "prompt");
    p = &(*p)[0];
  }
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
  } else if (p->is_array()) {
    std::vector<int32_t> ids;
    for (const json& id : *p) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() > std::numeric_limits<int32_t>::max())
        bad_request("'prompt' token ids must be non-negative integers, got " + id.dump(), "prompt");
      ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
    r.prompt_ids = std::move(ids);
  } else {
    wrong_type("prompt", "a string or an array of token ids", *p);
  }
  return r;
}

}  // namespace wgllm::server
