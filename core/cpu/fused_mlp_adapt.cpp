// CPU reference of the fused IT³ MLP adaptation (contract: core/kernels/fused_mlp_adapt.h).
// Plain loops in the phase order of the CUDA kernel (cuda/kernels/fused_mlp_adapt.cu): every
// output is a sum from 0 over the same index in the same order as there (except a wide layer's
// forward and, at small batches, input gradient, which the kernel splits over a warp: see the
// contract's Numerics), so this file is both
// the CPU fused path (`--fused on`) and the oracle of the GPU test. The loops keep one
// accumulator per output in a row and run the summed index outside, so the inner loop is over
// independent outputs (vectorizable without reordering any sum). Single-threaded on purpose:
// the order of every sum stays obvious.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/kernels/fused_mlp_adapt.h"
#include "core/kernels/optim_math.h"

namespace idem {

int64_t fused_mlp_scratch_floats(const FusedMlpAdaptParams& p, int64_t batch) {
  return fused_mlp_scratch_layout(p, batch).total;
}

void fused_mlp_carve_scratch(FusedMlpAdaptParams& p, float* s, int64_t batch) {
  fused_mlp_point_scratch(p, s, fused_mlp_scratch_layout(p, batch));
}

bool fused_mlp_rows_eligible(const FusedMlpAdaptParams& p) {
  for (int l = 0; l <= p.layers; ++l)
    if (p.widths[l] >= kFusedMlpWarpDotMinInputs) return false;
  return true;
}

bool fused_mlp_rows_takes(const FusedMlpAdaptParams& p, int64_t batch) {
  return fused_mlp_rows_eligible(p) && batch <= kFusedMlpRowMaxBatch;
}

int64_t fused_mlp_largest_phase_macs(const FusedMlpAdaptParams& p, int64_t batch) {
  int64_t macs = 0;
  for (int l = 1; l <= p.layers; ++l) macs = std::max<int64_t>(macs, batch * p.widths[l] * p.widths[l - 1]);
  return macs;
}

bool fused_mlp_auto_takes(const FusedMlpAdaptParams& p, int64_t batch) {
  if (fused_mlp_largest_phase_macs(p, batch) <= kFusedMlpSingleBlockMacs) return true;
  return batch <= fused_mlp_auto_max_batch(p);
}

const char* fused_mlp_kernel_name(FusedMlpKernel k) {
  switch (k) {
    case FusedMlpKernel::rows_padded: return "rows_padded";
    case FusedMlpKernel::rows_compact: return "rows_compact";
    case FusedMlpKernel::cluster: return "cluster";
    case FusedMlpKernel::phase: return "phase";
    default: return "none";
  }
}

int fused_mlp_auto_max_batch(const FusedMlpAdaptParams& p) {
  return fused_mlp_rows_eligible(p) ? kFusedMlpRowMaxBatch : kFusedMlpAutoWideMaxBatch;
}

namespace cpu {

namespace {

struct Net {
  const FusedMlpAdaptParams& p;
  int L, B, S, d;
  int64_t off[kFusedMlpMaxLayers + 1];  // offset of layer l's activations in fa / Fa

  explicit Net(const FusedMlpAdaptParams& q)
      : p(q), L(q.layers), B(q.batch), S(q.signal), d(q.widths[0] - q.signal) {
    off[1] = 0;
    for (int l = 1; l < L; ++l) off[l + 1] = off[l] + int64_t(B) * p.widths[l];
  }
  int n(int l) const { return p.widths[l]; }

  // Input column i of row b of [x, s]: s null means ∅.
  float input(int b, int i, const float* s) const {
    if (i < d) return p.x[int64_t(b) * d + i];
    return s ? s[int64_t(b) * S + (i - d)] : p.neutral;
  }

  // Row b of the input [x, s] (s null means ∅) into `row` (n_0 floats).
  void input_row(int b, const float* s, float* row) const {
    for (int i = 0; i < n(0); ++i) row[i] = input(b, i, s);
  }

