// The browser build's entry points: a C API over the engine that web/pkg/wgllm.js drives. One engine per
// wasm instance. JS owns every wait: each call here records GPU work, submits it and returns at once; a
// call that starts GPU work returns a read-back ticket, which JS awaits (Module.wgTicket) before calling
// back for its bytes. Errors never cross into JS as exceptions: a call that fails returns -1 and
// wgllm_error() holds the message (the same text as the native build's).
//
// Loading: wgllm_open() parses the GGUF header from the first bytes of the file (returning how many bytes
// it needs when they are too few), builds the model with its weights' buffers allocated but empty, and
// lists the pieces of the file that fill them (runtime::WeightUpload, deferred). Before any buffer exists,
// runtime::Forward checks the model's memory plan against the adapter (its maxBufferSize, and its memory
// when the browser tells it), as natively; wgllm_plan() gives JS the plan for the messages of a GPU that
// refuses an allocation all the same. JS streams the file, writes each piece straight into its GPU buffer
// and calls wgllm_piece_done(); the weights never pass through wasm memory. wgllm_ready() ends the load.
#include <emscripten/emscripten.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "gpu/device.hpp"
#include "model/llama.hpp"
#include "runtime/forward.hpp"
#include "runtime/gpu_weights.hpp"
#include "runtime/memory_plan.hpp"
#include "runtime/session.hpp"
#include "tokenizer/chat_template.hpp"
#include "tokenizer/conversation.hpp"
#include "tokenizer/tokenizer.hpp"

namespace {

using namespace wgllm;

struct Model {
  std::unique_ptr<gguf::GgufFile> file;
  std::unique_ptr<tokenizer::Tokenizer> tok;  // null: the file has no vocabulary (ids only)
  std::optional<tokenizer::ChatTemplate> chat;
  std::unique_ptr<runtime::WeightUpload> upload;  // while the pieces stream in
  std::unique_ptr<runtime::Forward> forward;
  std::unique_ptr<runtime::Session> session;
  runtime::SamplingParams sampling;  // the session's
  std::vector<int32_t> fed;          // the tokens the session has run (its KV cache), in order
  int32_t last = -1;                 // the last sampled id, which the next step runs
  std::optional<tokenizer::StreamDecoder> decoder;
};

struct Engine {
  std::unique_ptr<gpu::Device> device;
  std::unique_ptr<Model> model;
  std::string error;
  std::string out;            // the last string handed to JS
  std::vector<int32_t> ids;   // the last token ids handed to JS
  std::vector<float> floats;  // the last logits handed to JS
};

Engine& engine() {
  static Engine e;
  return e;
}

// Runs `f`, turning an exception into -1 and the message that wgllm_error() returns.
template <typename F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    engine().error.clear();
    return f();
  } catch (const std::exception& e) {
    engine().error = e.what();
  }
  return -1;
}

Model& loaded() {
  if (!engine().model || engine().model->upload) fail_runtime("no model is loaded");
  return *engine().model;
}

runtime::WeightUpload& uploading() {
  if (!engine().model || !engine().model->upload) fail_runtime("no model is being loaded");
  return *engine().model->upload;
}

const tokenizer::Tokenizer& vocabulary() {
  if (!loaded().tok)
    fail_input("this model has no vocabulary (tokenizer.ggml.model is \"none\"): give token ids");
  return *loaded().tok;
}

const char* hand_out(std::string s) {
  engine().out = std::move(s);
  return engine().out.c_str();
}

int32_t ticket(gpu::ReadTicket t) {
  return static_cast<int32_t>(t.id);
}

}  // namespace

