// The flags that split a command's model into pipeline stages (run, serve, logits): `--mesh` over the
// ranks of an MPI job, `--devices` over local adapters in one process (docs/mesh.md).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "gpu/device.hpp"
#include "mesh/mesh.hpp"
#include "runtime/forward.hpp"

namespace wgllm::cli {

struct MeshFlags {
  bool mesh = false;
  std::string devices;
  std::string split;
  uint32_t micro_batch = 0;
  bool enabled() const { return mesh || !devices.empty(); }
};

// --mesh, --devices, --split, --micro-batch (with_micro_batch), and the security note in the help.
void add_mesh_flags(CLI::App& app, MeshFlags& flags, bool with_micro_batch = true);

// Starts the stages (collective under --mesh); `forward` sets every stage's sizes.
std::unique_ptr<mesh::Mesh> start_mesh(const MeshFlags& flags, const std::string& model_path,
                                       const runtime::ForwardOptions& forward,
                                       const gpu::DeviceOptions& device);

// A rank other than 0: serves its stage until rank 0 ends the mesh; returns the exit code.
int serve_stage(mesh::Mesh& mesh);

}  // namespace wgllm::cli
