// CPU convolution: im2col + GEMM over a few samples at a time (contract: core/kernels/conv.h).
//
// A chunk of nb samples is unfolded side by side into col (C·R·S, nb·P·Q): row (c·R + r)·S + s,
// column j·PQ + p·Q + q holds the tap x[n0 + j, c, p·sh − ph + r·dh, q·sw − pw + s·dw] (zero
// outside). im2col copies, for each row (c, r, s) of col, the run of output columns whose taps
// lie inside the input (computed once per row, no per-element test), and writes zeros for the
// rest; without padding, stride or dilation (is_dense) a row is a plain P × Q window of x.
// col2im adds back the same way. nb is chosen from the shape: enough columns that one sample's
// small P·Q still makes a wide GEMM, and, except in the backward-weight, few enough that col
// stays in L2 (samples_per_chunk). Group g owns the
// contiguous row block [g·Cg·R·S, (g+1)·Cg·R·S) of col and the weight block w[g·Og : (g+1)·Og],
// so every product is one GEMM batched over the groups (cpu::matmul_fwd):
//   fwd:        Y[g]    (Og, nb·PQ)   = w[g] (Og, CgRS) · col[g] (CgRS, nb·PQ), then
//               y[n0 + j, o] = Y[o, j·PQ : (j+1)·PQ] (+ bias[o])
//   bwd_data:   dcol[g] (CgRS, nb·PQ) = w[g]ᵀ · dY[g] (Og, nb·PQ), dY gathered from dy the same
//               way; then col2im adds each sample's columns into dx_n
//   bwd_weight: dw_b[g] (Og, CgRS)    = dY[g] · col[g]ᵀ over the nb samples of chunk b
// A 1x1 kernel with stride 1 and no padding needs no unfolding: one sample at a time, col_n
// is x_n itself.
//
// Threads (core/parallel.h): chunks of samples run in parallel; a chunk's outputs belong to its
// samples alone (fwd, bwd_data). The backward-weight sums consecutive chunks into at most 16
// partial dw and adds the partials in order on the caller. The chunking depends on the shape
// only, so results have the same bits at every thread count.
#include "core/kernels/conv.h"

#include <algorithm>
#include <vector>

#include "core/kernels/matmul.h"
#include "core/parallel.h"

namespace idem::cpu {

namespace {

constexpr int64_t kColumns = 2048;  // at most about this many GEMM columns per chunk of samples
// ... and at most this many col entries (256 KiB of f32): col is written by im2col and read
// right away by the GEMM's packing, so it should stay in L2. The fmnist cnn's second layer
// (C·R·S = 250, P·Q = 64) had 32 samples (2 MiB) per chunk; with 4 (forward and backward-data
// only: see samples_per_chunk) its training step at batch 64 took 6–10 % less time on one
// thread and 12–30 % less on two (16 chunks keep two threads busy where 2 did not). In those
// two kernels each sample's outputs are computed alone, so nb does not change their bits.
constexpr int64_t kColElements = int64_t(1) << 16;

bool is_pointwise(const ConvShape& s) {
  return s.R == 1 && s.S == 1 && s.p.stride_h == 1 && s.p.stride_w == 1 && s.p.pad_h == 0 &&
         s.p.pad_w == 0 && s.P == s.H && s.Q == s.W;
}

// No padding, stride 1, dilation 1, and an output no larger than the valid one: every tap of
// every output lies inside the input (im2col and col2im need no range).
bool is_dense(const ConvShape& s) {
  const ConvParams& p = s.p;
  return p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0 &&
         p.dilation_h == 1 && p.dilation_w == 1 && s.P + s.R - 1 <= s.H && s.Q + s.S - 1 <= s.W;
}

// Samples per chunk (nb): 1 for pointwise convolutions (no unfolding), else as many as fit in
// kColumns GEMM columns and kColElements col entries, at least 1, at most N. The backward-weight
// (`weight`) leaves out the kColElements cap: its chunks set the order of dw's sum over samples
// (a chunk is one GEMM whose K runs over the chunk's samples), so capping them would change
// dw's last bits from those of earlier builds. It costs that kernel 5–10 % at batch 64 and 256
// (col out of L2); a test that trains a CNN for 40 steps and expects a 10 % effect after it
// (It3Adapt.LowersIdempotenceLossCnn) sees 0.90 instead of 0.66 with the capped chunks, so the
// bits are kept until that test stops hanging on them.
int64_t samples_per_chunk(const ConvShape& s, bool weight = false) {
  if (is_pointwise(s)) return 1;
  const int64_t PQ = std::max<int64_t>(1, s.P * s.Q);
  if (weight) return std::max<int64_t>(1, std::min(s.N, kColumns / PQ));
  const int64_t CRS = s.C * s.R * s.S;
  return std::max<int64_t>(1, std::min({s.N, kColumns / PQ, kColElements / (CRS * PQ)}));
}

// Along one axis, the outputs q in [lo, hi) whose tap q·stride + offset (offset = k·dilation −
// pad for kernel tap k) lies in [0, W), Q outputs in all: computed once per (c, r) for the rows
// and per (c, r, k) for the columns, so the copy loops below carry no bounds test (the old
// per-element test was a third of a cnn training step).
struct ValidRange {
  int64_t lo = 0, hi = 0;  // lo <= hi
};

inline ValidRange valid_columns(int64_t Q, int64_t W, int64_t stride, int64_t offset) {
  // q·stride + offset >= 0  <=>  q >= ceil(−offset / stride); < W  <=>  q <= floor((W − 1 − offset) / stride)
  auto ceil_div = [](int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); };
  auto floor_div = [](int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
  ValidRange v;
  v.lo = std::clamp<int64_t>(ceil_div(-offset, stride), 0, Q);
  v.hi = std::clamp<int64_t>(floor_div(W - 1 - offset, stride) + 1, v.lo, Q);
  return v;
}

// d[0, n) = s[0, n) and d[0, n) += s[0, n), eight at a time: a fixed-length inner loop the
// compiler turns into a few vector moves, where a loop of unknown length pays a prologue and an
// epilogue per row (the fmnist cnn's second convolution has rows of 8).
template <typename T>
inline void copy_run(T* d, const T* s, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) d[i + j] = s[i + j];
  for (; i < n; ++i) d[i] = s[i];
}

template <typename T>
inline void add_run(T* d, const T* s, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) d[i + j] += s[i + j];
  for (; i < n; ++i) d[i] += s[i];
}

