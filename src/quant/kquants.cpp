// ggml's K-quants: super-blocks of 256 elements split into sub-blocks of 16 or 32, each with a small integer
// scale (and min) that is itself quantized against the super-block's f16 scale(s). Layouts follow
// ggml-common.h's block_q*_K structs; decoders evaluate dequantize_row_q*_K's expressions; encoders follow
// quantize_row_q*_K_ref (the path llama.cpp's quantizer takes without an importance matrix), including its
// scale searches (make_qkx2_quants, make_q3_quants, make_qx_quants).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/blocks.hpp"

namespace wgllm::quant::blocks {

namespace {

// Byte offsets of each block's fields (ggml-common.h). Quants of element e are spread over the block as
// each layout's comment says (h = e / 128, g = e / 64, s = e / 32).
//
// block_q2_K, 84 B: x = d * (sc & 15) * q - dmin * (sc >> 4), sc = scales[e / 16], q = 2 bits of
//   qs[32h + e % 32] at bit 2 * (s % 4).
constexpr int kQ2Scales = 0, kQ2Qs = 16, kQ2D = 80, kQ2Dmin = 82;
// block_q3_K, 110 B: x = d * (sc - 32) * (q - 4 * !hbit), sc a 6-bit scale (packing in q3_scale), q = 2 bits
//   of qs[32h + e % 32] at bit 2 * (s % 4), hbit = bit s of hmask[e % 32].
constexpr int kQ3Hmask = 0, kQ3Qs = 32, kQ3Scales = 96, kQ3D = 108;
// block_q4_K, 144 B: x = d * sc * q - dmin * m, (sc, m) 6-bit per 32 elements (packing in k4_scale_min),
//   q = nibble of qs[32g + e % 32], the high one when e % 64 >= 32.
constexpr int kQ4D = 0, kQ4Dmin = 2, kQ4Scales = 4, kQ4Qs = 16;
// block_q5_K, 176 B: as q4_K, plus a fifth bit: bit s of qh[e % 32].
constexpr int kQ5D = 0, kQ5Dmin = 2, kQ5Scales = 4, kQ5Qh = 16, kQ5Qs = 48;
// block_q6_K, 210 B: x = d * sc * (q - 32), sc = int8 scales[e / 16], q = low nibble from
//   ql[64h + e % 32 + 32 * (k & 1)] (the high nibble when k >= 2), high 2 bits from qh[32h + e % 32] at bit
//   2k, where k = (e % 128) / 32.
constexpr int kQ6Ql = 0, kQ6Qh = 128, kQ6Scales = 192, kQ6D = 208;
// block_q8_K, 292 B: f32 d, int8 qs[256], int16 bsums[16] (sums of 16 quants, for dot products): x = d * q.
constexpr int kQ8D = 0, kQ8Qs = 4, kQ8Bsums = 260;

// The 6-bit scale and min of 32-element sub-block j (0..7) of q4_K/q5_K: ggml's get_scale_min_k4. Scales
// 0-3 and mins 0-3 sit in the low 6 bits of bytes 0-3 and 4-7; scales and mins 4-7 have their low 4 bits in
// the nibbles of bytes 8-11 and their top 2 bits in the top bits of bytes 0-3 (scales) and 4-7 (mins).
void k4_scale_min(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// The inverse packing, as quantize_row_q4_K_ref writes it (ls, lm <= 63; scales[12] zeroed first).
void pack_k4_scale_min(int j, uint8_t ls, uint8_t lm, uint8_t* q) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
    q[j] |= static_cast<uint8_t>((lm >> 4) << 6);
  }
}

// The 6-bit scale (0..63, stored with +32 bias) of 16-element sub-block j (0..15) of q3_K: its low 4 bits
// are nibble j / 8 of byte j % 8, its top 2 bits are bits 2 * (j / 4) of byte 8 + j % 4.
int q3_scale(int j, const uint8_t* sc) {
  const int low = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
  const int high = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
  return low | high << 4;
}

void pack_q3_scale(int j, int l, uint8_t* sc) {
  if (j < 8) {
    sc[j] = static_cast<uint8_t>(l & 0xF);
  } else {
    sc[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
  }
  sc[8 + j % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
}

// q2_K and q3_K's 2-bit field: element e lives in qs[32 * (e / 128) + e % 32] at bit 2 * ((e % 128) / 32).
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int h = 0; h < kQK_K; h += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[h / 4 + l] =
          static_cast<uint8_t>(L[h + l] | L[h + l + 32] << 2 | L[h + l + 64] << 4 | L[h + l + 96] << 6);
    }
  }
}

