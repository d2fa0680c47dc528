// The algorithm of the fused IT³ head (contract: core/kernels/it3_head.h), written once for the
// CPU reference (core/cpu/it3_head.cpp) and the CUDA kernel (cuda/kernels/it3_head.cu).
//
// It is a list of phases; a phase computes `count` independent outputs, each one sum in a fixed
// order, and the next phase reads them. The caller's runner executes a phase:
//   run(count, fn)  calls fn(t) for every t in [0, count), then waits until all are written
// (the CPU: a plain loop; the GPU: one block's threads stride over t, then __syncthreads()).
// So the CPU and the GPU compute every output with the same formula and summation order.
#pragma once
#include <math.h>

#include "core/kernels/it3_head.h"

namespace idem::it3_head {

template <typename T>
struct Net {
  const T* ew = nullptr;  // E (n_0, C)
  const T* eb = nullptr;  // e (n_0)
  const T* w[kIt3HeadMaxLayers] = {};  // W_l (n_l, n_{l−1})
  const T* b[kIt3HeadMaxLayers] = {};  // b_l (n_l)
};

template <typename T>
struct FwdArgs {
  It3HeadParams p;
  const T* h_f = nullptr;
  const T* h_F = nullptr;
  const T* s0 = nullptr;
  Net<T> f, F;
  T* loss = nullptr;
  T* work = nullptr;
};

template <typename T>
struct BwdArgs {
  It3HeadParams p;
  const T* g = nullptr;  // ∂/∂L (one element)
  const T* work = nullptr;
  const T* s0 = nullptr;
  Net<T> f, F;
  T* dew = nullptr;  // f's gradients; null: not wanted
  T* deb = nullptr;
  T* dw[kIt3HeadMaxLayers] = {};
  T* db[kIt3HeadMaxLayers] = {};
  T* dh_f = nullptr;  // null: not wanted
  T* dh_F = nullptr;
  T* scratch = nullptr;
};

IDEM_HOST_DEVICE inline float exp_of(float x) { return expf(x); }
IDEM_HOST_DEVICE inline double exp_of(double x) { return exp(x); }

// s = softmax(y) over one row of C: exp(y − max) / Σ exp(y − max), the sum in c order.
template <typename T>
IDEM_HOST_DEVICE void softmax_row(const T* y, T* s, int C) {
  T m = y[0];
  for (int c = 1; c < C; ++c) m = y[c] > m ? y[c] : m;
  T sum = T(0);
  for (int c = 0; c < C; ++c) {
    s[c] = exp_of(y[c] - m);
    sum += s[c];
  }
  for (int c = 0; c < C; ++c) s[c] = s[c] / sum;
}

// z = act_e(s·Eᵀ + e), a0 = h + z : (B,C)(C,n_0) -> (B,n_0)
template <typename T, typename Run>
IDEM_HOST_DEVICE void embed_fwd(const It3HeadParams& p, const Net<T>& net, const T* s, const T* h,
                                T* z, T* a0, const Run& run) {
  const int n = p.widths[0], C = p.signal;
  const T slope = T(p.slope);
  run(p.batch * n, [&](int t) {
    const int b = t / n, i = t - b * n;
    const T* sb = s + b * C;
    const T* ei = net.ew + i * C;
    T acc = T(0);
    for (int c = 0; c < C; ++c) acc += sb[c] * ei[c];
    const T zi = math::fused_act(p.embed_act, acc + net.eb[i], slope);
    z[t] = zi;
    a0[t] = h[t] + zi;
  });
}

// a_l = act_l(a_{l−1}·W_lᵀ + b_l) : (B,n_{l−1})(n_{l−1},n_l) -> (B,n_l), l = 1 … L, from a_0;
// hidden[l − 1] receives a_l for l < L, y receives a_L.
template <typename T, typename Run>
IDEM_HOST_DEVICE void layers_fwd(const It3HeadParams& p, const Net<T>& net, const T* a0,
                                 T* const* hidden, T* y, const Run& run) {
  const T slope = T(p.slope);
  const T* in = a0;
  for (int l = 0; l < p.layers; ++l) {
    const int nin = p.widths[l], nout = p.widths[l + 1];
    T* out = l + 1 == p.layers ? y : hidden[l];
    const T* W = net.w[l];
    const T* bias = net.b[l];
    const FusedAct act = p.acts[l];
    run(p.batch * nout, [&](int t) {
      const int b = t / nout, j = t - b * nout;
      const T* x = in + b * nin;
      const T* wj = W + j * nin;
      T acc = T(0);
      for (int i = 0; i < nin; ++i) acc += x[i] * wj[i];
      out[t] = math::fused_act(act, acc + bias[j], slope);
    });
    in = out;
  }
}

template <typename T, typename Run>
IDEM_HOST_DEVICE void forward(const FwdArgs<T>& a, const Run& run) {
  const It3HeadParams& p = a.p;
  const It3HeadLayout o = it3_head_layout(p);
  const int B = p.batch, C = p.signal;
  T* w = a.work;
  T* hid_f[kIt3HeadMaxLayers] = {};
  T* hid_F[kIt3HeadMaxLayers] = {};
  for (int l = 0; l + 1 < p.layers; ++l) hid_f[l] = w + o.hid_f[l], hid_F[l] = w + o.hid_F[l];
  T* y0 = w + o.y0;
  T* y1 = w + o.y1;
  embed_fwd(p, a.f, a.s0, a.h_f, w + o.z_f, w + o.a0_f, run);
  layers_fwd(p, a.f, w + o.a0_f, hid_f, y0, run);
  if (!p.loss) return;
  T* s = w + o.s;
  T* p1 = w + o.p1;
  T* row_loss = w + o.row_loss;
  run(B, [&](int b) { softmax_row(y0 + b * C, s + b * C, C); });
  embed_fwd(p, a.F, s, a.h_F, w + o.z_F, w + o.a0_F, run);
  layers_fwd(p, a.F, w + o.a0_F, hid_F, y1, run);
  // p1 = softmax(y1) and each row's Σ_c d(p1 − s), then their sum over the rows in order.
  run(B, [&](int b) {
    T* pb = p1 + b * C;
    const T* sb = s + b * C;
    softmax_row(y1 + b * C, pb, C);
    T acc = T(0);
    for (int c = 0; c < C; ++c) acc += math::distance_term(p.distance, pb[c] - sb[c]);
    row_loss[b] = acc;
  });
  run(1, [&](int) {
    T acc = T(0);
    for (int b = 0; b < B; ++b) acc += row_loss[b];
    *a.loss = acc / T(B * C);
  });
}

// Back through layers L … 1 of `net` from δ_L (B, C) in `delta`: the input gradient of each
// layer, Σ_j δ_l[b,j]·W_l[j,i] times act'_{l−1} (read from the saved output a_{l−1}); with
// `dw` / `db` (f only) also dW_l = δ_lᵀ·a_{l−1} : (n_l,B)(B,n_{l−1}) and db_l = Σ_b δ_l, in the
// same phase. Layer 1's input gradient (that of a_0 = h + z) goes to dh (when wanted) and, times
// act_e'(z), to dz. The gradient buffers alternate between ga and gb.
template <typename T, typename Run>
IDEM_HOST_DEVICE void layers_bwd(const It3HeadParams& p, const Net<T>& net, const T* a0,
                                 const T* const* hidden, const T* z, T* const* dw, T* const* db,
                                 T* dh, T* dz, T* ga, T* gb, const Run& run) {
  const T slope = T(p.slope);
  const int B = p.batch;
  const T* delta = ga;
  for (int l = p.layers - 1; l >= 0; --l) {
    const int nin = p.widths[l], nout = p.widths[l + 1];
    const T* W = net.w[l];
    const T* in = l > 0 ? hidden[l - 1] : a0;
    T* out = delta == ga ? gb : ga;
    T* dwl = dw ? dw[l] : nullptr;
    T* dbl = db ? db[l] : nullptr;
    const int nw = dwl ? nout * nin : 0, nb = dbl ? nout : 0;
    const FusedAct act_in = l > 0 ? p.acts[l - 1] : p.embed_act;
    run(nw + nb + B * nin, [&](int t) {
      if (t < nw) {  // dW_l[j,i] = Σ_b δ[b,j]·a[b,i]
        const int j = t / nin, i = t - j * nin;
        T acc = T(0);
        for (int b = 0; b < B; ++b) acc += delta[b * nout + j] * in[b * nin + i];
        dwl[t] = acc;
      } else if (t < nw + nb) {  // db_l[j] = Σ_b δ[b,j]
        const int j = t - nw;
        T acc = T(0);
        for (int b = 0; b < B; ++b) acc += delta[b * nout + j];
        dbl[j] = acc;
      } else {  // da[b,i] = Σ_j δ[b,j]·W[j,i]
        const int e = t - nw - nb;
        const int b = e / nin, i = e - b * nin;
        const T* dj = delta + b * nout;
        T acc = T(0);
        for (int j = 0; j < nout; ++j) acc += dj[j] * W[j * nin + i];
        if (l > 0) {
          out[e] = math::fused_act_grad(act_in, acc, in[e], slope);
        } else {
          if (dh) dh[e] = acc;
          dz[e] = math::fused_act_grad(act_in, acc, z[e], slope);
        }
      }
    });
    delta = out;
  }
}

template <typename T, typename Run>
IDEM_HOST_DEVICE void backward(const BwdArgs<T>& a, const Run& run) {
  const It3HeadParams& p = a.p;
  const It3HeadLayout o = it3_head_layout(p);
  const int B = p.batch, C = p.signal, n0 = p.widths[0];
  const T* w = a.work;
  const T* s = w + o.s;
  const T* p1 = w + o.p1;
  const T* y0 = w + o.y0;
  const T* y1 = w + o.y1;
  const FusedAct act_last = p.acts[p.layers - 1];
  const T slope = T(p.slope);
  const T* hid_f[kIt3HeadMaxLayers] = {};
  const T* hid_F[kIt3HeadMaxLayers] = {};
  for (int l = 0; l + 1 < p.layers; ++l) hid_f[l] = w + o.hid_f[l], hid_F[l] = w + o.hid_F[l];
  T* ga = a.scratch + o.grad_a;
  T* gb = a.scratch + o.grad_b;
  T* ds = a.scratch + o.ds;
  T* dz = a.scratch + o.dz;
  // The distance: ∂p1 = d'(p1 − s)·g/(B·C), ∂s = −∂p1 (its target term); then softmax's
  // backward for y1: ∂y1 = p1 ⊙ (∂p1 − Σ_c ∂p1·p1), row by row, and δ_L = ∂y1 ⊙ act_L'(y1).
  run(B, [&](int b) {
    const T scale = *a.g / T(B * C);
    const T* pb = p1 + b * C;
    const T* sb = s + b * C;
    T r = T(0);
    for (int c = 0; c < C; ++c) {
      const T dp = math::distance_grad_factor(p.distance, pb[c] - sb[c]) * scale;
      ds[b * C + c] = -dp;
      r += dp * pb[c];
    }
    for (int c = 0; c < C; ++c) {
      const T dp = math::distance_grad_factor(p.distance, pb[c] - sb[c]) * scale;
      ga[b * C + c] = math::fused_act_grad(act_last, pb[c] * (dp - r), y1[b * C + c], slope);
    }
  });
  // Through F (input gradients only) to its a_0 = h_F + z: dh_F and dz.
  layers_bwd<T>(p, a.F, nullptr, hid_F, w + o.z_F, nullptr, nullptr, a.dh_F, dz, ga, gb, run);
  // ∂s += dz·E_F : (B,n_0)(n_0,C) -> (B,C), the signal's gradient through F's input.
  run(B * C, [&](int t) {
    const int b = t / C, c = t - b * C;
    const T* db = dz + b * n0;
    T acc = T(0);
    for (int i = 0; i < n0; ++i) acc += db[i] * a.F.ew[i * C + c];
    ds[t] += acc;
  });
  // softmax's backward for y0: ∂y0 = s ⊙ (∂s − Σ_c ∂s·s), and δ_L = ∂y0 ⊙ act_L'(y0).
  run(B, [&](int b) {
    const T* sb = s + b * C;
    const T* dsb = ds + b * C;
    T r = T(0);
    for (int c = 0; c < C; ++c) r += dsb[c] * sb[c];
    for (int c = 0; c < C; ++c)
      ga[b * C + c] = math::fused_act_grad(act_last, sb[c] * (dsb[c] - r), y0[b * C + c], slope);
  });
  // Through f with its weight gradients, to dh_f and dz.
  layers_bwd<T>(p, a.f, w + o.a0_f, hid_f, w + o.z_f, a.dw, a.db, a.dh_f, dz, ga, gb, run);
  // f's embed: dE[i,c] = Σ_b dz[b,i]·s0[b,c] : (n_0,B)(B,C), de[i] = Σ_b dz[b,i].
  const int ne = a.dew ? n0 * C : 0, nb = a.deb ? n0 : 0;
  if (ne + nb == 0) return;
  run(ne + nb, [&](int t) {
    T acc = T(0);
    if (t < ne) {
      const int i = t / C, c = t - i * C;
      for (int b = 0; b < B; ++b) acc += dz[b * n0 + i] * a.s0[b * C + c];
      a.dew[t] = acc;
    } else {
      const int i = t - ne;
      for (int b = 0; b < B; ++b) acc += dz[b * n0 + i];
      a.deb[i] = acc;
    }
  });
}

}  // namespace idem::it3_head
