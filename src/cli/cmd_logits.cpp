// `wgllm logits`: every position's logits for given tokens, for comparing implementations. JSON (positions x
// vocabulary) on stdout, or raw little-endian f32 in the same order with -o.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/mesh_flags.hpp"
#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "runtime/forward.hpp"
#include "runtime/session.hpp"
#include "tokenizer/tokenizer.hpp"

namespace wgllm::cli {

namespace {

struct LogitsFlags {
  std::string model;
  std::string ids;
  std::string prompt;
  std::string out;
  uint32_t ctx_size = 0;
  KernelFlags kernels;
  gpu::DeviceOptions device;
  MeshFlags mesh;
};

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item.empty() || v < 0 || v > INT32_MAX)
      fail_input("--ids: '" + item + "' is not a token id (expected comma-separated non-negative integers)");
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) fail_input("--ids: no token ids given");
  return ids;
}

// Every position's logits, as JSON on stdout or raw f32 into -o; row(p) gives position p's bytes.
void write_logits(const LogitsFlags& f, size_t positions,
                  const std::function<std::vector<uint8_t>(size_t)>& row) {
  std::ofstream raw;
  if (!f.out.empty()) {
    raw.open(f.out, std::ios::binary | std::ios::trunc);
    if (!raw) fail_input(f.out + ": cannot open for writing");
  } else {
    std::fputc('[', stdout);
  }
  for (size_t p = 0; p < positions; ++p) {
    std::vector<uint8_t> bytes = row(p);
    if (raw.is_open()) {
      raw.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
      continue;
    }
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), bytes.size());
    std::fputs(p ? ",\n[" : "[", stdout);
    for (size_t i = 0; i < v.size(); ++i) std::printf(i ? ",%.9g" : "%.9g", v[i]);
    std::fputc(']', stdout);
  }
  if (raw.is_open()) {
    if (!raw.flush()) fail_runtime(f.out + ": write failed");
  } else {
    std::fputs("]\n", stdout);
  }
}

int logits(const LogitsFlags& f) {
  const std::string model_path = f.model.empty() ? default_model_path() : f.model;
  auto file = gguf::GgufFile::open(model_path);
  std::vector<int32_t> ids;
  if (!f.ids.empty()) {
    ids = parse_ids(f.ids);
  } else {
    ids = tokenizer::Tokenizer::from_gguf(*file)->encode(f.prompt, /*add_bos=*/true);
    if (ids.empty()) fail_input("the prompt has no tokens");
  }
  const uint32_t n_ctx = f.ctx_size ? f.ctx_size : static_cast<uint32_t>(ids.size() + 1);
  if (f.mesh.enabled()) {
    runtime::ForwardOptions fo;
    fo.n_ctx = n_ctx;
    f.kernels.apply(fo);
    fo.max_logits = runtime::Forward::kMaxWidth;  // the pipeline's logits passes
    std::unique_ptr<mesh::Mesh> mesh = start_mesh(f.mesh, model_path, fo, f.device);
    if (!mesh->driver()) return serve_stage(*mesh);
    const std::vector<std::vector<float>> rows = mesh->pipeline().logits(ids);
    mesh->shutdown();
    write_logits(f, rows.size(), [&](size_t p) {
      const auto* b = reinterpret_cast<const uint8_t*>(rows[p].data());
      return std::vector<uint8_t>(b, b + rows[p].size() * 4);
    });
    return 0;
  }
  auto device = gpu::open_device(f.device);
  runtime::ForwardOptions fo = forward_options(*device, n_ctx, f.kernels);
  runtime::Forward forward(*device, *file, fo);
  runtime::Session session(forward, runtime::SamplingParams{});
  std::vector<gpu::ReadTicket> tickets;
  for (int32_t id : ids) tickets.push_back(session.evaluate(id));
  write_logits(f, tickets.size(), [&](size_t p) { return device->wait(tickets[p]); });
  return 0;
}

}  // namespace

Action add_logits(CLI::App& app) {
  auto f = std::make_shared<LogitsFlags>();
  app.add_option("-m,--model", f->model, "GGUF model file (default: the built-in stories260K)")
      ->check(CLI::ExistingFile);
  auto* ids = app.add_option("--ids", f->ids, "comma-separated token ids (no BOS added)");
  auto* p = app.add_option("-p,--prompt", f->prompt,
                           "text, tokenized as `run` does (BOS added as the vocabulary says)");
  ids->excludes(p);
  app.add_option("-o,--output", f->out, "write raw little-endian f32 [positions x vocabulary] to this file");
  app.add_option("-c,--ctx-size", f->ctx_size, "context size (default: the number of tokens)");
  add_device_flags(app, f->device, f->kernels);
  add_mesh_flags(app, f->mesh, /*with_micro_batch=*/false);
  app.callback([ids, p] {
    if (ids->count() == 0 && p->count() == 0) throw CLI::RequiredError("--ids or --prompt");
  });
  return [f] { return logits(*f); };
}

}  // namespace wgllm::cli