int clamp(int v, int lo, int hi) {
  return std::max(lo, std::min(hi, v));
}

float sum_of_squares(const float* x, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

// ggml's make_qkx2_quants: fits x[i] ~ scale * L[i] - min_out with L[i] in [0, nmax] and min_out >= 0, by
// weighted error (absolute if use_mad, else squared). Starting from the range [min(x, 0), max(x)], it
// tries nstep + 1 inverse scales (nmax + rmin + rdelta * is) / range and refits scale and min to each
// rounding by weighted least squares, keeping the best. Returns the scale; *min_out gets the min to subtract.
// The running best min also shifts the next trials' rounding, as in ggml.
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* min_out, float rmin,
                    float rdelta, int nstep, bool use_mad) {
  float min = x[0];
  float max = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, 0);
    *min_out = -min;
    return 0.0f;
  }
  auto error_of = [&](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    best_error += w[i] * error_of(scale * L[i] + min - x[i]);
  }
  uint8_t trial[32];  // n <= 32
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      trial[i] = static_cast<uint8_t>(l);
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (!(D > 0)) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < n; ++i) error += w[i] * error_of(this_scale * trial[i] + this_min - x[i]);
    if (error < best_error) {
      std::copy(trial, trial + n, L);
      best_error = error;
      scale = this_scale;
      min = this_min;
    }
  }
  *min_out = -min;
  return scale;
}

// The element of largest magnitude (the first one on ties), sign kept; 0 for an empty or all-zero run.
float signed_absmax(const float* x, int n) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  return max;
}

