// CPU matmul: Eigen GEMMs over RowMajor maps of the contiguous buffers. The only kernel file that
// includes Eigen's dense module, so its compile cost is paid once; with IDEM_CPU_AVX2 on it is
// compiled for AVX2 + FMA, as is the other Eigen user, data/panel_method.cpp (CMakeLists.txt),
// so no Eigen template exists in two instruction sets.
//
// Threads: Eigen itself runs single-threaded here (no OpenMP); our pool (core/parallel.h) splits
// each product into tiles of C along its longer side, one Eigen GEMM per tile. The tiling depends
// on (M, N, K) only, never on the thread count, and Eigen's own blocking depends on the tile's
// shape only, so C has the same bits at 1 and at N threads. Products under kSplitMacs
// multiply-adds stay one GEMM, as before threads existed.
#include "core/kernels/matmul.h"

#include <algorithm>

#include <Eigen/Dense>

#include "core/parallel.h"

namespace idem::cpu {

namespace {

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMap = Eigen::Map<const RowMat<T>>;
template <typename T>
using MutMap = Eigen::Map<RowMat<T>>;

// C = alpha·op(A)·op(B) + beta·C for one batch entry. The product expression is evaluated
// straight into C (noalias): C never overlaps A or B (the L1 op allocates it fresh).
template <typename T, typename MatC, typename OpA, typename OpB>
void gemm_one(MatC&& c, const OpA& a, const OpB& b, T alpha, T beta) {
  if (beta == T(0)) {
    // beta = 0 overwrites: C may hold garbage (even NaN), so it must not be read.
    c.noalias() = alpha * (a * b);
  } else {
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * (a * b);
  }
}

constexpr int64_t kSplitMacs = int64_t(1) << 20;  // below this a product is one GEMM
constexpr int64_t kTileMacs = int64_t(1) << 19;   // about this much work per tile above it
constexpr int64_t kMinTile = 64;                  // rows or columns of C per tile, at least

// How one product's C is cut: `tiles` blocks of `size` rows (split_rows) or columns.
struct Tiling {
  bool split_rows = true;
  int64_t size = 0, tiles = 1;
};

Tiling tiling_for(const MatmulParams& p) {
  Tiling t;
  t.split_rows = p.M >= p.N;
  const int64_t side = t.split_rows ? p.M : p.N;
  t.size = side;
  const int64_t macs = p.M * p.N * p.K;
  if (macs < kSplitMacs || side < 2 * kMinTile) return t;
  const int64_t per_tile = (side * kTileMacs + macs - 1) / macs;  // side units per tile
  t.size = std::max<int64_t>(kMinTile, (per_tile + 15) / 16 * 16);
  t.tiles = (side + t.size - 1) / t.size;
  return t;
}

template <typename T>
void matmul_typed(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* pc = c.data<T>();
  const T alpha = static_cast<T>(p.alpha);
  const T beta = static_cast<T>(p.beta);
  // Stored shapes: A is (M,K) or (K,M) when trans_a; B is (K,N) or (N,K) when trans_b.
  const int64_t a_rows = p.trans_a ? p.K : p.M, a_cols = p.trans_a ? p.M : p.K;
  const int64_t b_rows = p.trans_b ? p.N : p.K, b_cols = p.trans_b ? p.K : p.N;
  const Tiling tl = tiling_for(p);
  const int64_t items = p.batch * tl.tiles;
  const int64_t grain = tl.tiles > 1 ? 1 : grain_for(p.M * p.N * std::max<int64_t>(p.K, 1), kSplitMacs);
  parallel_for(items, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t i = item / tl.tiles, tile = item % tl.tiles;
      MutMap<T> cm(pc + i * p.stride_c, p.M, p.N);
      const int64_t r0 = tl.split_rows ? tile * tl.size : 0;
      const int64_t c0 = tl.split_rows ? 0 : tile * tl.size;
      const int64_t rows = tl.split_rows ? std::min(tl.size, p.M - r0) : p.M;
      const int64_t cols = tl.split_rows ? p.N : std::min(tl.size, p.N - c0);
      auto cb = cm.block(r0, c0, rows, cols);
      if (p.K == 0) {
        // An empty inner dimension sums nothing: C = beta·C (beta = 0 -> zeros).
        if (beta == T(0))
          cb.setZero();
        else
          cb *= beta;
        continue;
      }
      ConstMap<T> am(pa + i * p.stride_a, a_rows, a_cols);
      ConstMap<T> bm(pb + i * p.stride_b, b_rows, b_cols);
      // op(A) rows [r0, r0+rows) times op(B) columns [c0, c0+cols).
      if (!p.trans_a && !p.trans_b)
        gemm_one<T>(cb, am.middleRows(r0, rows), bm.middleCols(c0, cols), alpha, beta);
      else if (p.trans_a && !p.trans_b)
        gemm_one<T>(cb, am.middleCols(r0, rows).transpose(), bm.middleCols(c0, cols), alpha, beta);
      else if (!p.trans_a && p.trans_b)
        gemm_one<T>(cb, am.middleRows(r0, rows), bm.middleRows(c0, cols).transpose(), alpha, beta);
      else
        gemm_one<T>(cb, am.middleCols(r0, rows).transpose(), bm.middleRows(c0, cols).transpose(),
                    alpha, beta);
    }
  });
}

}  // namespace

void matmul_fwd(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p) {
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;  // nothing to write
  require_cpu_features();
  if (c.dtype() == DType::f32 && cpu_gemm() == CpuGemm::packed && sgemm_packed_available()) {
    sgemm_packed(a.data<float>(), b.data<float>(), c.data<float>(), p);
    return;
  }
  IDEM_DISPATCH_FLOAT(c.dtype(), "matmul", [&] { matmul_typed<scalar_t>(c, a, b, p); });
}

}  // namespace idem::cpu