  // acts ← the layer outputs of the network with weights θ (anchor = false) or Θ, on [x, s].
  // z[b, j] = Σ_i a[b, i]·W[j, i] in i order, with Wᵀ staged so the j loop is contiguous.
  void forward(bool anchor, const float* s, float* acts) const {
    std::vector<float> wt, a0(size_t(n(0))), acc;
    for (int l = 1; l <= L; ++l) {
      const FusedMlpLayer& ly = p.layer[l - 1];
      const float* W = anchor ? ly.w0 : ly.w;
      const float* bias = anchor ? ly.b0 : ly.b;
      const int nin = n(l - 1), nout = n(l);
      wt.resize(size_t(nin) * nout);
      for (int j = 0; j < nout; ++j)
        for (int i = 0; i < nin; ++i) wt[size_t(i) * nout + j] = W[int64_t(j) * nin + i];
      acc.resize(size_t(nout));
      for (int b = 0; b < B; ++b) {
        const float* a = l > 1 ? acts + off[l - 1] + int64_t(b) * nin : a0.data();
        if (l == 1) input_row(b, s, a0.data());
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int i = 0; i < nin; ++i) {
          const float ai = a[i];
          const float* w = wt.data() + size_t(i) * nout;
          for (int j = 0; j < nout; ++j) acc[size_t(j)] += ai * w[j];
        }
        float* out = acts + off[l] + int64_t(b) * nout;
        for (int j = 0; j < nout; ++j) {
          const float z = acc[size_t(j)] + bias[j];
          out[j] = l < L ? math::fused_act(p.act, z, p.slope) : z;
        }
      }
    }
  }

  // out[b, i] = act'(a[b, i]) · Σ_j δ[b, j]·W[j, i] in j order (the input gradient of a layer).
  // delta(b, j) gives δ.
  template <typename Delta>
  void input_grad(const float* W, int nin, int nout, Delta&& delta, const float* a, float* out) const {
    std::vector<float> acc(static_cast<size_t>(nin));
    for (int b = 0; b < B; ++b) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int j = 0; j < nout; ++j) {
        const float dj = delta(b, j);
        const float* w = W + int64_t(j) * nin;
        for (int i = 0; i < nin; ++i) acc[size_t(i)] += dj * w[i];
      }
      for (int i = 0; i < nin; ++i)
        out[int64_t(b) * nin + i] = math::fused_act_grad(p.act, acc[size_t(i)], a[int64_t(b) * nin + i], p.slope);
    }
  }

  // ∂L/∂y1 of element (b, s): d'(y1 − y0)·(1/n), as the distance op's backward computes it.
  float dist_grad(float y1, float y0) const {
    const float scale = 1.0f / float(int64_t(B) * S);
    return math::distance_grad_factor(p.distance, y1 - y0) * scale;
  }
};

// One optimizer step of `n` elements (the per-element formulas of every optimizer update:
// core/kernels/optim_math.h; no weight decay, no dampening, no Nesterov: the Adapter's).
void update(const FusedMlpAdaptParams& p, int t, float* w, float* m, float* v, const float* g,
            int64_t n) {
  if (p.optim == OptimKind::adam) {
    const math::AdamCoeffs<float> c =
        math::adam_coeffs<float>(p.beta1, p.beta2, p.eps, math::adam_corrections(p.lr, p.beta1, p.beta2, t));
    for (int64_t i = 0; i < n; ++i) math::adam_step(c, g[i], m[i], v[i], w[i]);
    return;
  }
  const math::SgdCoeffs<float> c{float(p.lr), float(p.momentum), 1.0f, false, t == 1};
  // One loop per case, as core/cpu/optim.cpp: no buffer chosen per element.
  if (m)
    for (int64_t i = 0; i < n; ++i) math::sgd_step(c, g[i], true, m[i], w[i]);
  else
    for (int64_t i = 0; i < n; ++i) math::sgd_step(c, g[i], false, w[i], w[i]);
}

}  // namespace