// ggml's make_q3_quants(n, nmax, x, L, do_rmse = true): symmetric quants L[i] + nmax, L in [-nmax, nmax - 1],
// starting from the scale that maps the largest-magnitude element to -nmax, then up to five passes of
// coordinate descent that move one quant at a time while the x^2-weighted fit sum(w x l)^2 / sum(w l^2)
// improves. Returns the least-squares scale of the final quants.
float fit_symmetric_descent(int n, int nmax, const float* x, int8_t* L) {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  const float iscale = -nmax / max;
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (!(slx > 0)) continue;
      float sl2 = suml2 - w * L[i] * L[i];
      const int new_l = clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (new_l == L[i]) continue;
      slx += w * x[i] * new_l;
      sl2 += w * new_l * new_l;
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = static_cast<int8_t>(new_l);
        sumlx = slx;
        suml2 = sl2;
        ++changed;
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ggml's make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL): symmetric quants L[i] + nmax as above,
// choosing among the inverse scales -(nmax + 0.1 is) / max, is = -9..9, the one whose least-squares fit
// (weights x^2) is best. Returns that fit's scale.
float fit_symmetric_search(int n, int nmax, const float* x, int8_t* L) {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  auto fit = [&](float iscale, float* sumlx, float* suml2) {
    *sumlx = 0;
    *suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      *sumlx += w * x[i] * l;
      *suml2 += w * l * l;
    }
  };
  auto assign = [&](float iscale) {
    for (int i = 0; i < n; ++i)
      L[i] = static_cast<int8_t>(nmax + clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
  };
  float sumlx, suml2;
  float iscale = -nmax / max;
  fit(iscale, &sumlx, &suml2);
  assign(iscale);
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    fit(iscale, &sumlx, &suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      assign(iscale);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// The shared second stage of q2_K/q4_K/q5_K: per-sub-block (scale, min) pairs quantized to `levels` steps
// of the super-block's d = max_scale / levels and dmin = max_min / levels.
struct SuperScales {
  float max_scale = 0;  // scales are positive: the mins were subtracted
  float max_min = 0;
};

SuperScales super_scales(const float* scales, const float* mins, int n) {
  SuperScales s;
  for (int j = 0; j < n; ++j) {
    if (scales[j] > s.max_scale) s.max_scale = scales[j];
    if (mins[j] > s.max_min) s.max_min = mins[j];
  }
  return s;
}

// Requantizes sub-block x[n] against its final (decoded) scale d and min dm, as the _ref encoders do once
// the scales are fixed; a zero d keeps the first-stage quants.
void requantize_affine(const float* x, int n, float d, float dm, int nmax, uint8_t* L) {
  if (!d) return;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(clamp(nearest_int((x[i] + dm) / d), 0, nmax));
}

// quantize_row_q4_K_ref and quantize_row_q5_K_ref share everything but nmax and the search range.
void encode_k4_scales_and_quants(const float* x, int nmax, float rmin, float rdelta, int nstep,
                                 uint8_t* block, int d_off, int dmin_off, int scales_off, uint8_t* L) {
  float scales[8];
  float mins[8];
  float weights[32];
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    const float av_x = std::sqrt(sum_of_squares(xs, 32) / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = fit_scale_min(32, nmax, xs, weights, L + 32 * j, &mins[j], rmin, rdelta, nstep, false);
  }
  const SuperScales s = super_scales(scales, mins, 8);
  const float inv_scale = s.max_scale > 0 ? 63.f / s.max_scale : 0.f;
  const float inv_min = s.max_min > 0 ? 63.f / s.max_min : 0.f;
  uint8_t* packed = block + scales_off;
  std::memset(packed, 0, 12);
  for (int j = 0; j < 8; ++j) {
    // Narrowing to uint8_t before the clamp, as ggml does (only a negative scale could wrap).
    const auto ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
    const auto lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
    pack_k4_scale_min(j, std::min<uint8_t>(63, ls), std::min<uint8_t>(63, lm), packed);
  }
  store_f16(block + d_off, s.max_scale / 63.f);
  store_f16(block + dmin_off, s.max_min / 63.f);
  const float d = load_f16(block + d_off);
  const float dmin = load_f16(block + dmin_off);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    k4_scale_min(j, packed, &sc, &m);
    requantize_affine(x + 32 * j, 32, d * sc, dmin * m, nmax, L + 32 * j);
  }
}

}  // namespace

void decode_q2_K(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ2D);
  const float min = load_f16(b + kQ2Dmin);
  const uint8_t* scales = b + kQ2Scales;
  for (int e = 0; e < kQK_K; e += 16) {
    const uint8_t sc = scales[e / 16];
    const float dl = d * (sc & 0xF);
    const float ml = min * (sc >> 4);
    const uint8_t* q = b + kQ2Qs + 32 * (e / 128) + e % 32;
    const int shift = 2 * ((e % 128) / 32);
    for (int l = 0; l < 16; ++l) y[e + l] = dl * ((q[l] >> shift) & 3) - ml;
  }
}

