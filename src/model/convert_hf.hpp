// A Hugging Face model folder as the GGUF file llama.cpp's convert_hf_to_gguf.py would write for it: the
// metadata (general.*, <arch>.*, tokenizer.*) and, for every output tensor, how to read its rows from the
// safetensors. Nothing is read into memory up front: `wgllm convert` streams tensor by tensor through
// read_row. Supported: LlamaForCausalLM and MistralForCausalLM (-> llama), Llama4ForCausalLM and
// Llama4ForConditionalGeneration's text model (-> llama4), Qwen2ForCausalLM, Qwen3ForCausalLM,
// Qwen3MoeForCausalLM. docs/models.md lists the keys and tensor names.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf_writer.hpp"
#include "hf/config.hpp"
#include "hf/safetensors.hpp"
#include "quant/mix.hpp"

namespace wgllm::model {

struct ConvertTensor {
  std::string name;            // GGUF tensor name
  std::vector<uint64_t> dims;  // ggml order: dims[0] is the row length
  // Stored as f32 whatever the output type, as llama.cpp's converter keeps them: 1-D tensors (norms,
  // biases, rope_freqs) and the MoE router.
  bool keep_f32 = false;
  std::string source;  // the Hugging Face tensor(s) it comes from, for messages
  // Fills out[dims[0]] with row `row` (0 <= row < rows()). Throws Error(BadInput) naming the file.
  std::function<void(uint64_t row, float* out)> read_row;

  uint64_t rows() const;
  uint64_t elements() const { return rows() * dims[0]; }
  // The tensor's bytes as `type` (F32, F16, BF16 or a quantized type whose block divides dims[0], encoded
  // as ggml's reference quantizers do): rows read in chunks that `threads` workers take in turn, `done(n)`
  // called after each chunk of n weights. Throws Error(BadInput) naming the tensor.
  std::vector<uint8_t> encode(gguf::TensorType type, unsigned threads = 1,
                              const std::function<void(uint64_t)>& done = {}) const;
};

class HfModel {
 public:
  // Reads DIR/config.json, the safetensors (DIR/model.safetensors or the sharded index), DIR/tokenizer.json
  // with tokenizer_config.json and chat_template.jinja. Throws Error(BadInput) naming the file and field:
  // an unknown architecture (with the supported list), a missing or misshapen tensor, a tensor that maps
  // to nothing, a configuration the architecture's GGUF cannot express.
  static std::unique_ptr<HfModel> open(const std::string& dir);

  const std::string& arch() const { return arch_; }           // the GGUF architecture
  const gguf::GgufWriter& metadata() const { return meta_; }  // every key but general.file_type
  const std::vector<ConvertTensor>& tensors() const { return tensors_; }
  const quant::ModelInfo& model_info() const { return info_; }  // for the quantization mixes
  std::vector<std::string> input_files() const;                 // every file read, for overwrite checks

 private:
  std::string dir_;
  std::string arch_;
  std::unique_ptr<hf::TensorSet> weights_;
  gguf::GgufWriter meta_;
  std::vector<ConvertTensor> tensors_;
  quant::ModelInfo info_;
  std::vector<std::string> extra_files_;  // config.json, tokenizer files
};

// The supported Hugging Face architectures, for messages: "LlamaForCausalLM, ...".
std::string supported_hf_architectures();

}  // namespace wgllm::model
