// A model split into pipeline stages, as the CLI starts it: over the ranks of an MPI job (`--mesh`, one
// stage per rank; src/mesh/mpi/) or over local adapters in one process (`--devices 0,1`). Rank 0 (or the
// one process) drives the stages through mesh::Pipeline; every other rank serves its stage until rank 0
// shuts the mesh down. docs/mesh.md describes both.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gpu/device.hpp"
#include "mesh/pipeline.hpp"
#include "runtime/forward.hpp"

namespace wgllm::mesh {

struct MeshOptions {
  std::string model_path;
  // Every stage's sizes (n_ctx, n_seq, max_batch, max_logits, kernels); the layers are set per stage.
  runtime::ForwardOptions forward;
  gpu::DeviceOptions device;    // the backend; with --mesh, `adapter` >= 0 makes every rank take that one
  bool mpi = false;             // --mesh
  std::vector<int> devices;     // --devices: adapters of `wgllm devices`, one stage each
  std::vector<uint32_t> split;  // --split: layers per stage; empty: by device memory
  PipelineOptions pipeline;
};

class Mesh {
 public:
  // Starts the stages: collective over the MPI job with `mpi`. Prints the plan and "ready" on stderr (rank
  // 0). Throws Error on rank 0 (and with --devices) when the mesh cannot start: a rank that cannot open the
  // model or its device, different model files, a plan that does not fit, a failed upload, each named by
  // stage and host. Another rank returns a Mesh whose serve_stage() returns the exit code.
  static std::unique_ptr<Mesh> start(const MeshOptions& options);
  virtual ~Mesh() = default;

  virtual bool driver() const = 0;  // rank 0, or the one process of --devices
  virtual Pipeline& pipeline() = 0;
  virtual uint32_t stages() const = 0;
  // Not the driver: runs this rank's stage until rank 0 shuts the mesh down (0) or it fails (non-zero).
  virtual int serve_stage() = 0;
  // The driver: waits for the passes on their way, then ends every stage in order. The destructor does it
  // too, unless the mesh has failed.
  virtual void shutdown() = 0;
  // Rank 0's traffic so far ("mesh traffic: ..."), empty without MPI.
  virtual std::string traffic() const { return {}; }
};

// "0,1" -> {0, 1} (repetition allowed: two stages on one adapter). Throws Error(BadInput) naming --devices.
std::vector<int> parse_devices(const std::string& text);

// The adapter (DeviceOptions::adapter) that the rank with local rank `local_rank` takes: with two or more
// GPUs of the backend the device would be opened on, GPU local_rank mod #GPUs, numbered as open_device
// numbers adapters; otherwise -1 (the best adapter). `adapters` is gpu::list_adapters().
int adapter_for_local_rank(std::span<const gpu::AdapterReport> adapters, gpu::Backend backend,
                           int local_rank);

// A fingerprint of the model file's tensor table (names, types, shapes, offsets): ranks compare them.
uint64_t tensor_table_fingerprint(const gguf::GgufFile& file);

}  // namespace wgllm::mesh
