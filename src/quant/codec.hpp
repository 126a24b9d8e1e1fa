// CPU reference (de)quantization of ggml's tensor types, bit-compatible with ggml-quants.c: the reference
// decoding every GPU kernel must reproduce, and the quantizer that builds test models and `wgllm quantize`
// output. Each type is one block codec (a block of 32 elements for Q8_0/Q4_0, of 1 for F32/F16/BF16); rows
// are sequences of whole blocks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/tensor_type.hpp"
#include "quant/half.hpp"

namespace wgllm::quant {

// Whether dequantize_row / quantize_rows handle `type`.
bool is_supported(gguf::TensorType type);
// "f32, f16, bf16, q8_0, q4_0": for error messages.
std::string supported_type_names();

// Bytes of `n` elements of `type` (n a multiple of its block size). Throws Error(BadInput) otherwise.
uint64_t row_bytes(gguf::TensorType type, int64_t n);

// Decodes `n` elements (whole blocks) starting at `src` into dst[n]. Throws Error(BadInput) naming the
// type when it is unsupported or n is not a whole number of blocks.
void dequantize_row(gguf::TensorType type, const uint8_t* src, float* dst, int64_t n);

// Encodes src[rows][row_len] row by row, as ggml's quantize_row_*_ref does; row_len must be a whole number
// of blocks. Returns rows * row_bytes(type, row_len) bytes.
std::vector<uint8_t> quantize_rows(gguf::TensorType type, const float* src, int64_t rows, int64_t row_len);

}  // namespace wgllm::quant
