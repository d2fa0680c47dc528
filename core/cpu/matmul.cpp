// CPU matmul: one Eigen GEMM per batch entry over RowMajor maps of the contiguous buffers.
// The only file that includes Eigen's dense module, so its compile cost is paid once.
#include "core/kernels/matmul.h"

#include <Eigen/Dense>

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
template <typename T, typename OpA, typename OpB>
void gemm_one(MutMap<T>& c, const OpA& a, const OpB& b, T alpha, T beta) {
  if (beta == T(0)) {
    // beta = 0 overwrites: C may hold garbage (even NaN), so it must not be read.
    c.noalias() = alpha * (a * b);
  } else {
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * (a * b);
  }
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
  for (int64_t i = 0; i < p.batch; ++i) {
    MutMap<T> cm(pc + i * p.stride_c, p.M, p.N);
    if (p.K == 0) {
      // An empty inner dimension sums nothing: C = beta·C (beta = 0 -> zeros).
      if (beta == T(0))
        cm.setZero();
      else
        cm *= beta;
      continue;
    }
    ConstMap<T> am(pa + i * p.stride_a, a_rows, a_cols);
    ConstMap<T> bm(pb + i * p.stride_b, b_rows, b_cols);
    if (!p.trans_a && !p.trans_b)
      gemm_one<T>(cm, am, bm, alpha, beta);
    else if (p.trans_a && !p.trans_b)
      gemm_one<T>(cm, am.transpose(), bm, alpha, beta);
    else if (!p.trans_a && p.trans_b)
      gemm_one<T>(cm, am, bm.transpose(), alpha, beta);
    else
      gemm_one<T>(cm, am.transpose(), bm.transpose(), alpha, beta);
  }
}

}  // namespace

void matmul_fwd(const Tensor& c, const Tensor& a, const Tensor& b, const MatmulParams& p) {
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;  // nothing to write
  IDEM_DISPATCH_FLOAT(c.dtype(), "matmul", [&] { matmul_typed<scalar_t>(c, a, b, p); });
}

}  // namespace idem::cpu