void encode_q2_K(const float* x, uint8_t* b) {
  uint8_t L[kQK_K];
  float scales[16];
  float mins[16];
  float weights[16];
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = fit_scale_min(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
  }
  const SuperScales s = super_scales(scales, mins, 16);
  constexpr float kLevels = 15.f;  // 4-bit scales and mins
  uint8_t* packed = b + kQ2Scales;
  std::memset(packed, 0, 16);
  if (s.max_scale > 0) {
    const float iscale = kLevels / s.max_scale;
    for (int j = 0; j < 16; ++j) packed[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
  }
  store_f16(b + kQ2D, s.max_scale > 0 ? s.max_scale / kLevels : 0.f);
  if (s.max_min > 0) {
    const float iscale = kLevels / s.max_min;
    for (int j = 0; j < 16; ++j) packed[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
  }
  store_f16(b + kQ2Dmin, s.max_min > 0 ? s.max_min / kLevels : 0.f);
  const float d = load_f16(b + kQ2D);
  const float dmin = load_f16(b + kQ2Dmin);
  for (int j = 0; j < 16; ++j) {
    requantize_affine(x + 16 * j, 16, d * (packed[j] & 0xF), dmin * (packed[j] >> 4), 3, L + 16 * j);
  }
  pack_2bit(L, b + kQ2Qs);
}

void decode_q3_K(const uint8_t* b, float* y) {
  const float d_all = load_f16(b + kQ3D);
  for (int e = 0; e < kQK_K; e += 16) {
    const float dl = d_all * (q3_scale(e / 16, b + kQ3Scales) - 32);
    const uint8_t* q = b + kQ3Qs + 32 * (e / 128) + e % 32;
    const uint8_t* hm = b + kQ3Hmask + e % 32;
    const int shift = 2 * ((e % 128) / 32);
    const int hbit = 1 << (e / 32);
    for (int l = 0; l < 16; ++l) y[e + l] = dl * (((q[l] >> shift) & 3) - ((hm[l] & hbit) ? 0 : 4));
  }
}

void encode_q3_K(const float* x, uint8_t* b) {
  int8_t L[kQK_K];
  float scales[16];
  float max_scale = 0;
  float amax = 0;
  for (int j = 0; j < 16; ++j) {
    scales[j] = fit_symmetric_descent(16, 4, x + 16 * j, L + 16 * j);
    if (std::fabs(scales[j]) > amax) {
      amax = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  uint8_t* packed = b + kQ3Scales;
  std::memset(packed, 0, 12);
  if (max_scale) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < 16; ++j)
      pack_q3_scale(j, clamp(nearest_int(iscale * scales[j]), -32, 31) + 32, packed);
    store_f16(b + kQ3D, 1 / iscale);
  } else {
    store_f16(b + kQ3D, 0.f);
  }
  const float d_all = load_f16(b + kQ3D);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * (q3_scale(j, packed) - 32);
    if (!d) continue;
    for (int i = 16 * j; i < 16 * j + 16; ++i)
      L[i] = static_cast<int8_t>(clamp(nearest_int(x[i] / d), -4, 3) + 4);
  }
  // Quants 4..7 set their element's bit in hmask (byte e % 32, bit e / 32) and keep 0..3 in qs.
  uint8_t* hmask = b + kQ3Hmask;
  std::memset(hmask, 0, 32);
  uint8_t low[kQK_K];
  for (int e = 0; e < kQK_K; ++e) {
    if (L[e] > 3) hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
    low[e] = static_cast<uint8_t>(L[e] > 3 ? L[e] - 4 : L[e]);
  }
  pack_2bit(low, b + kQ3Qs);
}

void decode_q4_K(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ4D);
  const float min = load_f16(b + kQ4Dmin);
  for (int e = 0; e < kQK_K; e += 32) {
    uint8_t sc, m;
    k4_scale_min(e / 32, b + kQ4Scales, &sc, &m);
    const float d1 = d * sc;
    const float m1 = min * m;
    const uint8_t* q = b + kQ4Qs + 32 * (e / 64);
    const int shift = (e % 64) ? 4 : 0;
    for (int l = 0; l < 32; ++l) y[e + l] = d1 * ((q[l] >> shift) & 0xF) - m1;
  }
}

void encode_q4_K(const float* x, uint8_t* b) {
  uint8_t L[kQK_K];
  encode_k4_scales_and_quants(x, 15, -1.f, 0.1f, 20, b, kQ4D, kQ4Dmin, kQ4Scales, L);
  uint8_t* q = b + kQ4Qs;
  for (int g = 0; g < kQK_K; g += 64) {
    for (int l = 0; l < 32; ++l) q[g / 2 + l] = static_cast<uint8_t>(L[g + l] | L[g + l + 32] << 4);
  }
}

void decode_q5_K(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ5D);
  const float min = load_f16(b + kQ5Dmin);
  const uint8_t* qh = b + kQ5Qh;
  for (int e = 0; e < kQK_K; e += 32) {
    uint8_t sc, m;
    k4_scale_min(e / 32, b + kQ5Scales, &sc, &m);
    const float d1 = d * sc;
    const float m1 = min * m;
    const uint8_t* ql = b + kQ5Qs + 32 * (e / 64);
    const int shift = (e % 64) ? 4 : 0;
    const int hbit = 1 << (e / 32);
    for (int l = 0; l < 32; ++l) y[e + l] = d1 * (((ql[l] >> shift) & 0xF) + (qh[l] & hbit ? 16 : 0)) - m1;
  }
}

