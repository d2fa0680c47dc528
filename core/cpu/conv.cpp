// CPU convolution: im2col + GEMM (contract: core/kernels/conv.h).
//
// Per sample n, the input is unfolded into col (C·R·S, P·Q), row (c·R + r)·S + s holding the
// taps x[c, p·sh − ph + r·dh, q·sw − pw + s·dw] (zero outside). Group g owns the contiguous
// row block [g·Cg·R·S, (g+1)·Cg·R·S) of col and the weight block w[g·Og : (g+1)·Og], so every
// product is one GEMM batched over the groups (cpu::matmul_fwd, Eigen):
//   fwd:        y_n[g]  (Og, PQ)    = w[g] (Og, CgRS) · col_n[g] (CgRS, PQ)
//   bwd_data:   dcol[g] (CgRS, PQ)  = w[g]ᵀ · dy_n[g] (Og, PQ), then col2im adds dcol into dx_n
//   bwd_weight: dw[g]   (Og, CgRS) += dy_n[g] (Og, PQ) · col_n[g]ᵀ, n in increasing order
// A 1x1 kernel with stride 1 and no padding needs no unfolding: col_n is x_n itself.
//
// Threads (core/parallel.h): the forward and backward-data split the batch, one sample per work
// item with a column buffer per chunk, so each sample's bits are those of a serial run. The
// backward-weight sums over samples: the batch is cut into fixed blocks of kWeightBlock samples,
// each block accumulates its samples in increasing n into a partial dw, and the partials are added
// in block order. The partition depends on N only, so dw has the same bits at every thread count.
#include "core/kernels/conv.h"

#include <algorithm>
#include <vector>

#include "core/kernels/matmul.h"
#include "core/parallel.h"

namespace idem::cpu {

namespace {

constexpr int64_t kWeightBlock = 16;  // samples per partial dw in the backward-weight

// Samples per chunk of the forward and backward-data: about 2^18 multiply-adds per chunk.
int64_t sample_grain(const ConvShape& s) {
  return grain_for(std::max<int64_t>(1, s.O * s.P * s.Q * (s.C / s.p.groups) * s.R * s.S), int64_t(1) << 18);
}

bool is_pointwise(const ConvShape& s) {
  return s.R == 1 && s.S == 1 && s.p.stride_h == 1 && s.p.stride_w == 1 && s.p.pad_h == 0 &&
         s.p.pad_w == 0 && s.P == s.H && s.Q == s.W;
}

// col (C·R·S, P·Q) <- unfold(x_n (C, H, W)).
template <typename T>
void im2col(T* col, const T* x, const ConvShape& s) {
  const ConvParams& p = s.p;
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t k = 0; k < s.S; ++k) {
        T* row = col + ((c * s.R + r) * s.S + k) * s.P * s.Q;
        for (int64_t oh = 0; oh < s.P; ++oh) {
          const int64_t h = oh * p.stride_h - p.pad_h + r * p.dilation_h;
          T* dst = row + oh * s.Q;
          if (h < 0 || h >= s.H) {
            std::fill(dst, dst + s.Q, T(0));
            continue;
          }
          const T* src = x + (c * s.H + h) * s.W;
          for (int64_t ow = 0; ow < s.Q; ++ow) {
            const int64_t w = ow * p.stride_w - p.pad_w + k * p.dilation_w;
            dst[ow] = (w >= 0 && w < s.W) ? src[w] : T(0);
          }
        }
      }
}

// dx_n (C, H, W) <- fold(col): every tap adds its column entry back to the pixel it read.
template <typename T>
void col2im(T* dx, const T* col, const ConvShape& s) {
  const ConvParams& p = s.p;
  std::fill(dx, dx + s.C * s.H * s.W, T(0));
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t k = 0; k < s.S; ++k) {
        const T* row = col + ((c * s.R + r) * s.S + k) * s.P * s.Q;
        for (int64_t oh = 0; oh < s.P; ++oh) {
          const int64_t h = oh * p.stride_h - p.pad_h + r * p.dilation_h;
          if (h < 0 || h >= s.H) continue;
          T* dst = dx + (c * s.H + h) * s.W;
          const T* src = row + oh * s.Q;
          for (int64_t ow = 0; ow < s.Q; ++ow) {
            const int64_t w = ow * p.stride_w - p.pad_w + k * p.dilation_w;
            if (w >= 0 && w < s.W) dst[w] += src[ow];
          }
        }
      }
}

// The per-group GEMM shapes (batched over groups; see the file comment).
MatmulParams group_gemm(int64_t groups, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                        int64_t sa, int64_t sb, int64_t sc, double beta) {
  MatmulParams m;
  m.trans_a = ta;
  m.trans_b = tb;
  m.batch = groups;
  m.M = M;
  m.N = N;
  m.K = K;
  m.stride_a = sa;
  m.stride_b = sb;
  m.stride_c = sc;
  m.beta = beta;
  return m;
}

