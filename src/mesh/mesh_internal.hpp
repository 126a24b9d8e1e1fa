// Pieces shared by the two ways a mesh starts (mesh.cpp: local adapters; mpi/mpi_mesh.cpp: MPI ranks).
#pragma once

#include <memory>
#include <string>

#include "gguf/gguf_file.hpp"
#include "mesh/mesh.hpp"
#include "mesh/plan.hpp"
#include "model/llama.hpp"

namespace wgllm::mesh::detail {

// The sizes the plan weighs, with the context and slots the stages' Forwards will have.
ModelSizes sizes_for(const gguf::GgufFile& file, const model::LlamaConfig& config,
                     const runtime::ForwardOptions& options);
// The options of the Forward that runs `stage`.
runtime::ForwardOptions stage_options(const runtime::ForwardOptions& options, const Stage& stage);
// "mesh: 3 stages ready in 1.88 s" on stderr.
void print_ready(size_t stages, double seconds);

#if WGLLM_MESH
std::unique_ptr<Mesh> start_mpi(const MeshOptions& options);
#endif

}  // namespace wgllm::mesh::detail