extern "C" {

EMSCRIPTEN_KEEPALIVE const char* wgllm_error() {
  return engine().error.c_str();
}

// Opens the device the page created (Module.gpu). Returns 0, or -1.
EMSCRIPTEN_KEEPALIVE int wgllm_init() {
  return guarded([] {
    if (!engine().device) engine().device = gpu::open_device();
    return 0;
  });
}

// The adapter, its limits and features as JSON.
EMSCRIPTEN_KEEPALIVE const char* wgllm_adapter() {
  const gpu::Device& d = *engine().device;
  nlohmann::json j = {{"vendor", d.info().vendor},
                      {"architecture", d.info().architecture},
                      {"device", d.info().device},
                      {"description", d.info().description},
                      {"maxBufferSize", d.limits().max_buffer_size},
                      {"maxStorageBufferBindingSize", d.limits().max_storage_buffer_binding_size},
                      {"features", d.features().names}};
  return hand_out(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

// Parses the header from the file's first `size` bytes (of `file_size`), and allocates the model unless it
// cannot fit: the adapter's limits, and `memory_bytes` of GPU memory when the browser tells it (0: unknown).
// Returns 0 when the pieces are listed (wgllm_piece), the number of bytes to read and call again with when
// the header (or a tensor the loader reads itself, e.g. rope_freqs) lies beyond them, or -1.
EMSCRIPTEN_KEEPALIVE double wgllm_open(const char* name, const uint8_t* prefix, uint32_t size,
                                       double file_size, uint32_t n_ctx, double memory_bytes) {
  try {
    engine().error.clear();
    engine().model.reset();
    auto m = std::make_unique<Model>();
    m->file = gguf::GgufFile::parse_header(name, std::vector<uint8_t>(prefix, prefix + size),
                                           static_cast<uint64_t>(file_size));
    const std::string vocab = m->file->get_string("tokenizer.ggml.model", "none");
    if (vocab != "none") {
      m->tok = tokenizer::Tokenizer::from_gguf(*m->file);
      if (auto source = tokenizer::chat_template_from_gguf(*m->file)) m->chat.emplace(*source);
    }
    // The tensors the loader reads on the CPU come first: a short prefix shows before any GPU buffer exists.
    const model::LlamaConfig config = model::LlamaConfig::from_gguf(*m->file);
    model::LlamaWeights::map(*m->file, config);
    runtime::WeightUpload::Options o;
    o.deferred = true;
    m->upload = std::make_unique<runtime::WeightUpload>(*engine().device, o);
    runtime::ForwardOptions fo;
    fo.n_ctx = config.context_length ? std::min(n_ctx, config.context_length) : n_ctx;
    fo.device_memory = static_cast<uint64_t>(memory_bytes);
    m->forward = std::make_unique<runtime::Forward>(*engine().device, *m->file, fo);
    m->upload->pieces();
    engine().model = std::move(m);
    return 0;
  } catch (const gguf::PrefixTooShort& e) {
    return static_cast<double>(e.needed());
  } catch (const std::exception& e) {
    engine().error = e.what();
    engine().model.reset();
  }
  return -1;
}

// The GPU memory the opened model takes (runtime::plan_memory, with the sizes its Forward resolved) as
// JSON, or a null pointer with wgllm_error set.
EMSCRIPTEN_KEEPALIVE const char* wgllm_plan() {
  try {
    engine().error.clear();
    if (!engine().model) fail_runtime("no model is being loaded");
    const Model& m = *engine().model;
    const runtime::Forward& f = *m.forward;
    const runtime::MemoryPlan p =
        runtime::plan_memory(*m.file, f.config(), {f.n_ctx(), f.n_seq(), f.max_batch(), f.max_logits()});
    const nlohmann::json j = {{"weights", p.weights},
                              {"kvCache", p.kv_cache},
                              {"activations", p.activations},
                              {"total", p.total()},
                              {"largestBuffer", p.largest_buffer},
                              {"context", f.n_ctx()}};
    return hand_out(j.dump());
  } catch (const std::exception& e) {
    engine().error = e.what();
  }
  return nullptr;
}

EMSCRIPTEN_KEEPALIVE int wgllm_piece_count() {
  return guarded([] { return static_cast<int>(uploading().pieces().size()); });
}

// Piece i as four doubles: file offset, size, destination buffer id, destination offset. 0 or -1.
EMSCRIPTEN_KEEPALIVE int wgllm_piece(uint32_t i, double* out) {
  return guarded([&] {
    const runtime::WeightUpload::Piece& p = uploading().pieces().at(i);
    out[0] = static_cast<double>(p.file_offset);
    out[1] = static_cast<double>(p.size);
    out[2] = p.dst.id;
    out[3] = static_cast<double>(p.dst_offset);
    return 0;
  });
}

// After JS wrote piece i's bytes: repacks them (when the piece went to the scratch buffer). 0 or -1.
EMSCRIPTEN_KEEPALIVE int wgllm_piece_done(uint32_t i) {
  return guarded([i] {
    uploading().finish(i);
    return 0;
  });
}

// Ends the load; the model's facts as JSON (or -1 as a null pointer with wgllm_error set).
EMSCRIPTEN_KEEPALIVE const char* wgllm_ready() {
  try {
    engine().error.clear();
    uploading();
    Model& m = *engine().model;
    m.upload.reset();
    const runtime::Forward& f = *m.forward;
    const model::LlamaConfig& c = f.config();
    nlohmann::json j = {
        {"name", m.file->path()},
        {"architecture", c.arch},
        {"vocab", c.n_vocab},
        {"dim", c.dim},
        {"layers", c.n_layers},
        {"heads", c.n_heads},
        {"kvHeads", c.n_kv_heads},
        {"context", f.n_ctx()},
        {"modelContext", c.context_length},
        {"weightBytes", f.weight_bytes()},
        {"gpuBytes", engine().device->allocated_bytes()},
        {"fileBytes", m.file->file_size()},
        {"tokenizer", m.tok != nullptr},
        {"chatTemplate", m.chat ? nlohmann::json(m.chat->source()) : nlohmann::json(nullptr)}};
    if (m.tok) {
      const tokenizer::Vocab& v = m.tok->vocab();
      j["bos"] = v.bos;
      j["eos"] = v.eos;
      j["addBos"] = v.add_bos;
    }
    return hand_out(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } catch (const std::exception& e) {
    engine().error = e.what();
    engine().model.reset();
  }
  return nullptr;
}

// Drops the model (its GPU buffers go with the device, which JS destroys with the engine).
EMSCRIPTEN_KEEPALIVE void wgllm_unload() {
  engine().model.reset();
}

// Text -> ids (wgllm_ids). Returns the count, or -1.
EMSCRIPTEN_KEEPALIVE int wgllm_tokenize(const char* text, int add_bos, int special) {
  return guarded([&] {
    engine().ids = vocabulary().encode(text, add_bos != 0, special != 0);
    return static_cast<int>(engine().ids.size());
  });
}

// The ids of a conversation (a JSON array of {role, content}) rendered by the model's chat template
// (ChatML when it ships none), control tokens only where the template put them. Returns the count, or -1.
// wgllm_text_out() holds the rendered text.
EMSCRIPTEN_KEEPALIVE int wgllm_chat(const char* messages_json, int add_generation_prompt) {
  return guarded([&] {
    const nlohmann::json j = nlohmann::json::parse(messages_json);
    std::vector<tokenizer::ChatMessage> messages;
    for (const auto& m : j)
      messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
    const tokenizer::ChatTemplate tmpl = loaded().chat ? *loaded().chat : tokenizer::ChatTemplate::chatml();
    const tokenizer::ChatPrompt prompt =
        tokenizer::render_chat(tmpl, vocabulary(), messages, add_generation_prompt != 0);
    engine().ids = tokenizer::tokenize_chat(vocabulary(), prompt);
    engine().out = prompt.text;
    return static_cast<int>(engine().ids.size());
  });
}

EMSCRIPTEN_KEEPALIVE const int32_t* wgllm_ids() {
  return engine().ids.data();
}

EMSCRIPTEN_KEEPALIVE const char* wgllm_text_out() {
  return engine().out.c_str();
}

// Starts generating after `ids` (n of them) with the sampling settings given: runs the prompt and samples
// the first token. When the previous generation's tokens (same settings) are a prefix of `ids`, its KV cache
// is kept and only the rest runs (a chat's next turn). Returns the ticket of the sampled id, or -1.
EMSCRIPTEN_KEEPALIVE int32_t wgllm_begin(const int32_t* ids, uint32_t n, float temperature, int32_t top_k,
                                         float top_p, float min_p, float repeat_penalty,
                                         int32_t repeat_last_n, double seed, int strip_leading_space) {
  return guarded([&] {
    Model& m = loaded();
    runtime::SamplingParams s;
    s.temperature = temperature;
    s.top_k = top_k;
    s.top_p = top_p;
    s.min_p = min_p;
    s.repeat_penalty = repeat_penalty;
    s.penalty_last_n = repeat_last_n;
    s.seed = static_cast<uint32_t>(seed);
    const std::vector<int32_t> prompt(ids, ids + n);
    const bool same = m.session && std::memcmp(&s, &m.sampling, sizeof s) == 0;  // 4-byte fields, no padding
    size_t reuse = 0;
    if (same && m.fed.size() < prompt.size() && std::equal(m.fed.begin(), m.fed.end(), prompt.begin()))
      reuse = m.fed.size();
    if (!reuse) {
      m.session = std::make_unique<runtime::Session>(*m.forward, s);
      m.sampling = s;
      m.fed.clear();
    }
    const gpu::ReadTicket t = m.session->prefill(std::span<const int32_t>(prompt).subspan(reuse));
    m.fed = prompt;
    if (m.tok) m.decoder.emplace(*m.tok, strip_leading_space != 0);
    return ticket(t);
  });
}

// The sampled id of a landed ticket, or -1.
EMSCRIPTEN_KEEPALIVE int32_t wgllm_token(int32_t t) {
  return guarded([t] {
    Model& m = loaded();
    m.last = m.session->id_of(gpu::ReadTicket{static_cast<uint32_t>(t)});
    return m.last;
  });
}

// Runs the last sampled token and samples the next: its ticket, -2 when the context is full, or -1.
EMSCRIPTEN_KEEPALIVE int32_t wgllm_step() {
  return guarded([] {
    Model& m = loaded();
    if (m.session->context_full()) return -2;
    const gpu::ReadTicket t = m.session->step();
    m.fed.push_back(m.last);
    return ticket(t);
  });
}

// The text of generated token `id` that is safe to show now (UTF-8 completed across tokens); with
// `flush`, also what was held back.
EMSCRIPTEN_KEEPALIVE const char* wgllm_piece_text(int32_t id, int flush) {
  std::string s;
  if (!engine().model) return hand_out(s);
  Model& m = *engine().model;
  if (m.decoder) {
    if (id >= 0) s = m.decoder->push(id);
    if (flush) s += m.decoder->flush();
  }
  return hand_out(std::move(s));
}

EMSCRIPTEN_KEEPALIVE int wgllm_is_eog(int32_t id) {
  return engine().model && engine().model->tok && engine().model->tok->is_eog(id) ? 1 : 0;
}

// Logits: wgllm_evaluate(ids) starts a fresh sequence and runs one token after another (no sampling); each
// call returns that position's logits ticket. wgllm_logits(ticket) copies the landed row into wgllm_floats.
EMSCRIPTEN_KEEPALIVE int32_t wgllm_evaluate(int32_t id, int fresh) {
  return guarded([&] {
    Model& m = loaded();
    if (fresh || !m.session) {
      m.sampling = {};
      m.session = std::make_unique<runtime::Session>(*m.forward, m.sampling);
      m.fed.clear();
    }
    m.fed.push_back(id);
    return ticket(m.session->evaluate(id));
  });
}

EMSCRIPTEN_KEEPALIVE int wgllm_logits(int32_t t) {
  return guarded([t] {
    const std::vector<uint8_t> bytes = engine().device->wait(gpu::ReadTicket{static_cast<uint32_t>(t)});
    engine().floats.resize(bytes.size() / 4);
    std::memcpy(engine().floats.data(), bytes.data(), bytes.size());
    return static_cast<int>(engine().floats.size());
  });
}

EMSCRIPTEN_KEEPALIVE const float* wgllm_floats() {
  return engine().floats.data();
}

}  // extern "C"
