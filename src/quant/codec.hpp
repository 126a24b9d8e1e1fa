// CPU reference (de)quantization of ggml's tensor types, bit-compatible with ggml-quants.c: the reference
// decoding every GPU kernel must reproduce, and the quantizer behind test models and `wgllm quantize`.
// Each type is one block codec (32 elements for Q4_0..Q8_0, 256 for the K-quants, 1 for F32/F16/BF16);
// rows are sequences of whole blocks. Quantizing follows ggml's quantize_row_*_ref, which is what
// llama.cpp writes without an importance matrix. docs/quantization.md describes every format.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/tensor_type.hpp"
#include "quant/half.hpp"

namespace wgllm::quant {

// Whether dequantize_row / quantize_rows handle `type`: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K. Not the IQ*, TQ*, MXFP4 or integer types.
bool is_supported(gguf::TensorType type);
// "f32, f16, ...": for error messages.
std::string supported_type_names();

// Bytes of `n` elements of `type` (n a multiple of its block size). Throws Error(BadInput) otherwise.
uint64_t row_bytes(gguf::TensorType type, int64_t n);

// In the functions below, `what` names the data for error messages (e.g. "tensor 'blk.0.attn_q.weight'");
// errors are Error(BadInput) naming it and the type.

// Decodes `n` elements (whole blocks) starting at `src` into dst[n]. Throws when the type is unsupported or
// n is not a whole number of blocks.
void dequantize_row(gguf::TensorType type, const uint8_t* src, float* dst, int64_t n,
                    std::string_view what = {});

// Encodes src[rows][row_len] as ggml's quantize_row_*_ref does; row_len must be a whole number of blocks,
// and quantized types need finite values. Returns rows * row_bytes(type, row_len) bytes.
std::vector<uint8_t> quantize_rows(gguf::TensorType type, const float* src, int64_t rows, int64_t row_len,
                                   std::string_view what = {});
// A tensor of rows[row_len] encoded as quantize_rows does, in chunks of whole rows, about `chunk_elements`
// elements each (at least a row), that up to `threads` workers take in turn, so that memory beyond the output
// is one chunk of f32 per worker: `source(first, n, out)` writes rows first .. first + n - 1 as f32 into
// out[n * row_len], and `done`, if set, is told each chunk's element count (progress); both run on the
// workers. The first error (rows and elements counted from the tensor's first) stops the others at their next
// chunk and is rethrown.
std::vector<uint8_t> quantize_rows_parallel(gguf::TensorType type, int64_t rows, int64_t row_len,
                                            int64_t chunk_elements, unsigned threads,
                                            const std::function<void(int64_t, int64_t, float*)>& source,
                                            const std::function<void(uint64_t)>& done,
                                            std::string_view what = {});

}  // namespace wgllm::quant
