#include "quant/codec.hpp"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.hpp"
#include "quant/blocks.hpp"

namespace wgllm::quant {

namespace {

using gguf::TensorType;
using namespace blocks;

// One block: `decode` writes the block's elements, `encode` reads them (block geometry from type_traits).
// Scaled formats derive their scale from the block's values, so they need finite input.
struct Codec {
  TensorType type;
  void (*decode)(const uint8_t* block, float* out);
  void (*encode)(const float* in, uint8_t* block);
  bool needs_finite;
};

void decode_f32(const uint8_t* b, float* out) {
  *out = load_f32(b);
}
void encode_f32(const float* in, uint8_t* b) {
  store_f32(b, *in);
}
void decode_f16(const uint8_t* b, float* out) {
  *out = load_f16(b);
}
void encode_f16(const float* in, uint8_t* b) {
  store_f16(b, *in);
}
void decode_bf16(const uint8_t* b, float* out) {
  *out = bf16_to_f32(load_u16(b));
}
void encode_bf16(const float* in, uint8_t* b) {
  store_u16(b, f32_to_bf16(*in));
}

// The 32-element formats. Byte j of a block's nibble array holds element j in its low nibble and element
// j + 16 in its high nibble; Q5 formats keep each element's fifth bit in bit e of a little-endian u32 qh.
constexpr int kQK = 32;

// The (first) element of largest magnitude, sign kept.
float signed_absmax(const float* x) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < kQK; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

struct MinMax {
  float min = FLT_MAX;
  float max = -FLT_MAX;
};

MinMax min_max(const float* x) {
  MinMax m;
  for (int j = 0; j < kQK; ++j) {
    if (x[j] < m.min) m.min = x[j];
    if (x[j] > m.max) m.max = x[j];
  }
  return m;
}

// The encoders compute x / d as x * (1 / d) in float like ggml, so the bytes match llama.cpp's; conversions
// of the shifted values truncate, which for these non-negative operands is floor.

// block_q8_0 { f16 d; int8 qs[32]; }: x = qs * d. d = amax / 127, q = roundf(x / d) (ties away from zero).
void decode_q8_0(const uint8_t* b, float* out) {
  const float d = load_f16(b);
  for (int j = 0; j < kQK; ++j) out[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

void encode_q8_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  for (int j = 0; j < kQK; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[j] * id)));
}

// block_q4_0 { f16 d; u8 qs[16]; }: x = (q - 8) * d. d = max / -8 where max is the largest-magnitude element
// with its sign, so that element maps exactly to q = 0 and [-8, 7] is used asymmetrically in its favour;
// elements of the other sign beyond 7|d| clamp to 15. Truncating x / d + 8.5 rounds half up.
void decode_q4_0(const uint8_t* b, float* out) {
  const float d = load_f16(b);
  for (int j = 0; j < kQK / 2; ++j) {
    out[j] = static_cast<float>((b[2 + j] & 0x0F) - 8) * d;
    out[j + kQK / 2] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
  }
}

void encode_q4_0(const float* x, uint8_t* b) {
  const float d = signed_absmax(x) / -8;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  auto q = [id](float v) { return static_cast<uint8_t>(std::min(15, static_cast<int>(v * id + 8.5f))); };
  for (int j = 0; j < kQK / 2; ++j) b[2 + j] = static_cast<uint8_t>(q(x[j]) | q(x[j + kQK / 2]) << 4);
}

// block_q4_1 { f16 d; f16 m; u8 qs[16]; }: x = q * d + m. d = (max - min) / 15, m = min, q = (x - min) / d
// rounded half up, at most 15.
void decode_q4_1(const uint8_t* b, float* out) {
  const float d = load_f16(b);
  const float m = load_f16(b + 2);
  for (int j = 0; j < kQK / 2; ++j) {
    out[j] = static_cast<float>(b[4 + j] & 0x0F) * d + m;
    out[j + kQK / 2] = static_cast<float>(b[4 + j] >> 4) * d + m;
  }
}

void encode_q4_1(const float* x, uint8_t* b) {
  const MinMax r = min_max(x);
  const float d = (r.max - r.min) / 15;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  store_f16(b + 2, r.min);
  auto q = [&](float v) {
    return static_cast<uint8_t>(std::min(15, static_cast<int>((v - r.min) * id + 0.5f)));
  };
  for (int j = 0; j < kQK / 2; ++j) b[4 + j] = static_cast<uint8_t>(q(x[j]) | q(x[j + kQK / 2]) << 4);
}

// Q5 blocks: low nibbles as Q4's, the fifth bit of element e in bit e of qh.
int q5_quant(const uint8_t* qs, uint32_t qh, int e) {
  const int nibble = e < kQK / 2 ? qs[e] & 0x0F : qs[e - kQK / 2] >> 4;
  return nibble | static_cast<int>((qh >> e) & 1) << 4;
}

void pack_q5(const uint8_t* q, uint8_t* qh_at, uint8_t* qs) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | (q[j + kQK / 2] & 0x0F) << 4);
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[j + kQK / 2] >> 4) & 1) << (j + kQK / 2);
  }
  store_u32(qh_at, qh);
}

