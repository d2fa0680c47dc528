// The hand GEMM's narrow-product kernel (cuda/kernels/matmul_narrow.h).
//
// Why a kernel of its own: for C = A·B with A 65 536 x 64 and N = 3 (the sage first layer's
// input gradient) the work is reading A once (16.8 MB, about 5.6 µs at the H100's 3 TB/s), but
// the 128x64 tile computes 64 columns for 3 and the small kernel re-reads a row of A for each
// of its 3 outputs: 20-26 µs a launch, against 12-19 µs for cuBLAS (docs/performance.md).
//
// How: a block takes 128 rows, one thread a row. B (at most 256 x 4) is copied to shared memory
// once. A is staged in chunks of 64 columns: the block's threads load the 128 x 64 chunk with
// coalesced 16-byte loads (16 consecutive threads read one row's 256 bytes) into a row-major
// shared array padded to 65 floats a row, so the row-per-thread reads that follow hit 32
// different banks. Each thread then runs its N sums over the chunk's k in order. The sums are
// the same fmaf chains as the other kernels', so the routing does not change the bits (but for
// the sign of an all-zero sum, which a tile's zero padding can turn from -0 into +0).
#include "cuda/kernels/matmul_narrow.h"

#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

constexpr int kPitch = kNarrowKc + 1;  // shared row pitch: 65 floats, conflict-free row reads

template <int N, bool TB>
__global__ void __launch_bounds__(kNarrowRows) matmul_narrow_kernel(NarrowGemm g) {
  __shared__ float bs[kNarrowMaxK * N];  // bs[k * N + n] = op(B)[k][n]
  __shared__ float as[kNarrowRows * kPitch];
  const int K = g.K, t = threadIdx.x;
  for (int i = t; i < K * N; i += kNarrowRows) {
    const int k = i / N, n = i - k * N;
    bs[i] = TB ? __ldg(g.b + static_cast<int64_t>(n) * K + k) : __ldg(g.b + i);
  }
  const int row0 = blockIdx.x * kNarrowRows;
  const int rows = min(kNarrowRows, g.M - row0);
  float acc[N];
#pragma unroll
  for (int n = 0; n < N; ++n) acc[n] = 0.f;
  for (int k0 = 0; k0 < K; k0 += kNarrowKc) {
    const int kc = min(kNarrowKc, K - k0);  // a multiple of 4 (K is)
    const int quads = kc / 4;
    __syncthreads();  // the previous chunk is consumed (and, the first time, bs is written)
    for (int i = t; i < rows * (kNarrowKc / 4); i += kNarrowRows) {
      const int r = i / (kNarrowKc / 4), q = i - r * (kNarrowKc / 4);
      if (q >= quads) continue;
      const float4 v = __ldg(reinterpret_cast<const float4*>(
          g.a + static_cast<int64_t>(row0 + r) * K + k0 + 4 * q));
      float* s = as + r * kPitch + 4 * q;
      s[0] = v.x, s[1] = v.y, s[2] = v.z, s[3] = v.w;
    }
    __syncthreads();
    if (t < rows) {
      const float* arow = as + t * kPitch;
      const float* bk = bs + k0 * N;
#pragma unroll 4
      for (int k = 0; k < kc; ++k) {
        const float a = arow[k];
#pragma unroll
        for (int n = 0; n < N; ++n) acc[n] = fmaf(a, bk[k * N + n], acc[n]);
      }
    }
  }
  if (t >= rows) return;
  float* c = g.c + static_cast<int64_t>(row0 + t) * N;
#pragma unroll
  for (int n = 0; n < N; ++n) {
    float o = g.alpha * acc[n];
    if (g.beta != 0.f) o = fmaf(g.beta, c[n], o);
    c[n] = o;
  }
}

template <int N>
void launch_n(const NarrowGemm& g, cudaStream_t stream, const char* op) {
  const unsigned blocks = static_cast<unsigned>((g.M + kNarrowRows - 1) / kNarrowRows);
  if (g.trans_b) {
    matmul_narrow_kernel<N, true><<<blocks, kNarrowRows, 0, stream>>>(g);
    IDEM_LAUNCH_CHECK(op);
  } else {
    matmul_narrow_kernel<N, false><<<blocks, kNarrowRows, 0, stream>>>(g);
    IDEM_LAUNCH_CHECK(op);
  }
}

}  // namespace

void launch_matmul_narrow(const NarrowGemm& g, cudaStream_t stream, const char* op) {
  switch (g.N) {
    case 1: launch_n<1>(g, stream, op); break;
    case 2: launch_n<2>(g, stream, op); break;
    case 3: launch_n<3>(g, stream, op); break;
    default: launch_n<4>(g, stream, op); break;
  }
}

}  // namespace idem::cuda
