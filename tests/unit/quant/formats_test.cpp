// Decoding of every quantized format against its definition (ggml-common.h): blocks built field by field
// from chosen scales, mins and quants decode to the values the definition gives (computed in double from
// those fields), and random blocks (extreme, zero and negative scales included) decode to finite values
// bit-identical to spec::grid, an independent per-element reading of the layouts.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "quant/codec.hpp"
#include "support/test_support.hpp"
#include "unit/quant/format_spec.hpp"

namespace wgllm::quant {
namespace {

using gguf::TensorType;

// A block's logical content. q holds the stored codes (unsigned, 0..2^bits - 1, except Q8_K's int8).
struct Fields {
  float d = 0;
  float m = 0;          // Q4_1/Q5_1: min; K-quants: dmin
  std::vector<int> sc;  // K-quants' sub-block scales (Q3_K: the stored 6-bit code, bias 32 included)
  std::vector<int> mn;  // K-quants' sub-block mins
  std::vector<int> q;
};

void put_half(std::vector<uint8_t>& b, size_t at, float v) {
  const uint16_t h = f32_to_f16(v);
  b[at] = static_cast<uint8_t>(h);
  b[at + 1] = static_cast<uint8_t>(h >> 8);
}
void set_bits(std::vector<uint8_t>& b, size_t byte, int shift, int value) {
  b[byte] = static_cast<uint8_t>(b[byte] | value << shift);
}

// Packs `f` as ggml-common.h lays the type out (element e's position written per element).
std::vector<uint8_t> pack(TensorType type, const Fields& f) {
  std::vector<uint8_t> b(gguf::type_traits(static_cast<uint32_t>(type))->block_bytes, 0);
  auto nib32 = [&](size_t at, int e, int v) { set_bits(b, at + e % 16, e < 16 ? 0 : 4, v & 0xF); };
  auto crumb256 = [&](size_t at, int e, int v) {
    set_bits(b, at + 32 * (e / 128) + e % 32, 2 * ((e % 128) / 32), v & 3);
  };
  auto nib256 = [&](size_t at, int e, int v) {
    set_bits(b, at + 32 * (e / 64) + e % 32, (e % 64) >= 32 ? 4 : 0, v & 0xF);
  };
  auto k4_scales = [&](size_t at) {
    for (int j = 0; j < 8; ++j) {
      if (j < 4) {
        set_bits(b, at + j, 0, f.sc[j]);
        set_bits(b, at + j + 4, 0, f.mn[j]);
      } else {
        set_bits(b, at + j + 4, 0, (f.sc[j] & 0xF) | (f.mn[j] & 0xF) << 4);
        set_bits(b, at + j - 4, 6, f.sc[j] >> 4);
        set_bits(b, at + j, 6, f.mn[j] >> 4);
      }
    }
  };
  switch (type) {
    case TensorType::Q4_1:
      put_half(b, 0, f.d);
      put_half(b, 2, f.m);
      for (int e = 0; e < 32; ++e) nib32(4, e, f.q[e]);
      break;
    case TensorType::Q5_0:
    case TensorType::Q5_1: {
      const bool q51 = type == TensorType::Q5_1;
      put_half(b, 0, f.d);
      if (q51) put_half(b, 2, f.m);
      const size_t qh = q51 ? 4 : 2;
      for (int e = 0; e < 32; ++e) {
        nib32(qh + 4, e, f.q[e]);
        set_bits(b, qh + e / 8, e % 8, f.q[e] >> 4);
      }
      break;
    }
    case TensorType::Q2_K:
      for (int j = 0; j < 16; ++j) b[j] = static_cast<uint8_t>(f.sc[j] | f.mn[j] << 4);
      for (int e = 0; e < 256; ++e) crumb256(16, e, f.q[e]);
      put_half(b, 80, f.d);
      put_half(b, 82, f.m);
      break;
    case TensorType::Q3_K:
      for (int e = 0; e < 256; ++e) {
        crumb256(32, e, f.q[e]);
        set_bits(b, e % 32, e / 32, f.q[e] >> 2);
      }
      for (int j = 0; j < 16; ++j) {
        set_bits(b, 96 + j % 8, j < 8 ? 0 : 4, f.sc[j] & 0xF);
        set_bits(b, 96 + 8 + j % 4, 2 * (j / 4), f.sc[j] >> 4);
      }
      put_half(b, 108, f.d);
      break;
    case TensorType::Q4_K:
      put_half(b, 0, f.d);
      put_half(b, 2, f.m);
      k4_scales(4);
      for (int e = 0; e < 256; ++e) nib256(16, e, f.q[e]);
      break;
    case TensorType::Q5_K:
      put_half(b, 0, f.d);
      put_half(b, 2, f.m);
      k4_scales(4);
      for (int e = 0; e < 256; ++e) {
        nib256(48, e, f.q[e]);
        set_bits(b, 16 + e % 32, e / 32, f.q[e] >> 4);
      }
      break;
    case TensorType::Q6_K:
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32;
        set_bits(b, 64 * h + 32 * (k & 1) + l, k >= 2 ? 4 : 0, f.q[e] & 0xF);
        set_bits(b, 128 + 32 * h + l, 2 * k, f.q[e] >> 4);
      }
      for (int j = 0; j < 16; ++j) b[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(f.sc[j]));
      put_half(b, 208, f.d);
      break;
    case TensorType::Q8_K: {
      std::memcpy(b.data(), &f.d, 4);
      for (int e = 0; e < 256; ++e) b[4 + e] = static_cast<uint8_t>(static_cast<int8_t>(f.q[e]));
      for (int j = 0; j < 16; ++j) {
        int sum = 0;
        for (int e = 16 * j; e < 16 * j + 16; ++e) sum += f.q[e];
        b[260 + 2 * j] = static_cast<uint8_t>(sum);
        b[261 + 2 * j] = static_cast<uint8_t>(sum >> 8);
      }
      break;
    }
    default:
      ADD_FAILURE() << "no packer for " << gguf::type_name(type);
  }
  return b;
}

struct HandBuilt {
  TensorType type;
  Fields fields;
  std::function<double(const Fields&, int)> value;  // the format's definition of element e
};

// Scales, mins and quants chosen so that every product is exact in float: the decoded values must equal
// the definition exactly. Sub-block scales and mins include values >= 16 so the 6-bit ones' top bits count.
std::vector<HandBuilt> hand_built_blocks() {
  auto codes = [](int n, int mult, int mod) {
    std::vector<int> q(n);
    for (int e = 0; e < n; ++e) q[e] = e * mult % mod;
    return q;
  };
  std::vector<HandBuilt> v;
  v.push_back({TensorType::Q4_1, {0.5f, -3.25f, {}, {}, codes(32, 5, 16)}, [](const Fields& f, int e) {
                 return f.q[e] * double(f.d) + f.m;
               }});
  v.push_back({TensorType::Q5_0, {-0.25f, 0, {}, {}, codes(32, 7, 32)}, [](const Fields& f, int e) {
                 return (f.q[e] - 16) * double(f.d);
               }});
  v.push_back({TensorType::Q5_1, {0.125f, 2.0f, {}, {}, codes(32, 11, 32)}, [](const Fields& f, int e) {
                 return f.q[e] * double(f.d) + f.m;
               }});
  v.push_back({TensorType::Q2_K,
               {0.5f,
                0.25f,
                {0, 1, 2, 3, 5, 8, 13, 15, 15, 9, 4, 1, 7, 2, 11, 6},
                {15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14},
                codes(256, 3, 4)},
               [](const Fields& f, int e) {
                 return double(f.d) * f.sc[e / 16] * f.q[e] - double(f.m) * f.mn[e / 16];
               }});
  v.push_back({TensorType::Q3_K,
               {0.5f, 0, {0, 1, 31, 32, 33, 63, 16, 47, 2, 60, 30, 34, 8, 55, 40, 20}, {}, codes(256, 5, 8)},
               [](const Fields& f, int e) { return double(f.d) * (f.sc[e / 16] - 32) * (f.q[e] - 4); }});
  for (TensorType t : {TensorType::Q4_K, TensorType::Q5_K}) {
    const int levels = t == TensorType::Q4_K ? 16 : 32;
    v.push_back(
        {t,
         {0.5f, 0.25f, {1, 2, 17, 33, 63, 0, 40, 5}, {0, 1, 2, 3, 60, 10, 20, 63}, codes(256, 7, levels)},
         [](const Fields& f, int e) {
           return double(f.d) * f.sc[e / 32] * f.q[e] - double(f.m) * f.mn[e / 32];
         }});
  }
  v.push_back({TensorType::Q6_K,
               {0.25f,
                0,
                {1, -1, 127, -128, 0, 5, -7, 64, 33, -33, 2, 100, -100, 9, 17, -64},
                {},
                codes(256, 13, 64)},
               [](const Fields& f, int e) { return double(f.d) * f.sc[e / 16] * (f.q[e] - 32); }});
  std::vector<int> q8(256);
  for (int e = 0; e < 256; ++e) q8[e] = e - 128;
  v.push_back({TensorType::Q8_K, {0.75f, 0, {}, {}, q8}, [](const Fields& f, int e) {
                 return double(f.d) * f.q[e];
               }});
  return v;
}

TEST(Formats, HandBuiltBlocksDecodeToTheDefinition) {
  for (const HandBuilt& h : hand_built_blocks()) {
    SCOPED_TRACE(std::string(gguf::type_name(h.type)));
    const std::vector<uint8_t> block = pack(h.type, h.fields);
    const int n = static_cast<int>(h.fields.q.size());
    std::vector<float> got(n);
    dequantize_row(h.type, block.data(), got.data(), n);
    for (int e = 0; e < n; ++e) ASSERT_EQ(got[e], h.value(h.fields, e)) << "element " << e;
  }
}

TEST(Formats, Q5HighBitsAndQ3HmaskAreWhereTheDefinitionPutsThem) {
  // One set high bit at a time: Q5_0 element e's fifth bit is bit e of qh; Q3_K element e's high bit is
  // bit e / 32 of hmask[e % 32] (set means no -4).
  for (int e = 0; e < 32; ++e) {
    std::vector<uint8_t> b(22, 0);
    b[0] = 0x00, b[1] = 0x3C;  // d = 1
    b[2 + e / 8] = static_cast<uint8_t>(1 << (e % 8));
    std::vector<float> y(32);
    dequantize_row(TensorType::Q5_0, b.data(), y.data(), 32);
    for (int i = 0; i < 32; ++i) ASSERT_EQ(y[i], i == e ? 0.0f : -16.0f) << e << " " << i;
  }
  for (int e : {0, 31, 32, 100, 255}) {
    std::vector<uint8_t> b(110, 0);
    // Every 6-bit scale 33 (low nibbles 1, top bits 2), i.e. 1 after the bias of 32; d = 1; quants 0.
    for (int j = 0; j < 8; ++j) b[96 + j] = 0x11;
    for (int j = 0; j < 4; ++j) b[104 + j] = 0xAA;
    b[108] = 0x00, b[109] = 0x3C;
    b[e % 32] = static_cast<uint8_t>(1 << (e / 32));
    std::vector<float> y(256);
    dequantize_row(TensorType::Q3_K, b.data(), y.data(), 256);
    for (int i = 0; i < 256; ++i) ASSERT_EQ(y[i], i == e ? 0.0f : -4.0f) << e << " " << i;
  }
}

// Random bytes with the scale fields drawn from all finite halves, every fourth block using an extreme one
// (largest, smallest subnormal, zero, negative).
std::vector<uint8_t> random_blocks(TensorType type, int n, std::mt19937_64& gen) {
  const uint32_t bytes = gguf::type_traits(static_cast<uint32_t>(type))->block_bytes;
  std::vector<uint8_t> b(static_cast<size_t>(n) * bytes);
  for (uint8_t& x : b) x = static_cast<uint8_t>(gen());
  std::vector<int> halves;
  switch (type) {
    case TensorType::Q4_1:
    case TensorType::Q5_1:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
      halves = {0, 2};
      break;
    case TensorType::Q4_0:
    case TensorType::Q5_0:
    case TensorType::Q8_0:
      halves = {0};
      break;
    case TensorType::Q2_K:
      halves = {80, 82};
      break;
    case TensorType::Q3_K:
      halves = {108};
      break;
    case TensorType::Q6_K:
      halves = {208};
      break;
    default:
      break;
  }
  const uint16_t extremes[] = {0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x0000, 0x8000};
  for (int i = 0; i < n; ++i) {
    uint8_t* blk = b.data() + static_cast<size_t>(i) * bytes;
    for (int at : halves) {
      uint16_t h;
      if (i % 4 == 3) {
        h = extremes[gen() % std::size(extremes)];
      } else {
        do h = static_cast<uint16_t>(gen());
        while (((h >> 10) & 0x1F) == 0x1F);
      }
      blk[at] = static_cast<uint8_t>(h);
      blk[at + 1] = static_cast<uint8_t>(h >> 8);
    }
    if (type == TensorType::Q8_K) {  // f32 d, kept where d * 127 stays finite
      const float d = std::ldexp(static_cast<float>(static_cast<int>(gen() % 2001) - 1000),
                                 static_cast<int>(gen() % 200) - 130);
      std::memcpy(blk, &d, 4);
    }
  }
  return b;
}

TEST(Formats, RandomBlocksDecodeToFiniteValuesMatchingTheDefinition) {
  SCOPED_TRACE(test::seed_note());
  auto gen = test::rng(7);
  for (TensorType type : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                          TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K,
                          TensorType::Q5_K, TensorType::Q6_K, TensorType::Q8_K}) {
    SCOPED_TRACE(std::string(gguf::type_name(type)));
    const gguf::TypeTraits tr = *gguf::type_traits(static_cast<uint32_t>(type));
    const int n_blocks = 64;
    const std::vector<uint8_t> blocks = random_blocks(type, n_blocks, gen);
    std::vector<float> y(static_cast<size_t>(n_blocks) * tr.block_elements);
    dequantize_row(type, blocks.data(), y.data(), static_cast<int64_t>(y.size()));
    for (size_t i = 0; i < y.size(); ++i) {
      const uint8_t* blk = blocks.data() + i / tr.block_elements * tr.block_bytes;
      const float want = spec::grid(type, blk, static_cast<int>(i % tr.block_elements)).value();
      ASSERT_TRUE(std::isfinite(y[i])) << "element " << i;
      ASSERT_EQ(std::bit_cast<uint32_t>(y[i]), std::bit_cast<uint32_t>(want))
          << "element " << i << ": " << y[i] << " vs " << want;
    }
  }
}

}  // namespace
}  // namespace wgllm::quant
