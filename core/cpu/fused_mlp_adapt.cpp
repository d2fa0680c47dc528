// CPU reference of the fused IT³ MLP adaptation (contract: core/kernels/fused_mlp_adapt.h).
// Plain loops in the phase order of the CUDA kernel (cuda/kernels/fused_mlp_adapt.cu), each sum
// over the same index in the same order, so this file is both the CPU fused path and the
// oracle of the GPU test. Single-threaded on purpose: the models it serves are small (≤ 256
// wide, ≤ 256 rows), and the order of every sum stays obvious.
#include <algorithm>
#include <cmath>

#include "core/kernels/fused_mlp_adapt.h"

namespace idem {

int64_t fused_mlp_scratch_floats(const FusedMlpAdaptParams& p, int64_t batch) {
  int64_t acts = 0, widest = 0;
  for (int l = 1; l <= p.layers; ++l) {
    acts += batch * p.widths[l];
    widest = std::max<int64_t>(widest, p.widths[l]);
  }
  return 2 * acts + 2 * batch * widest + batch * p.signal;
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

  // acts ← the layer outputs of the network with weights θ (anchor = false) or Θ, on [x, s].
  void forward(bool anchor, const float* s, float* acts) const {
    for (int l = 1; l <= L; ++l) {
      const FusedMlpLayer& ly = p.layer[l - 1];
      const float* W = anchor ? ly.w0 : ly.w;
      const float* bias = anchor ? ly.b0 : ly.b;
      const int nin = n(l - 1), nout = n(l);
      const float* prev = l > 1 ? acts + off[l - 1] : nullptr;
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < nout; ++j) {
          float acc = 0.0f;
          for (int i = 0; i < nin; ++i)
            acc += (prev ? prev[int64_t(b) * nin + i] : input(b, i, s)) * W[int64_t(j) * nin + i];
          const float z = acc + bias[j];
          acts[off[l] + int64_t(b) * nout + j] = l < L ? math::fused_act(p.act, z, p.slope) : z;
        }
    }
  }

  // ∂L/∂y1 of element (b, s): d'(y1 − y0)·(1/n), as the distance op's backward computes it.
  float dist_grad(float y1, float y0) const {
    const float scale = 1.0f / float(int64_t(B) * S);
    return math::distance_grad_factor(p.distance, y1 - y0) * scale;
  }
};

// One optimizer step of `n` elements (formulas and order: core/cpu/optim.cpp).
void update(const FusedMlpAdaptParams& p, int t, float* w, float* m, float* v, const float* g,
            int64_t n) {
  if (p.optim == OptimKind::adam) {
    const float w1 = float(1.0 - p.beta1), b2 = float(p.beta2), w2 = float(1.0 - p.beta2);
    const float step_size = float(p.lr / (1.0 - std::pow(p.beta1, double(t))));
    const float bc2 = float(std::sqrt(1.0 - std::pow(p.beta2, double(t))));
    const float eps = float(p.eps);
    for (int64_t i = 0; i < n; ++i) {
      const float mi = m[i] + w1 * (g[i] - m[i]);
      const float vi = b2 * v[i] + w2 * (g[i] * g[i]);
      m[i] = mi;
      v[i] = vi;
      const float denom = std::sqrt(vi) / bc2 + eps;
      w[i] = w[i] - step_size * (mi / denom);
    }
    return;
  }
  const float lr = float(p.lr), mom = float(p.momentum);
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    if (m) {
      const float buf = t == 1 ? gi : mom * m[i] + 1.0f * gi;
      m[i] = buf;
      gi = buf;
    }
    w[i] = w[i] - lr * gi;
  }
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
      const float* W = p.layer[l - 1].w0;
      const int nin = net.n(l - 1), nout = net.n(l);
      const float* a = p.Fa + net.off[l - 1];
      for (int b = 0; b < B; ++b)
        for (int i = 0; i < nin; ++i) {
          float acc = 0.0f;
          for (int j = 0; j < nout; ++j) {
            const int64_t o = int64_t(b) * nout + j;
            const float delta = l == L ? net.dist_grad(y1[o], y0[o]) : other[o];
            acc += delta * W[int64_t(j) * nin + i];
          }
          cur[int64_t(b) * nin + i] = math::fused_act_grad(p.act, acc, a[int64_t(b) * nin + i], p.slope);
        }
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
    const float* delta = p.gy0;
    for (int l = L; l >= 1; --l) {
      const FusedMlpLayer& ly = p.layer[l - 1];
      const int nin = net.n(l - 1), nout = net.n(l);
      const float* a = l > 1 ? p.fa + net.off[l - 1] : nullptr;
      for (int j = 0; j < nout; ++j) {
        for (int i = 0; i < nin; ++i) {
          float acc = 0.0f;
          for (int b = 0; b < B; ++b)
            acc += delta[int64_t(b) * nout + j] * (a ? a[int64_t(b) * nin + i] : net.input(b, i, nullptr));
          ly.gw[int64_t(j) * nin + i] = acc;
        }
        float acc = 0.0f;
        for (int b = 0; b < B; ++b) acc += delta[int64_t(b) * nout + j];
        ly.gb[j] = acc;
      }
      if (l > 1) {
        float* out = delta == p.d0 ? p.d1 : p.d0;
        for (int b = 0; b < B; ++b)
          for (int i = 0; i < nin; ++i) {
            float acc = 0.0f;
            for (int j = 0; j < nout; ++j) acc += delta[int64_t(b) * nout + j] * ly.w[int64_t(j) * nin + i];
            out[int64_t(b) * nin + i] = math::fused_act_grad(p.act, acc, a[int64_t(b) * nin + i], p.slope);
          }
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
