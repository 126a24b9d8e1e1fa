// llama.cpp's quantization mixes: for a target file type (LLAMA_FTYPE), the type each tensor of a model is
// stored in. Follows llama-quant.cpp (tensor_allows_quantization, llama_tensor_get_type_impl,
// tensor_type_fallback) for the file types `wgllm quantize` writes; docs/quantization.md lists the rules.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_file.hpp"

namespace wgllm::quant {

// llama.cpp's LLAMA_FTYPE values, written as general.file_type.
enum class FileType : uint32_t { Q4_0 = 2, Q8_0 = 7, Q2_K = 10, Q4_K_M = 15, Q5_K_M = 17, Q6_K = 18 };

// "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k", "q2_k" (any case); nullopt for anything else.
std::optional<FileType> parse_file_type(std::string_view name);
std::string_view file_type_name(FileType ftype);
std::string file_type_names();               // "q8_0, q4_0, ...": for usage messages
gguf::TensorType base_type(FileType ftype);  // what a tensor gets when no rule says otherwise

// The hyperparameters the mixes consult.
struct ModelInfo {
  std::string arch;        // general.architecture ("llama", "falcon", ...)
  uint32_t n_layer = 0;    // <arch>.block_count
  uint32_t n_head = 0;     // <arch>.attention.head_count
  uint32_t n_head_kv = 0;  // <arch>.attention.head_count_kv
  uint32_t n_expert = 0;   // <arch>.expert_count
};

// Reads ModelInfo from a file's metadata. Missing keys: n_layer from the highest blk.N in tensor names,
// n_head_kv = n_head, n_expert = 0. Per-layer arrays (some architectures) count by their first entry.
ModelInfo model_info(const gguf::GgufFile& file);

struct TensorChoice {
  gguf::TensorType type;    // the type the tensor is stored in
  bool quantizable = true;  // false: llama.cpp keeps it as it is (1-D tensors, norms, ...)
  std::optional<gguf::TensorType> fallback_from;  // the type its row length could not hold, if any
};

// One choice per tensor, in the order given. Throws Error(BadInput) naming the tensor where llama.cpp
// refuses: an expert tensor whose layer cannot be read from its name.
std::vector<TensorChoice> choose_types(FileType ftype, const ModelInfo& model,
                                       const std::vector<gguf::TensorInfo>& tensors);

}  // namespace wgllm::quant