void encode_q5_K(const float* x, uint8_t* b) {
  uint8_t L[kQK_K];
  encode_k4_scales_and_quants(x, 31, -0.5f, 0.1f, 15, b, kQ5D, kQ5Dmin, kQ5Scales, L);
  uint8_t* qh = b + kQ5Qh;
  uint8_t* ql = b + kQ5Qs;
  std::memset(qh, 0, 32);
  for (int e = 0; e < kQK_K; ++e) {
    if (L[e] > 15) qh[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
  }
  for (int g = 0; g < kQK_K; g += 64) {
    for (int l = 0; l < 32; ++l)
      ql[g / 2 + l] = static_cast<uint8_t>((L[g + l] & 0xF) | (L[g + l + 32] & 0xF) << 4);
  }
}

void decode_q6_K(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ6D);
  const auto* sc = reinterpret_cast<const int8_t*>(b + kQ6Scales);
  for (int e = 0; e < kQK_K; e += 16) {
    const int k = (e % 128) / 32;
    const uint8_t* ql = b + kQ6Ql + 64 * (e / 128) + (k & 1) * 32 + e % 32;
    const uint8_t* qh = b + kQ6Qh + 32 * (e / 128) + e % 32;
    const int low_shift = k >= 2 ? 4 : 0;
    for (int l = 0; l < 16; ++l) {
      const int q = (((ql[l] >> low_shift) & 0xF) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
      y[e + l] = d * sc[e / 16] * q;
    }
  }
}

void encode_q6_K(const float* x, uint8_t* b) {
  int8_t L[kQK_K];
  float scales[16];
  float max_scale = 0;
  float max_abs_scale = 0;
  for (int j = 0; j < 16; ++j) {
    scales[j] = fit_symmetric_search(16, 32, x + 16 * j, L + 16 * j);
    if (std::fabs(scales[j]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(b, 0, 210);
    return;
  }
  const float iscale = -128.f / max_scale;
  store_f16(b + kQ6D, 1 / iscale);
  auto* packed = reinterpret_cast<int8_t*>(b + kQ6Scales);
  for (int j = 0; j < 16; ++j)
    packed[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
  const float d_all = load_f16(b + kQ6D);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * packed[j];
    if (!d) continue;
    for (int i = 16 * j; i < 16 * j + 16; ++i)
      L[i] = static_cast<int8_t>(clamp(nearest_int(x[i] / d), -32, 31) + 32);
  }
  for (int h = 0; h < kQK_K; h += 128) {
    uint8_t* ql = b + kQ6Ql + h / 2;
    uint8_t* qh = b + kQ6Qh + h / 4;
    for (int l = 0; l < 32; ++l) {
      const int8_t* q = L + h + l;  // q[0], q[32], q[64], q[96]: the four quarters
      ql[l] = static_cast<uint8_t>((q[0] & 0xF) | (q[64] & 0xF) << 4);
      ql[l + 32] = static_cast<uint8_t>((q[32] & 0xF) | (q[96] & 0xF) << 4);
      qh[l] = static_cast<uint8_t>((q[0] >> 4) | (q[32] >> 4) << 2 | (q[64] >> 4) << 4 | (q[96] >> 4) << 6);
    }
  }
}

void decode_q8_K(const uint8_t* b, float* y) {
  const float d = load_f32(b + kQ8D);
  for (int e = 0; e < kQK_K; ++e) y[e] = d * static_cast<int8_t>(b[kQ8Qs + e]);
}

void encode_q8_K(const float* x, uint8_t* b) {
  // ggml leaves bsums unset for an all-zero block; they are zeroed here so the output is deterministic.
  std::memset(b, 0, 292);
  const float max = signed_absmax(x, kQK_K);
  if (!max) return;
  const float iscale = -127.f / max;
  auto* qs = reinterpret_cast<int8_t*>(b + kQ8Qs);
  for (int e = 0; e < kQK_K; ++e) qs[e] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[e])));
  for (int j = 0; j < 16; ++j) {
    int sum = 0;
    for (int i = 0; i < 16; ++i) sum += qs[16 * j + i];
    store_u16(b + kQ8Bsums + 2 * j, static_cast<uint16_t>(sum));
  }
  store_f32(b + kQ8D, 1 / iscale);
}

}  // namespace wgllm::quant::blocks
