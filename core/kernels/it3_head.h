// Kernel contract: the IT³ loss of a feature-injection model's head in one call (one launch
// each way on a GPU), and the head's forward alone. cpu:: in core/cpu/it3_head.cpp, cuda:: in
// cuda/kernels/it3_head.cu, stubs in cuda/no_cuda.cpp; both run the one algorithm of
// core/kernels/it3_head_phases.h.
//
// The head of a FeatureModel (it3/recursive_model.h) whose embed and head are chains of Linear
// layers (the benchmark's `cnn`: embed Linear(C,50) + LeakyReLU, head Linear(50,50) + LeakyReLU,
// Linear(50,C)):
//   head(h, s) = layers(h + act_e(s·Eᵀ + e))       h (B,n_0) features, s (B,C) a signal
//   layers(a)  = a_L with a_l = act_l(a_{l−1}·W_lᵀ + b_l), a_0 = a, n_L = C
// The IT³ loss of one adaptation step, given θ's head f and the frozen anchor's head F:
//   y0 = f(h_f, s0)      s0 = the neutral signal ∅
//   s  = softmax(y0)     the signal (classification)
//   y1 = F(h_F, s)
//   L  = mean over B·C of d(softmax(y1) − s)        d = |·| (l1) or (·)² (mse)
// h_f is θ's features (they carry the body's gradient); h_F is the anchor's features (the same
// tensor, detached or not, when the body is shared: it3/adapt.cpp). The backward gives
// ∂L/∂h_f, ∂L/∂h_F and ∂L/∂(f's embed and layers), through s into y0 both directly (the
// distance's target) and through F's input, exactly as the composed ops do; F's weights get
// no gradient (it is frozen). Composed, on a GPU that is about 22 launches, counted from the
// ops (per net 3 linear_act and an add, then 2 softmax and the distance: 11 forward; about as
// many backward); fused it is one each way.
//
// Numerics: every sum in a fixed order (no atomics), the CPU reference and the kernel in the
// same order; the GPU may contract a·b + c into an FMA and its softmax uses expf where the
// composed CPU softmax sums in double. So the fused op agrees with the composed ops and the
// CPU with the GPU to rounding (the tests' gate: atol 1e-4 + rtol 1e-3), not bit for bit.
#pragma once
#include <cstdint>
#include <vector>

#include "core/kernels/fused.h"  // FusedAct, DistanceKind
#include "core/philox.h"         // IDEM_HOST_DEVICE
#include "core/tensor.h"