// block_q5_0 { f16 d; u8 qh[4]; u8 qs[16]; }: x = (q - 16) * d, d = max / -16 (as Q4_0), q at most 31.
void decode_q5_0(const uint8_t* b, float* out) {
  const float d = load_f16(b);
  const uint32_t qh = load_u32(b + 2);
  for (int e = 0; e < kQK; ++e) out[e] = static_cast<float>(q5_quant(b + 6, qh, e) - 16) * d;
}

void encode_q5_0(const float* x, uint8_t* b) {
  const float d = signed_absmax(x) / -16;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  uint8_t q[kQK];
  for (int e = 0; e < kQK; ++e)
    q[e] = static_cast<uint8_t>(std::min(31, static_cast<int>(x[e] * id + 16.5f)));
  pack_q5(q, b + 2, b + 6);
}

// block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }: x = q * d + m, d = (max - min) / 31, m = min. ggml does
// not clamp q here: (x - min) / d + 0.5 stays below 32 because d is (max - min) / 31 computed in float.
void decode_q5_1(const uint8_t* b, float* out) {
  const float d = load_f16(b);
  const float m = load_f16(b + 2);
  const uint32_t qh = load_u32(b + 4);
  for (int e = 0; e < kQK; ++e) out[e] = static_cast<float>(q5_quant(b + 8, qh, e)) * d + m;
}

void encode_q5_1(const float* x, uint8_t* b) {
  const MinMax r = min_max(x);
  const float d = (r.max - r.min) / 31;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  store_f16(b + 2, r.min);
  uint8_t q[kQK];
  for (int e = 0; e < kQK; ++e) q[e] = static_cast<uint8_t>(static_cast<int>((x[e] - r.min) * id + 0.5f));
  pack_q5(q, b + 4, b + 8);
}

constexpr Codec kCodecs[] = {
    {TensorType::F32, decode_f32, encode_f32, false},    {TensorType::F16, decode_f16, encode_f16, false},
    {TensorType::BF16, decode_bf16, encode_bf16, false}, {TensorType::Q4_0, decode_q4_0, encode_q4_0, true},
    {TensorType::Q4_1, decode_q4_1, encode_q4_1, true},  {TensorType::Q5_0, decode_q5_0, encode_q5_0, true},
    {TensorType::Q5_1, decode_q5_1, encode_q5_1, true},  {TensorType::Q8_0, decode_q8_0, encode_q8_0, true},
    {TensorType::Q2_K, decode_q2_K, encode_q2_K, true},  {TensorType::Q3_K, decode_q3_K, encode_q3_K, true},
    {TensorType::Q4_K, decode_q4_K, encode_q4_K, true},  {TensorType::Q5_K, decode_q5_K, encode_q5_K, true},
    {TensorType::Q6_K, decode_q6_K, encode_q6_K, true},  {TensorType::Q8_K, decode_q8_K, encode_q8_K, true},
};

const Codec* find_codec(TensorType type) {
  for (const Codec& c : kCodecs) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

std::string describe(TensorType type) {
  return std::string(gguf::type_name(type)) + " (type " + std::to_string(static_cast<uint32_t>(type)) + ")";
}

std::string prefix(const char* op, std::string_view what) {
  return what.empty() ? std::string(op) + ": " : std::string(what) + ": " + op + ": ";
}

// The codec of `type` and its block geometry, after checking that `n` elements are whole blocks.
struct Plan {
  const Codec* codec;
  gguf::TypeTraits traits;
  int64_t blocks;
};

Plan plan(const char* op, std::string_view what, TensorType type, int64_t n) {
  const Codec* codec = find_codec(type);
  if (!codec) {
    fail_input(prefix(op, what) + "tensor type " + describe(type) +
               " is not supported (supported: " + supported_type_names() + ")");
  }
  const gguf::TypeTraits traits = *gguf::type_traits(static_cast<uint32_t>(type));
  if (n < 0 || n % traits.block_elements != 0) {
    fail_input(prefix(op, what) + std::to_string(n) + " elements of " + describe(type) +
               " is not a whole number of " + std::to_string(traits.block_elements) + "-element blocks");
  }
  return {codec, traits, n / traits.block_elements};
}

}  // namespace

