// A measurement aid, not part of the engine (which runs every kernel as WGSL through WebGPU): the prefill
// GEMM's int8 inner loop of src/kernels/matmul.wgsl (INT8 path, one scale per 32-element chunk as Q4_0 has),
// written in CUDA, so that NVIDIA's own compiler shows how fast the same loop can run on a card and what
// machine code it needs. Y[M, N] = sum over chunks of (dx * dw) * (the chunk's integer dot product).
// Inputs are constant fills: the timings are the point, not the values.
// Build and run on a CUDA machine (docs/perf.md, "Prefill GEMM: the same loop in CUDA"):
//   nvcc -O3 -arch=sm_90 -std=c++17 -o dp4a_loop tools/dp4a_loop.cu && ./dp4a_loop
//   cuobjdump -sass dp4a_loop     (the instructions of each variant)
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

// MODE 0: each step loads global -> shared between two barriers (no overlap).
// MODE 1: wgllm's matmul.wgsl: the next step's global loads go to registers before the current step's
//         arithmetic, then two barriers around the shared-memory stores.
// MODE 2: as 1 with two shared buffers: one barrier per step.
// MODE 3: the arithmetic alone (shared tiles loaded once).
template <int BM, int BN, int TM, int TN, int KC, int MODE, int MINB>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), MINB)
    gemm(const uint4* xq, const float4* xs, const uint4* wq, const float4* ws, float* y, int M, int N,
         int K) {
  constexpr int WG = (BM / TM) * (BN / TN);
  constexpr int SV = 2 * KC + 1;
  constexpr int NB = MODE == 2 ? 2 : 1;
  constexpr int LX = (BM * KC + WG - 1) / WG, LW = (BN * KC + WG - 1) / WG;
  __shared__ uint4 xt[NB][BM * SV];
  __shared__ uint4 wt[NB][BN * SV];
  __shared__ float4 xst[NB][BM * KC];
  __shared__ float4 wst[NB][BN * KC];
  const int tid = threadIdx.x;
  const int tm = tid / (BN / TN), tn = tid % (BN / TN);
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int chunks = K / 32, steps = K / (32 * KC);
  float acc[TM * TN] = {};
  uint4 xa[LX], xb[LX], wa[LW], wb[LW];
  float4 xsr[LX], wsr[LW];
  auto gload = [&](int kt) {
#pragma unroll
    for (int l = 0; l < LX; l++) {
      int i = tid + l * WG;
      if (i < BM * KC) {
        int g = (m0 + i / KC) * chunks + kt * KC + i % KC;
        xa[l] = xq[2 * g];
        xb[l] = xq[2 * g + 1];
        xsr[l] = xs[g];
      }
    }
#pragma unroll
    for (int l = 0; l < LW; l++) {
      int i = tid + l * WG;
      if (i < BN * KC) {
        int g = (n0 + i / KC) * chunks + kt * KC + i % KC;
        wa[l] = wq[2 * g];
        wb[l] = wq[2 * g + 1];
        wsr[l] = ws[g];
      }
    }
  };
  auto sstore = [&](int b) {
#pragma unroll
    for (int l = 0; l < LX; l++) {
      int i = tid + l * WG;
      if (i < BM * KC) {
        int at = (i / KC) * SV + 2 * (i % KC);
        xt[b][at] = xa[l];
        xt[b][at + 1] = xb[l];
        xst[b][i] = xsr[l];
      }
    }
#pragma unroll
    for (int l = 0; l < LW; l++) {
      int i = tid + l * WG;
      if (i < BN * KC) {
        int at = (i / KC) * SV + 2 * (i % KC);
        wt[b][at] = wa[l];
        wt[b][at + 1] = wb[l];
        wst[b][i] = wsr[l];
      }
    }
  };
  auto compute = [&](int b) {
#pragma unroll
    for (int c = 0; c < KC; c++) {
      uint4 wlo[TN], whi[TN];
      float wsc[TN];
#pragma unroll
      for (int j = 0; j < TN; j++) {
        int n = tn + j * (BN / TN);
        wlo[j] = wt[b][n * SV + 2 * c];
        whi[j] = wt[b][n * SV + 2 * c + 1];
        wsc[j] = wst[b][n * KC + c].x;
      }
#pragma unroll
      for (int i = 0; i < TM; i++) {
        int m = tm + i * (BM / TM);
        uint4 xlo = xt[b][m * SV + 2 * c], xhi = xt[b][m * SV + 2 * c + 1];
        float d = xst[b][m * KC + c].x;
        int s[TN];
#pragma unroll
        for (int j = 0; j < TN; j++) s[j] = 0x4B400000;
#define STEP(F, A, W) \
  _Pragma("unroll") for (int j = 0; j < TN; j++) s[j] = __dp4a((int)A.F, (int)W[j].F, s[j]);
        STEP(x, xlo, wlo)
        STEP(y, xlo, wlo) STEP(z, xlo, wlo) STEP(w, xlo, wlo) STEP(x, xhi, whi) STEP(y, xhi, whi)
            STEP(z, xhi, whi) STEP(w, xhi, whi)
#undef STEP
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i * TN + j] =
                    fmaf(__int_as_float(s[j]) - 12582912.0f, d * wsc[j], acc[i * TN + j]);
      }
    }
  };
  if (MODE == 0 || MODE == 3) {
    for (int kt = 0; kt < steps; kt++) {
      if (MODE == 0 || kt == 0) {
        gload(kt);
        __syncthreads();
        sstore(0);
        __syncthreads();
      }
      compute(0);
    }
  } else if (MODE == 1) {
    for (int kt = 0; kt <= steps; kt++) {
      if (kt < steps) gload(kt);
      if (kt > 0) compute(0);
      if (kt < steps) {
        __syncthreads();
        sstore(0);
        __syncthreads();
      }
    }
  } else {
    gload(0);
    sstore(0);
    __syncthreads();
    for (int kt = 0; kt < steps; kt++) {
      if (kt + 1 < steps) gload(kt + 1);
      compute(kt & 1);
      if (kt + 1 < steps) sstore((kt + 1) & 1);
      __syncthreads();
    }
  }