namespace idem {

constexpr int kIt3HeadMaxLayers = 4;    // L, the head's Linear layers
constexpr int kIt3HeadMaxWidth = 256;   // every n_l and C
constexpr int kIt3HeadMaxBatch = 256;   // B: one block of the CUDA kernel walks every row
constexpr int kIt3HeadThreads = 512;    // threads of that block

struct It3HeadParams {
  int batch = 0;                             // B
  int signal = 0;                            // C: the embed's input, the last layer's output
  int layers = 0;                            // L
  int widths[kIt3HeadMaxLayers + 1] = {};    // n_0 (the features) … n_L = C
  FusedAct embed_act = FusedAct::none;
  FusedAct acts[kIt3HeadMaxLayers] = {};     // act_l after layer l + 1 (0-based l)
  double slope = 0.01;                       // every leaky_relu's negative slope (>= 0)
  DistanceKind distance = DistanceKind::l1;
  bool loss = true;  // false: head(h_f, s0) only (y0); no F, no loss, no backward
};

// The architecture both heads share, as the L1 ops take it (It3HeadParams is the kernel's):
// the embed's activation, one activation per head layer (the last is usually none), the leaky
// slope (>= 0) and the distance.
struct It3HeadSpec {
  FusedAct embed_act = FusedAct::none;
  std::vector<FusedAct> acts;  // L entries, 1 <= L <= kIt3HeadMaxLayers
  double slope = 0.01;
  DistanceKind distance = DistanceKind::l1;
};

// Where each output and saved activation starts in the forward's work buffer (elements of the
// dtype): y0, θ's z = act_e(s0·Eᵀ + e) and a_0 = h_f + z, its hidden a_1 … a_{L−1}, the signal
// s; y1, the anchor's z, a_0 and hidden layers, p1 = softmax(y1), and the B per-row loss sums
// (the backward reads act_L' from y0 and y1, so they live in the work buffer too). The
// backward's scratch: two (B, max n) gradient buffers, ds (B, C) and dz (B, n_0).
struct It3HeadLayout {
  int y0 = 0, z_f = 0, a0_f = 0, hid_f[kIt3HeadMaxLayers] = {}, s = 0;
  int y1 = 0, z_F = 0, a0_F = 0, hid_F[kIt3HeadMaxLayers] = {}, p1 = 0, row_loss = 0;
  int work = 0;  // the forward's work size
  int grad_a = 0, grad_b = 0, ds = 0, dz = 0;
  int scratch = 0;  // the backward's scratch size
};

IDEM_HOST_DEVICE inline It3HeadLayout it3_head_layout(const It3HeadParams& p) {
  It3HeadLayout o;
  const int B = p.batch, n0 = p.widths[0], C = p.signal;
  int at = 0;
  const auto take = [&at](int n) { const int here = at; at += n; return here; };
  o.y0 = take(B * C), o.z_f = take(B * n0), o.a0_f = take(B * n0);
  for (int l = 0; l + 1 < p.layers; ++l) o.hid_f[l] = take(B * p.widths[l + 1]);
  if (p.loss) {
    o.s = take(B * C);
    o.y1 = take(B * C), o.z_F = take(B * n0), o.a0_F = take(B * n0);
    for (int l = 0; l + 1 < p.layers; ++l) o.hid_F[l] = take(B * p.widths[l + 1]);
    o.p1 = take(B * C), o.row_loss = take(B);
  }
  o.work = at;
  int wide = 0;
  for (int l = 0; l <= p.layers; ++l) wide = p.widths[l] > wide ? p.widths[l] : wide;
  at = 0;
  o.grad_a = take(B * wide), o.grad_b = take(B * wide), o.ds = take(B * C), o.dz = take(B * n0);
  o.scratch = at;
  return o;
}

// The operands, all contiguous on one device, one floating dtype (CUDA: f32):
//   h_f, h_F (B, n_0); s0 (B, C); loss 0-dim; work (layout.work), which receives y0 and y1
//   (B, C each) at layout.y0 / layout.y1 (the L1 ops return views of it);
//   f and F: 2L + 2 tensors each, E (n_0, C), e (n_0), W_1 (n_1, n_0), b_1 (n_1), …,
//   W_L (C, n_{L−1}), b_L (C).
// Without p.loss only h_f, s0, f and work are read or written (the others may be undefined).
namespace cpu {
void it3_head_fwd(const Tensor& loss, const Tensor& work, const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                  const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                  const It3HeadParams& p);
// From g (0-dim, ∂/∂L, read on the device) and the forward's work: df (2L + 2, f's order; an
// undefined entry is not computed), dh_f, dh_F (B, n_0) or undefined; scratch (layout.scratch).
void it3_head_bwd(const std::vector<Tensor>& df, const Tensor& dh_f, const Tensor& dh_F,
                  const Tensor& scratch, const Tensor& g, const Tensor& work, const Tensor& s0,
                  const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                  const It3HeadParams& p);
}  // namespace cpu

namespace cuda {
// One block of kIt3HeadThreads threads each way; no host synchronization (graph-capturable).
void it3_head_fwd(const Tensor& loss, const Tensor& work, const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                  const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                  const It3HeadParams& p);
void it3_head_bwd(const std::vector<Tensor>& df, const Tensor& dh_f, const Tensor& dh_F,
                  const Tensor& scratch, const Tensor& g, const Tensor& work, const Tensor& s0,
                  const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                  const It3HeadParams& p);
// Whether a call with `p` on `device` runs from shared memory (the weights, the work buffer and
// the backward's scratch staged there: cuda/kernels/it3_head.cu) rather than global memory, for
// the forward (backward = false) or the backward: it3_head_staging() on and the operands fit.
bool it3_head_staged(const It3HeadParams& p, int device, bool backward);
}  // namespace cuda

// Whether the CUDA kernels may stage in shared memory at all. On by default: the staged kernels
// were never slower than the global-memory ones beyond the noise, and much faster at larger
// batches (docs/it3.md, "The fused head"); off runs every call from global memory, for
// comparison. IDEM_IT3_HEAD_STAGED=on|off
// (core/env.h) unless set_it3_head_staging came first, which overrides it (the tests run both).
bool it3_head_staging();
void set_it3_head_staging(bool on);

}  // namespace idem
