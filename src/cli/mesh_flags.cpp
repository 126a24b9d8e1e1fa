#include "cli/mesh_flags.hpp"

#include <pthread.h>

#include <csignal>

#include "mesh/plan.hpp"

namespace wgllm::cli {

void add_mesh_flags(CLI::App& app, MeshFlags& flags, bool with_micro_batch) {
  auto* mesh = app.add_flag(
      "--mesh", flags.mesh,
      "split the model's layers over the ranks of an MPI job, one pipeline stage per rank "
      "(mpirun -np N wgllm ... --mesh); MPI traffic is neither authenticated nor encrypted: trusted networks "
      "only");
  auto* devices = app.add_option("--devices", flags.devices,
                                 "split the model's layers over these adapters of `wgllm devices` in this "
                                 "process, one pipeline stage each (e.g. 0,1)");
  devices->excludes(mesh);
  app.add_option("--split", flags.split,
                 "layers per stage with --mesh or --devices (e.g. 10,6; default: by each device's memory)");
  if (with_micro_batch)
    app.add_option("--micro-batch", flags.micro_batch,
                   "prompt tokens per pipeline pass with --mesh or --devices (default: about a prompt / "
                   "(2 x stages), at least 32)")
        ->check(CLI::PositiveNumber);
  app.footer(
      "With --mesh, every rank runs the same command line under mpirun (as root: mpirun "
      "--allow-run-as-root); "
      "rank 0 holds the tokenizer and the output. The ranks talk over MPI, which neither authenticates nor "
      "encrypts: run a mesh only on networks you trust. See docs/mesh.md.");
}

std::unique_ptr<mesh::Mesh> start_mesh(const MeshFlags& flags, const std::string& model_path,
                                       const runtime::ForwardOptions& forward,
                                       const gpu::DeviceOptions& device) {
  mesh::MeshOptions o;
  o.model_path = model_path;
  o.forward = forward;
  o.device = device;
  o.mpi = flags.mesh;
  if (!flags.devices.empty()) o.devices = mesh::parse_devices(flags.devices);
  if (!flags.split.empty()) o.split = mesh::parse_split(flags.split);
  o.pipeline.micro_batch = flags.micro_batch;
  return mesh::Mesh::start(o);
}

int serve_stage(mesh::Mesh& mesh) {
  // A command may have blocked these for a watcher thread of its own; a stage ends on them at once.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &stop, nullptr);
  return mesh.serve_stage();
}

}  // namespace wgllm::cli