// col[:, j·PQ ...] (C·R·S rows of stride ld) <- unfold(x_n (C, H, W)). Every entry is written
// once: zeros where the tap falls into the padding, else a copy (a contiguous one at stride 1).
template <typename T>
void im2col(T* col, int64_t ld, const T* x, const ConvShape& s) {
  const ConvParams& p = s.p;
  const int64_t sw = p.stride_w, Q = s.Q;
  if (is_dense(s)) {  // no padding, stride 1, dilation 1: row (c, r, k) is a P × Q window of x
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t k = 0; k < s.S; ++k) {
          T* dst = col + ((c * s.R + r) * s.S + k) * ld;
          const T* src = x + (c * s.H + r) * s.W + k;
          for (int64_t oh = 0; oh < s.P; ++oh, dst += Q, src += s.W) copy_run(dst, src, Q);
        }
    return;
  }
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r) {
      const int64_t offh = r * p.dilation_h - p.pad_h;  // h = oh·sh + offh
      const ValidRange vh = valid_columns(s.P, s.H, p.stride_h, offh);
      for (int64_t k = 0; k < s.S; ++k) {
        T* row = col + ((c * s.R + r) * s.S + k) * ld;
        const int64_t off = k * p.dilation_w - p.pad_w;  // w = q·sw + off
        const ValidRange v = valid_columns(Q, s.W, sw, off);
        std::fill(row, row + vh.lo * Q, T(0));
        std::fill(row + vh.hi * Q, row + s.P * Q, T(0));
        for (int64_t oh = vh.lo; oh < vh.hi; ++oh) {
          T* dst = row + oh * Q;
          const T* src = x + (c * s.H + oh * p.stride_h + offh) * s.W;
          if (v.lo > 0) std::fill(dst, dst + v.lo, T(0));
          if (v.hi < Q) std::fill(dst + v.hi, dst + Q, T(0));
          if (sw == 1) {
            copy_run(dst + v.lo, src + v.lo + off, v.hi - v.lo);
          } else {
            for (int64_t ow = v.lo; ow < v.hi; ++ow) dst[ow] = src[ow * sw + off];
          }
        }
      }
    }
}