template <typename T>
void fwd_typed(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
               const ConvShape& s) {
  const int64_t G = s.p.groups, Og = s.Og(), CgRS = s.Cg() * s.R * s.S, PQ = s.P * s.Q;
  const bool pointwise = is_pointwise(s);
  const MatmulParams m =
      group_gemm(G, Og, PQ, CgRS, false, false, Og * CgRS, CgRS * PQ, Og * PQ, 0.0);
  const T* b = bias.defined() ? bias.data<T>() : nullptr;
  parallel_for(s.N, sample_grain(s), [&](int64_t lo, int64_t hi) {
    Tensor col = pointwise ? Tensor() : empty({s.C * s.R * s.S, PQ}, x.options());
    for (int64_t n = lo; n < hi; ++n) {
      const Tensor xn = x.slice0(n, n + 1);
      if (!pointwise) im2col(col.data<T>(), xn.data<T>(), s);
      matmul_fwd(y.slice0(n, n + 1), w, pointwise ? xn : col, m);
      if (!b) continue;
      T* out = y.data<T>() + n * s.O * PQ;
      for (int64_t o = 0; o < s.O; ++o)
        for (int64_t i = 0; i < PQ; ++i) out[o * PQ + i] += b[o];
    }
  });
}

template <typename T>
void bwd_data_typed(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvShape& s) {
  const int64_t G = s.p.groups, Og = s.Og(), CgRS = s.Cg() * s.R * s.S, PQ = s.P * s.Q;
  const bool pointwise = is_pointwise(s);
  // dcol[g] = w[g]ᵀ · dy_n[g] : (CgRS, Og)(Og, PQ) -> (CgRS, PQ)
  const MatmulParams m =
      group_gemm(G, CgRS, PQ, Og, true, false, Og * CgRS, Og * PQ, CgRS * PQ, 0.0);
  parallel_for(s.N, sample_grain(s), [&](int64_t lo, int64_t hi) {
    Tensor dcol = pointwise ? Tensor() : empty({s.C * s.R * s.S, PQ}, dx.options());
    for (int64_t n = lo; n < hi; ++n) {
      const Tensor dxn = dx.slice0(n, n + 1);
      // Pointwise: dcol is dx_n itself (no fold needed).
      matmul_fwd(pointwise ? dxn : dcol, w, dy.slice0(n, n + 1), m);
      if (!pointwise) col2im(dxn.data<T>(), dcol.data<T>(), s);
    }
  });
}

template <typename T>
void bwd_weight_typed(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvShape& s) {
  const int64_t G = s.p.groups, Og = s.Og(), CgRS = s.Cg() * s.R * s.S, PQ = s.P * s.Q;
  if (s.N == 0) {
    T* p = dw.data<T>();
    std::fill(p, p + dw.numel(), T(0));
    return;
  }
  const bool pointwise = is_pointwise(s);
  const int64_t blocks = (s.N + kWeightBlock - 1) / kWeightBlock;
  // Block 0 writes dw itself; block k > 0 writes partial[k - 1]. One block: the serial loop.
  std::vector<Tensor> partial(size_t(blocks - 1));
  for (auto& t : partial) t = empty(dw.shape(), dw.options());
  parallel_for(blocks, 1, [&](int64_t lo, int64_t hi) {
    Tensor col = pointwise ? Tensor() : empty({s.C * s.R * s.S, PQ}, x.options());
    for (int64_t blk = lo; blk < hi; ++blk) {
      const Tensor& target = blk == 0 ? dw : partial[size_t(blk - 1)];
      const int64_t n0 = blk * kWeightBlock, n1 = std::min(s.N, n0 + kWeightBlock);
      for (int64_t n = n0; n < n1; ++n) {
        const Tensor xn = x.slice0(n, n + 1);
        if (!pointwise) im2col(col.data<T>(), xn.data<T>(), s);
        // dw[g] (+)= dy_n[g] · col_n[g]ᵀ : (Og, PQ)(PQ, CgRS) -> (Og, CgRS); a block's first
        // sample overwrites.
        const MatmulParams m = group_gemm(G, Og, CgRS, PQ, false, true, Og * PQ, CgRS * PQ,
                                          Og * CgRS, n == n0 ? 0.0 : 1.0);
        matmul_fwd(target, dy.slice0(n, n + 1), pointwise ? xn : col, m);
      }
    }
  });
  // dw = ((block 0 + block 1) + block 2) + ...: the fixed order.
  T* out = dw.data<T>();
  const int64_t count = dw.numel();
  for (const Tensor& t : partial) {
    const T* p = t.data<T>();
    for (int64_t i = 0; i < count; ++i) out[i] += p[i];
  }
}

}  // namespace

void conv2d_fwd(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
                const ConvShape& s) {
  IDEM_DISPATCH_FLOAT(x.dtype(), "conv2d", [&] { fwd_typed<scalar_t>(y, x, w, bias, s); });
}

void conv2d_bwd_data(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvShape& s) {
  IDEM_DISPATCH_FLOAT(dy.dtype(), "conv2d_backward_data",
                      [&] { bwd_data_typed<scalar_t>(dx, dy, w, s); });
}

void conv2d_bwd_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvShape& s) {
  IDEM_DISPATCH_FLOAT(dy.dtype(), "conv2d_backward_weight",
                      [&] { bwd_weight_typed<scalar_t>(dw, dy, x, s); });
}

}  // namespace idem::cpu