#pragma unroll
  for (int i = 0; i < TM; i++)
#pragma unroll
    for (int j = 0; j < TN; j++) y[(m0 + tm + i * (BM / TM)) * N + n0 + tn + j * (BN / TN)] = acc[i * TN + j];
}

template <int BM, int BN, int TM, int TN, int KC, int MODE, int MINB = 1>
void run(const char* name, int M, int N, int K, const uint4* xq, const float4* xs, const uint4* wq,
         const float4* ws, float* y) {
  dim3 grid(N / BN, M / BM);
  int wg = (BM / TM) * (BN / TN);
  auto k = gemm<BM, BN, TM, TN, KC, MODE, MINB>;
  for (int i = 0; i < 200; i++) k<<<grid, wg>>>(xq, xs, wq, ws, y, M, N, K);  // warm the clock up
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> t;
  for (int r = 0; r < 9; r++) {
    cudaEventRecord(a);
    for (int i = 0; i < 20; i++) k<<<grid, wg>>>(xq, xs, wq, ws, y, M, N, K);
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms / 20);
  }
  std::sort(t.begin(), t.end());
  double us = t[4] * 1e3, tmacs = double(M) * N * K / (us * 1e-6) / 1e12;
  cudaFuncAttributes attr;
  cudaFuncGetAttributes(&attr, k);
  std::printf("%-34s M %d N %d K %d: %8.1f us  %5.1f T MAC/s  %3.0f%% of 63.6  regs %d  local %zu B\n", name,
              M, N, K, us, tmacs, 100 * tmacs / 63.6, attr.numRegs, attr.localSizeBytes);
}

int main() {
  const int M = 512, N = 28672, K = 4096;  // the 8B's gate|up product
  size_t cx = size_t(M) * K / 32, cw = size_t(N) * K / 32;
  uint4 *xq, *wq;
  float4 *xs, *ws;
  float* y;
  cudaMalloc(&xq, cx * 32);
  cudaMalloc(&wq, cw * 32);
  cudaMalloc(&xs, cx * 16);
  cudaMalloc(&ws, cw * 16);
  cudaMalloc(&y, size_t(M) * N * 4);
  cudaMemset(xq, 0x11, cx * 32);
  cudaMemset(wq, 0x07, cw * 32);
  cudaMemset(xs, 0, cx * 16);
  cudaMemset(ws, 0, cw * 16);
  run<128, 64, 8, 4, 2, 3>("128x64 8x4 kc2 arithmetic alone", M, N, K, xq, xs, wq, ws, y);
  run<128, 64, 8, 4, 2, 0>("128x64 8x4 kc2 sync loads", M, N, K, xq, xs, wq, ws, y);
  run<128, 64, 8, 4, 2, 1>("128x64 8x4 kc2 wgllm", M, N, K, xq, xs, wq, ws, y);
  run<128, 64, 8, 4, 4, 1>("128x64 8x4 kc4 wgllm", M, N, K, xq, xs, wq, ws, y);
  run<128, 64, 8, 4, 2, 2>("128x64 8x4 kc2 double buffer", M, N, K, xq, xs, wq, ws, y);
  run<128, 64, 8, 4, 1, 2>("128x64 8x4 kc1 double buffer", M, N, K, xq, xs, wq, ws, y);
  run<128, 64, 8, 4, 2, 1, 2>("128x64 8x4 kc2 wgllm minb2", M, N, K, xq, xs, wq, ws, y);
  run<128, 64, 8, 4, 2, 2, 2>("128x64 8x4 kc2 dbuf minb2", M, N, K, xq, xs, wq, ws, y);
  run<64, 64, 4, 4, 2, 2, 3>("64x64 4x4 kc2 dbuf minb3", M, N, K, xq, xs, wq, ws, y);
  run<64, 64, 8, 4, 2, 2>("64x64 8x4 kc2 dbuf", M, N, K, xq, xs, wq, ws, y);
  run<64, 64, 8, 4, 2, 1>("64x64 8x4 kc2 wgllm", M, N, K, xq, xs, wq, ws, y);
  run<128, 128, 8, 8, 2, 3>("128x128 8x8 kc2 arithmetic alone", M, N, K, xq, xs, wq, ws, y);
  run<128, 128, 8, 8, 2, 1>("128x128 8x8 kc2 wgllm", M, N, K, xq, xs, wq, ws, y);
  run<128, 32, 8, 2, 2, 2>("128x32 8x2 kc2 dbuf", M, N, K, xq, xs, wq, ws, y);
  cudaError_t e = cudaGetLastError();
  std::printf("cuda: %s\n", cudaGetErrorString(e));
}
