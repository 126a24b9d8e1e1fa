// The mesh against one device, through the same runtime::Generator seam the server drives: prompt speed
// (ppP: a P-token prompt to its first sampled token), single-stream generation (tgN) and the aggregate
// generation speed of S sequences decoding at once. Run by hand (docs/mesh.md, "Measured"):
//   mesh_bench -m model.gguf                              one device (runtime::Batcher)
//   mesh_bench -m model.gguf --devices 0,1                stages on local adapters (mesh::Pipeline)
//   mpirun -np 2 mesh_bench -m model.gguf --mesh          one stage per rank
// The model needs no tokenizer (token ids are random); `wgllm bench --synthetic SHAPE:TYPE --write-gguf F`
// makes one.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>

#include "core/error.hpp"
#include "gguf/gguf_file.hpp"
#include "mesh/mesh.hpp"
#include "mesh/plan.hpp"
#include "runtime/batcher.hpp"

namespace {

using namespace wgllm;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::vector<int32_t> random_ids(size_t n, uint32_t vocab, std::mt19937& gen) {
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = static_cast<int32_t>(gen() % vocab);
  return ids;
}

// Starts every prompt and steps until each sequence has `n` tokens; returns the seconds from the first
// step to the first token of every sequence, and to the last token.
std::pair<double, double> decode(runtime::Generator& g, const std::vector<std::vector<int32_t>>& prompts,
                                 size_t n) {
  const runtime::SamplingParams greedy{.temperature = 0};
  std::map<uint32_t, size_t> count;  // slot -> tokens
  for (const auto& p : prompts) {
    const auto started = g.start(p, greedy);
    if (!started) fail_runtime("no free slot");
    count[started->slot] = 0;
  }
  const auto t0 = Clock::now();
  double first = 0;
  size_t started_all = 0, done = 0;
  while (done < prompts.size()) {
    for (const runtime::Generator::Sampled& s : g.step()) {
      size_t& c = count.at(s.slot);
      if (++c == 1 && ++started_all == prompts.size()) first = since(t0);
      if (c == n) {
        g.finish(s.slot);
        ++done;
      }
    }
  }
  return {first, since(t0)};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"prompt and generation speed over pipeline stages (--mesh, --devices) or one device"};
  std::string model, devices, split;
  bool mesh_flag = false;
  uint32_t prompt = 512, gen = 128, parallel = 8, micro_batch = 0, reps = 3;
  app.add_option("-m,--model", model, "GGUF model file")->required()->check(CLI::ExistingFile);
  app.add_flag("--mesh", mesh_flag, "one stage per MPI rank (under mpirun)");
  app.add_option("--devices", devices, "stages on these local adapters");
  app.add_option("--split", split, "layers per stage");
  app.add_option("--micro-batch", micro_batch, "prompt tokens per pipeline pass");
  app.add_option("-p", prompt, "prompt tokens")->capture_default_str();
  app.add_option("-n", gen, "generated tokens")->capture_default_str();
  app.add_option("--parallel", parallel, "sequences decoding at once (0: skip)")->capture_default_str();
  app.add_option("-r", reps, "repetitions (the best is printed)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    auto file = gguf::GgufFile::open(model);
    const uint32_t vocab = model::LlamaConfig::from_gguf(*file).n_vocab;
    runtime::ForwardOptions fo;
    fo.n_ctx = std::max(prompt, 16u) + gen + 16;
    fo.n_seq = std::max(parallel, 1u);
    std::unique_ptr<mesh::Mesh> mesh;
    std::unique_ptr<gpu::Device> device;
    std::unique_ptr<runtime::Forward> forward;
    std::unique_ptr<runtime::Batcher> batcher;
    runtime::Generator* g = nullptr;
    std::string what;
    if (mesh_flag || !devices.empty()) {
      mesh::MeshOptions o;
      o.model_path = model;
      o.forward = fo;
      o.mpi = mesh_flag;
      if (!devices.empty()) o.devices = mesh::parse_devices(devices);
      if (!split.empty()) o.split = mesh::parse_split(split);
      o.pipeline.micro_batch = micro_batch;
      mesh = mesh::Mesh::start(o);
      if (!mesh->driver()) return mesh->serve_stage();
      g = &mesh->pipeline();
      what = std::to_string(mesh->stages()) + " stages";
    } else {
      device = gpu::open_device();
      forward = std::make_unique<runtime::Forward>(*device, *file, fo);
      batcher = std::make_unique<runtime::Batcher>(*forward);
      g = batcher.get();
      what = "one device (" + device->info().device + ")";
    }
    std::mt19937 rng(1);
    decode(*g, {random_ids(prompt ? prompt : 16, vocab, rng)}, 4);  // compiles what the runs need
    double pp = 0, tg = 0, agg = 0;
    for (uint32_t r = 0; r < reps; ++r) {
      if (prompt) {
        // A fresh prompt each time: no prefix to reuse.
        const auto [first, all] = decode(*g, {random_ids(prompt, vocab, rng)}, gen ? gen : 1);
        pp = std::max(pp, prompt / first);
        if (gen > 1) tg = std::max(tg, (gen - 1) / (all - first));
      }
      if (parallel > 1 && gen) {
        std::vector<std::vector<int32_t>> prompts;
        for (uint32_t s = 0; s < parallel; ++s) prompts.push_back(random_ids(16, vocab, rng));
        const auto [first, all] = decode(*g, prompts, gen);
        agg = std::max(agg, parallel * gen / all);
      }
    }
    std::printf("%s: pp%u %.1f tok/s | tg%u %.2f tok/s | %u x tg%u %.1f tok/s aggregate\n", what.c_str(),
                prompt, pp, gen, tg, parallel, gen, agg);
    if (mesh) {
      const mesh::Pipeline::Stats& s = mesh->pipeline().stats();
      std::printf("passes %llu, tokens %llu, most on their way %u\n",
                  static_cast<unsigned long long>(s.passes), static_cast<unsigned long long>(s.tokens),
                  s.most_in_flight);
      if (const std::string t = mesh->traffic(); !t.empty()) std::printf("%s\n", t.c_str());
      mesh->shutdown();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mesh_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