// dx_n (C, H, W) <- fold(col[:, j·PQ ...]): every tap adds its column entry back to the pixel
// it read, taps in the same (c, r, k, oh, ow) order as always.
template <typename T>
void col2im(T* dx, const T* col, int64_t ld, const ConvShape& s) {
  const ConvParams& p = s.p;
  const int64_t sw = p.stride_w, Q = s.Q;
  std::fill(dx, dx + s.C * s.H * s.W, T(0));
  if (is_dense(s)) {  // the window of im2col's fast path, added back
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t k = 0; k < s.S; ++k) {
          const T* src = col + ((c * s.R + r) * s.S + k) * ld;
          T* dst = dx + (c * s.H + r) * s.W + k;
          for (int64_t oh = 0; oh < s.P; ++oh, dst += s.W, src += Q) add_run(dst, src, Q);
        }
    return;
  }
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r) {
      const int64_t offh = r * p.dilation_h - p.pad_h;
      const ValidRange vh = valid_columns(s.P, s.H, p.stride_h, offh);
      for (int64_t k = 0; k < s.S; ++k) {
        const T* row = col + ((c * s.R + r) * s.S + k) * ld;
        const int64_t off = k * p.dilation_w - p.pad_w;
        const ValidRange v = valid_columns(Q, s.W, sw, off);
        for (int64_t oh = vh.lo; oh < vh.hi; ++oh) {
          T* dst = dx + (c * s.H + oh * p.stride_h + offh) * s.W;
          const T* src = row + oh * Q;
          if (sw == 1) {
            add_run(dst + v.lo + off, src + v.lo, v.hi - v.lo);
          } else {
            // Taps of one row never hit the same pixel twice (q ↦ q·sw + off is one-to-one).
            for (int64_t ow = v.lo; ow < v.hi; ++ow) dst[ow * sw + off] += src[ow];
          }
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

// One chunk of samples [n0, n0 + nb).
struct Chunk {
  int64_t n0 = 0, nb = 0;
};

// Calls f(chunk) for every chunk of nb samples, chunks in parallel.
template <typename F>
void for_each_chunk(const ConvShape& s, int64_t nb, F&& f) {
  const int64_t chunks = (s.N + nb - 1) / nb;
  parallel_for(chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) f(Chunk{c * nb, std::min(nb, s.N - c * nb)});
  });
}

template <typename T>
void fwd_typed(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
               const ConvShape& s) {
  const int64_t G = s.p.groups, Og = s.Og(), CgRS = s.Cg() * s.R * s.S, PQ = s.P * s.Q;
  const bool pointwise = is_pointwise(s);
  const int64_t nb = samples_per_chunk(s);
  const T* b = bias.defined() ? bias.data<T>() : nullptr;
  for_each_chunk(s, nb, [&](Chunk ch) {
    const int64_t cols = ch.nb * PQ;
    if (pointwise) {  // y_n[g] = w[g] · x_n[g] straight into y
      const MatmulParams m =
          group_gemm(G, Og, PQ, CgRS, false, false, Og * CgRS, CgRS * PQ, Og * PQ, 0.0);
      matmul_fwd(y.slice0(ch.n0, ch.n0 + 1), w, x.slice0(ch.n0, ch.n0 + 1), m);
    } else {
      Tensor col = empty({s.C * s.R * s.S, cols}, x.options());
      Tensor out = empty({s.O, cols}, x.options());
      for (int64_t j = 0; j < ch.nb; ++j)
        im2col(col.data<T>() + j * PQ, cols, x.data<T>() + (ch.n0 + j) * s.C * s.H * s.W, s);
      // Y[g] = w[g] · col[g] : (Og, CgRS)(CgRS, nb·PQ) -> (Og, nb·PQ)
      const MatmulParams m =
          group_gemm(G, Og, cols, CgRS, false, false, Og * CgRS, CgRS * cols, Og * cols, 0.0);
      matmul_fwd(out, w, col, m);
      // y[n0 + j, o] = Y[o, j·PQ ...] (+ bias[o]): one pass, the same single add per element.
      const T* po = out.data<T>();
      for (int64_t j = 0; j < ch.nb; ++j)
        for (int64_t o = 0; o < s.O; ++o) {
          const T* src = po + o * cols + j * PQ;
          T* dst = y.data<T>() + ((ch.n0 + j) * s.O + o) * PQ;
          if (b) {
            const T bo = b[o];
            for (int64_t i = 0; i < PQ; ++i) dst[i] = src[i] + bo;
          } else {
            std::copy(src, src + PQ, dst);
          }
        }
      return;
    }
    if (!b) return;
    for (int64_t n = ch.n0; n < ch.n0 + ch.nb; ++n) {
      T* out = y.data<T>() + n * s.O * PQ;
      for (int64_t o = 0; o < s.O; ++o)
        for (int64_t i = 0; i < PQ; ++i) out[o * PQ + i] += b[o];
    }
  });
}

// dY (O, nb·PQ) <- dy[n0 .. n0 + nb) (nb, O, PQ): sample j's rows side by side.
template <typename T>
void gather_dy(T* out, const T* dy, const ConvShape& s, Chunk ch) {
  const int64_t PQ = s.P * s.Q, cols = ch.nb * PQ;
  for (int64_t j = 0; j < ch.nb; ++j)
    for (int64_t o = 0; o < s.O; ++o) {
      const T* src = dy + ((ch.n0 + j) * s.O + o) * PQ;
      std::copy(src, src + PQ, out + o * cols + j * PQ);
    }
}

template <typename T>
void bwd_data_typed(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvShape& s) {
  const int64_t G = s.p.groups, Og = s.Og(), CgRS = s.Cg() * s.R * s.S, PQ = s.P * s.Q;
  const bool pointwise = is_pointwise(s);
  const int64_t nb = samples_per_chunk(s);
  for_each_chunk(s, nb, [&](Chunk ch) {
    const int64_t cols = ch.nb * PQ;
    if (pointwise) {
      // dx_n[g] = w[g]ᵀ · dy_n[g] : (CgRS, Og)(Og, PQ) -> (CgRS, PQ), straight into dx
      const MatmulParams m =
          group_gemm(G, CgRS, PQ, Og, true, false, Og * CgRS, Og * PQ, CgRS * PQ, 0.0);
      matmul_fwd(dx.slice0(ch.n0, ch.n0 + 1), w, dy.slice0(ch.n0, ch.n0 + 1), m);
      return;
    }
    Tensor dY = empty({s.O, cols}, dy.options());
    Tensor dcol = empty({s.C * s.R * s.S, cols}, dx.options());
    gather_dy(dY.data<T>(), dy.data<T>(), s, ch);
    // dcol[g] = w[g]ᵀ · dY[g] : (CgRS, Og)(Og, nb·PQ) -> (CgRS, nb·PQ)
    const MatmulParams m =
        group_gemm(G, CgRS, cols, Og, true, false, Og * CgRS, Og * cols, CgRS * cols, 0.0);
    matmul_fwd(dcol, w, dY, m);
    for (int64_t j = 0; j < ch.nb; ++j)
      col2im(dx.data<T>() + (ch.n0 + j) * s.C * s.H * s.W, dcol.data<T>() + j * PQ, cols, s);
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
  // Chunks of samples as in the forward (one sample each when pointwise), gathered into at most
  // kMaxPartials blocks of consecutive chunks: a block adds its chunks into one partial dw in
  // increasing n (GEMMs with beta = 1 after its first), so a 64×64 output (one sample per chunk)
  // does not need N partial copies of dw. Both counts depend on the shape only.
  constexpr int64_t kMaxPartials = 16;
  const int64_t nb = samples_per_chunk(s, true);
  const int64_t chunks = (s.N + nb - 1) / nb;
  const int64_t per_block = (chunks + kMaxPartials - 1) / kMaxPartials;
  const int64_t blocks = (chunks + per_block - 1) / per_block;
  // Block 0 writes dw itself; block k > 0 writes partial[k - 1]. One block: no extra sum.
  std::vector<Tensor> partial(size_t(blocks - 1));
  for (auto& t : partial) t = empty(dw.shape(), dw.options());
  parallel_for(blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t blk = lo; blk < hi; ++blk) {
      const Tensor& target = blk == 0 ? dw : partial[size_t(blk - 1)];
      const int64_t c1 = std::min(chunks, (blk + 1) * per_block);
      for (int64_t c = blk * per_block; c < c1; ++c) {
        const Chunk ch{c * nb, std::min(nb, s.N - c * nb)};
        const double beta = c == blk * per_block ? 0.0 : 1.0;  // a block's first chunk overwrites
        if (pointwise) {
          // dw[g] (+)= dy_n[g] · x_n[g]ᵀ : (Og, PQ)(PQ, CgRS) -> (Og, CgRS)
          const MatmulParams m = group_gemm(G, Og, CgRS, PQ, false, true, Og * PQ, CgRS * PQ,
                                            Og * CgRS, beta);
          matmul_fwd(target, dy.slice0(ch.n0, ch.n0 + 1), x.slice0(ch.n0, ch.n0 + 1), m);
          continue;
        }
        const int64_t cols = ch.nb * PQ;
        Tensor dY = empty({s.O, cols}, dy.options());
        Tensor col = empty({s.C * s.R * s.S, cols}, x.options());
        gather_dy(dY.data<T>(), dy.data<T>(), s, ch);
        for (int64_t j = 0; j < ch.nb; ++j)
          im2col(col.data<T>() + j * PQ, cols, x.data<T>() + (ch.n0 + j) * s.C * s.H * s.W, s);
        // dw_b[g] (+)= dY[g] · col[g]ᵀ : (Og, nb·PQ)(nb·PQ, CgRS) -> (Og, CgRS)
        const MatmulParams m =
            group_gemm(G, Og, CgRS, cols, false, true, Og * cols, CgRS * cols, Og * CgRS, beta);
        matmul_fwd(target, dY, col, m);
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