void fused_mlp_adapt(const FusedMlpAdaptParams& p) {
  const Net net(p);
  const int L = net.L, B = net.B, S = net.S, d = net.d;
  const float* y0 = p.fa + net.off[L];
  const float* y1 = p.Fa + net.off[L];
  if (p.steps > 0) {
    for (int l = 0; l < L; ++l) {  // θ ← Θ, state ← 0
      const FusedMlpLayer& ly = p.layer[l];
      const int64_t nw = int64_t(net.n(l + 1)) * net.n(l), nb = net.n(l + 1);
      std::copy(ly.w0, ly.w0 + nw, ly.w);
      std::copy(ly.b0, ly.b0 + nb, ly.b);
      for (float* s : {ly.mw, ly.vw}) if (s) std::fill(s, s + nw, 0.0f);
      for (float* s : {ly.mb, ly.vb}) if (s) std::fill(s, s + nb, 0.0f);
    }
  }
  for (int k = 1; k <= p.steps; ++k) {
    net.forward(false, nullptr, p.fa);  // y0 = f_θ(x, ∅)
    net.forward(true, y0, p.Fa);        // y1 = F(x, y0)
    if (p.losses) {
      double acc = 0.0;
      for (int64_t e = 0; e < int64_t(B) * S; ++e)
        acc += double(math::distance_term(p.distance, y1[e] - y0[e]));
      p.losses[k - 1] = float(acc / double(int64_t(B) * S));
    }
    // Backward through F, input gradient only. δ of F's layer L is dist_grad (computed where
    // it is read); cur holds the gradient w.r.t. the output of layer l − 1.
    float* cur = p.d0;
    float* other = p.d1;
    for (int l = L; l >= 2; --l) {
      const int nin = net.n(l - 1), nout = net.n(l);
      const float* prev = other;
      net.input_grad(p.layer[l - 1].w0, nin, nout,
                     [&](int b, int j) {
                       const int64_t o = int64_t(b) * nout + j;
                       return l == L ? net.dist_grad(y1[o], y0[o]) : prev[o];
                     },
                     p.Fa + net.off[l - 1], cur);
      std::swap(cur, other);
    }
    // ∂L/∂y0 = −dist_grad (y0 is the distance's second argument) + the signal columns of F's
    // input gradient. `other` holds δ of F's layer 1 (or nothing when L = 1).
    {
      const float* W = p.layer[0].w0;
      const int nin = net.n(0), nout = net.n(1);
      for (int b = 0; b < B; ++b)
        for (int s = 0; s < S; ++s) {
          float acc = 0.0f;
          for (int j = 0; j < nout; ++j) {
            const int64_t o = int64_t(b) * nout + j;
            const float delta = L == 1 ? net.dist_grad(y1[o], y0[o]) : other[o];
            acc += delta * W[int64_t(j) * nin + d + s];
          }
          const int64_t e = int64_t(b) * S + s;
          p.gy0[e] = -net.dist_grad(y1[e], y0[e]) + acc;
        }
    }
    // Backward through f: weight gradients of every layer, input gradients down to layer 1.
    // dW[j, i] = Σ_b δ[b, j]·a[b, i] and db[j] = Σ_b δ[b, j], in b order.
    std::vector<float> a0(size_t(int64_t(B) * net.n(0)));
    for (int b = 0; b < B; ++b) net.input_row(b, nullptr, a0.data() + int64_t(b) * net.n(0));
    const float* delta = p.gy0;
    for (int l = L; l >= 1; --l) {
      const FusedMlpLayer& ly = p.layer[l - 1];
      const int nin = net.n(l - 1), nout = net.n(l);
      const float* a = l > 1 ? p.fa + net.off[l - 1] : a0.data();
      for (int j = 0; j < nout; ++j) {
        float* gw = ly.gw + int64_t(j) * nin;
        std::fill(gw, gw + nin, 0.0f);
        float gb = 0.0f;
        for (int b = 0; b < B; ++b) {
          const float dj = delta[int64_t(b) * nout + j];
          const float* ab = a + int64_t(b) * nin;
          for (int i = 0; i < nin; ++i) gw[i] += dj * ab[i];
          gb += dj;
        }
        ly.gb[j] = gb;
      }
      if (l > 1) {
        float* out = delta == p.d0 ? p.d1 : p.d0;
        const float* d = delta;
        net.input_grad(ly.w, nin, nout, [&](int b, int j) { return d[int64_t(b) * nout + j]; }, a, out);
        delta = out;
      }
    }
    for (int l = 0; l < L; ++l) {
      const FusedMlpLayer& ly = p.layer[l];
      update(p, k, ly.w, ly.mw, ly.vw, ly.gw, int64_t(net.n(l + 1)) * net.n(l));
      update(p, k, ly.b, ly.mb, ly.vb, ly.gb, net.n(l + 1));
    }
  }
  net.forward(false, nullptr, p.fa);  // the prediction f_θ(x, ∅)
  std::copy(y0, y0 + int64_t(B) * S, p.y);
}

}  // namespace cpu
}  // namespace idem
