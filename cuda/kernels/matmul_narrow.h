// The hand GEMM's kernel for narrow products (internal to cuda/kernels/matmul.cu, which routes
// to it): C (M x N) = alpha·A·op(B) + beta·C for one product with N <= 4 outputs a row, A not
// transposed and many rows — the input gradient gz·W of a layer with 1-4 inputs (the sage first
// layer: 65 536 x 64 -> 3). Both the 128x64 tile and the one-thread-per-output small kernel
// spend most of their time there on padding columns or on re-reading A per output.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace idem::cuda {

// Rows a block, threads a block (one row a thread) and the K chunk staged in shared memory.
constexpr int kNarrowRows = 128, kNarrowKc = 64;
// The shapes the kernel takes: the largest N and K (B lives in shared memory whole).
constexpr int kNarrowMaxN = 4, kNarrowMaxK = 256;

struct NarrowGemm {
  const float* a;  // M x K, row-major, rows 16-byte aligned (K % 4 == 0, aligned base)
  const float* b;  // K x N, or N x K when trans_b
  float* c;        // M x N, row-major
  int M, N, K;
  float alpha, beta;  // beta == 0 never reads C
  bool trans_b;
};

// One launch on `stream`. Each output is one fmaf chain over k = 0..K-1 in order from zero,
// then alpha·s (+ beta·C): the small kernel's bits, and the tiled kernels' but for the sign of an
// all-zero sum (matmul.cu's header). The caller checks the shape
// (N <= kNarrowMaxN, K <= kNarrowMaxK, K % 4 == 0, aligned A); `op` names it in launch errors.
void launch_matmul_narrow(const NarrowGemm& g, cudaStream_t stream, const char* op);

}  // namespace idem::cuda