bool is_supported(TensorType type) {
  return find_codec(type) != nullptr;
}

std::string supported_type_names() {
  std::string names;
  for (const Codec& c : kCodecs) {
    if (!names.empty()) names += ", ";
    names += gguf::type_name(c.type);
  }
  return names;
}

uint64_t row_bytes(TensorType type, int64_t n) {
  const Plan p = plan("row_bytes", {}, type, n);
  return static_cast<uint64_t>(p.blocks) * p.traits.block_bytes;
}

void dequantize_row(TensorType type, const uint8_t* src, float* dst, int64_t n, std::string_view what) {
  const Plan p = plan("dequantize_row", what, type, n);
  for (int64_t i = 0; i < p.blocks; ++i) {
    p.codec->decode(src + i * p.traits.block_bytes, dst + i * p.traits.block_elements);
  }
}

namespace {

// The plan for encoding rows[row_len] of `type`, or an error naming what is wrong with them.
Plan encode_plan(TensorType type, int64_t rows, int64_t row_len, std::string_view what) {
  const Plan p = plan("quantize_rows", what, type, row_len);
  if (rows < 0) fail_input(prefix("quantize_rows", what) + "negative row count " + std::to_string(rows));
  return p;
}

// Encodes rows first_row .. first_row + rows - 1 of a tensor into dst, as encode_plan planned: errors count
// rows and elements from the tensor's first.
void encode_rows(const Plan& p, TensorType type, const float* src, int64_t rows, int64_t row_len,
                 uint8_t* dst, std::string_view what, int64_t first_row) {
  if (p.codec->needs_finite) {
    const int64_t n = rows * row_len;
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(src[i])) {
        const int64_t at = first_row * row_len + i;
        fail_input(prefix("quantize_rows", what) + "element " + std::to_string(at) + " (row " +
                   std::to_string(at / row_len) + ") is " + std::to_string(src[i]) + "; " + describe(type) +
                   " needs finite values");
      }
    }
  }
  // Rows are whole blocks, so all rows together are one run of blocks.
  const int64_t blocks = rows * p.blocks;
  for (int64_t i = 0; i < blocks; ++i) {
    p.codec->encode(src + i * p.traits.block_elements, dst + i * p.traits.block_bytes);
  }
}

}  // namespace

std::vector<uint8_t> quantize_rows_parallel(TensorType type, int64_t rows, int64_t row_len,
                                            int64_t chunk_elements, unsigned threads,
                                            const std::function<void(int64_t, int64_t, float*)>& source,
                                            const std::function<void(uint64_t)>& done,
                                            std::string_view what) {
  const Plan p = encode_plan(type, rows, row_len, what);
  std::vector<uint8_t> dst(static_cast<size_t>(rows * p.blocks) * p.traits.block_bytes);
  const uint64_t row_bytes = p.blocks * p.traits.block_bytes;
  const int64_t chunk_rows = std::max<int64_t>(1, chunk_elements / std::max<int64_t>(row_len, 1));
  const int64_t chunks = (rows + chunk_rows - 1) / chunk_rows;
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;
  auto work = [&] {
    std::vector<float> buf;
    for (int64_t c; (c = next++) < chunks;) {
      const int64_t first = c * chunk_rows;
      const int64_t n = std::min(chunk_rows, rows - first);
      buf.resize(static_cast<size_t>(n * row_len));
      try {
        source(first, n, buf.data());
        encode_rows(p, type, buf.data(), n, row_len, dst.data() + first * row_bytes, what, first);
        if (done) done(static_cast<uint64_t>(n * row_len));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
        next = chunks;  // the others stop at their next chunk
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < std::min<int64_t>(threads, chunks); ++i) pool.emplace_back(work);
  work();
  for (std::thread& th : pool) th.join();
  if (error) std::rethrow_exception(error);
  return dst;
}

std::vector<uint8_t> quantize_rows(TensorType type, const float* src, int64_t rows, int64_t row_len,
                                   std::string_view what) {
  const Plan p = encode_plan(type, rows, row_len, what);
  std::vector<uint8_t> out(static_cast<size_t>(rows * p.blocks) * p.traits.block_bytes);
  encode_rows(p, type, src, rows, row_len, out.data(), what, 0);
  return out;
}

}  // namespace wgllm::quant
