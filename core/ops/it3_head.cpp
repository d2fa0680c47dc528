#include "core/ops/it3_head.h"

#include <string>

#include "core/env.h"
#include "core/ops/checks.h"

namespace idem::ops {

namespace {

// One net's tensors against the widths: E (n_0, C), e (n_0), W_l (n_l, n_{l−1}), b_l (n_l).
void check_net(const std::vector<Tensor>& net, const char* which, const It3HeadParams& p,
               const Tensor& like, const char* op) {
  IDEM_CHECK(net.size() == size_t(2 * p.layers + 2), op, which, " needs ", 2 * p.layers + 2,
             " tensors (embed weight and bias, then a weight and a bias per layer), got ",
             net.size());
  const auto expect = [&](size_t k, Shape want, const std::string& what) {
    const Tensor& t = net[k];
    check_defined(t, op, (std::string(which) + "'s " + what).c_str());
    check_same_device({&like, &t}, op);
    check_same_dtype(like, t, op);
    IDEM_CHECK(t.shape() == want, op, which, "'s ", what, " must be ", shape_str(want), ", got ",
               shape_str(t.shape()));
  };
  expect(0, {p.widths[0], p.signal}, "embed weight");
  expect(1, {p.widths[0]}, "embed bias");
  for (int l = 0; l < p.layers; ++l) {
    const std::string n = std::to_string(l + 1);
    expect(size_t(2 + 2 * l), {p.widths[l + 1], p.widths[l]}, "layer " + n + " weight");
    expect(size_t(3 + 2 * l), {p.widths[l + 1]}, "layer " + n + " bias");
  }
}

// The (B, C) output at `at` in the work buffer, as a view (it keeps the buffer alive).
Tensor rows_of(const Tensor& work, int at, const It3HeadParams& p) {
  return work.slice0(at, at + p.batch * p.signal).view_as_shape({p.batch, p.signal});
}

}  // namespace

It3HeadParams it3_head_params(const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                              const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                              const It3HeadSpec& spec, bool loss, const char* op) {
  check_defined(h_f, op, "h_f");
  check_defined(s0, op, "s0");
  check_floating(h_f, op);
  check_cuda_dtype(h_f, op);
  check_same_device({&h_f, &s0}, op);
  check_same_dtype(h_f, s0, op);
  const int64_t L = int64_t(spec.acts.size());
  IDEM_CHECK(L >= 1 && L <= kIt3HeadMaxLayers, op, "the head needs 1 to ", kIt3HeadMaxLayers,
             " layers, got ", L);
  IDEM_CHECK(h_f.dim() == 2 && s0.dim() == 2 && s0.size(0) == h_f.size(0), op,
             "h_f must be (B, n_0) and s0 (B, C) with one B, got h_f ", shape_str(h_f.shape()),
             " and s0 ", shape_str(s0.shape()));
  const int64_t B = h_f.size(0), n0 = h_f.size(1), C = s0.size(1);
  IDEM_CHECK(n0 >= 1 && n0 <= kIt3HeadMaxWidth && C >= 1 && C <= kIt3HeadMaxWidth, op,
             "the features and the signal must be 1 to ", kIt3HeadMaxWidth, " wide, got h_f ",
             shape_str(h_f.shape()), " and s0 ", shape_str(s0.shape()));
  IDEM_CHECK(B >= 1 && B <= kIt3HeadMaxBatch, op, "the batch must be 1 to ", kIt3HeadMaxBatch,
             " rows, got ", B);
  IDEM_CHECK(f.size() == size_t(2 * L + 2), op, "f needs ", 2 * L + 2,
             " tensors for its ", L, " layers, got ", f.size());
  It3HeadParams p;
  p.batch = int(B), p.signal = int(C), p.layers = int(L);
  p.widths[0] = int(n0);
  for (int l = 0; l < L; ++l) {
    const Tensor& w = f[size_t(2 + 2 * l)];
    check_defined(w, op, "a layer weight");
    IDEM_CHECK(w.dim() == 2 && w.size(0) >= 1 && w.size(0) <= kIt3HeadMaxWidth, op, "f's layer ",
               l + 1, " weight must be (n, in) with 1 <= n <= ", kIt3HeadMaxWidth, ", got ",
               shape_str(w.shape()));
    p.widths[l + 1] = int(w.size(0));
  }
  IDEM_CHECK(p.widths[L] == C, op, "the last layer gives ", p.widths[L],
             " outputs but the signal has C = ", C);
  for (int l = 0; l <= L; ++l)
    IDEM_CHECK(p.widths[l] >= 1 && p.widths[l] <= kIt3HeadMaxWidth, op, "every width must be 1 to ",
               kIt3HeadMaxWidth, ", got ", p.widths[l], " at layer ", l);
  check_fused_act(spec.embed_act, spec.slope, op);
  for (int l = 0; l < L; ++l) check_fused_act(spec.acts[size_t(l)], spec.slope, op);
  p.embed_act = spec.embed_act;
  for (int l = 0; l < L; ++l) p.acts[l] = spec.acts[size_t(l)];
  p.slope = spec.slope;
  p.distance = spec.distance;
  p.loss = loss;
  check_net(f, "f", p, h_f, op);
  if (loss) {
    check_defined(h_F, op, "h_F");
    check_same_device({&h_f, &h_F}, op);
    check_same_dtype(h_f, h_F, op);
    IDEM_CHECK(h_F.shape() == h_f.shape(), op, "h_F ", shape_str(h_F.shape()),
               " must have h_f's shape ", shape_str(h_f.shape()));
    check_net(F, "F", p, h_f, op);
  }
  return p;
}

It3HeadLossResult it3_head_loss(const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                                const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                                const It3HeadSpec& spec) {
  const It3HeadParams p = it3_head_params(h_f, h_F, s0, f, F, spec, true, "it3_head_loss");
  const It3HeadLayout o = it3_head_layout(p);
  It3HeadLossResult r;
  r.loss = empty({}, h_f.options());
  r.work = empty({o.work}, h_f.options());
  dispatch(
      h_f, [&] { cpu::it3_head_fwd(r.loss, r.work, h_f, h_F, s0, f, F, p); },
      [&] { cuda::it3_head_fwd(r.loss, r.work, h_f, h_F, s0, f, F, p); });
  r.y0 = rows_of(r.work, o.y0, p);
  r.y1 = rows_of(r.work, o.y1, p);
  return r;
}

It3HeadGrads it3_head_loss_backward(const Tensor& g, const Tensor& work, const Tensor& h_f,
                                    const Tensor& h_F, const Tensor& s0,
                                    const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                                    const It3HeadSpec& spec, bool need_dh_f, bool need_dh_F,
                                    const std::vector<bool>& need_df) {
  const char* op = "it3_head_loss_backward";
  const It3HeadParams p = it3_head_params(h_f, h_F, s0, f, F, spec, true, op);
  const It3HeadLayout o = it3_head_layout(p);
  check_defined(g, op, "grad_output");
  check_defined(work, op, "work");
  check_same_device({&h_f, &g, &work}, op);
  check_same_dtype(h_f, g, op);
  check_same_dtype(h_f, work, op);
  IDEM_CHECK(g.numel() == 1 && work.numel() == o.work, op, "grad_output must hold 1 element and work ",
             o.work, ", got ", g.numel(), " and ", work.numel());
  IDEM_CHECK(need_df.size() == f.size(), op, "need_df has ", need_df.size(), " flags for ",
             f.size(), " tensors of f");
  It3HeadGrads r;
  r.df.resize(f.size());
  for (size_t k = 0; k < f.size(); ++k)
    if (need_df[k]) r.df[k] = empty(f[k].shape(), f[k].options());
  if (need_dh_f) r.dh_f = empty(h_f.shape(), h_f.options());
  if (need_dh_F) r.dh_F = empty(h_F.shape(), h_F.options());
  Tensor scratch = empty({o.scratch}, h_f.options());
  dispatch(
      h_f, [&] { cpu::it3_head_bwd(r.df, r.dh_f, r.dh_F, scratch, g, work, s0, f, F, p); },
      [&] { cuda::it3_head_bwd(r.df, r.dh_f, r.dh_F, scratch, g, work, s0, f, F, p); });
  return r;
}

Tensor feature_head(const Tensor& h, const Tensor& s, const std::vector<Tensor>& net,
                    const It3HeadSpec& spec) {
  const It3HeadParams p = it3_head_params(h, Tensor(), s, net, {}, spec, false, "feature_head");
  const It3HeadLayout o = it3_head_layout(p);
  Tensor work = empty({o.work}, h.options());
  dispatch(
      h, [&] { cpu::it3_head_fwd(Tensor(), work, h, Tensor(), s, net, {}, p); },
      [&] { cuda::it3_head_fwd(Tensor(), work, h, Tensor(), s, net, {}, p); });
  return rows_of(work, o.y0, p);
}

}  // namespace idem::ops

namespace idem {

namespace {
// On unless IDEM_IT3_HEAD_STAGED says off: the staged kernels are the faster ones (docs/it3.md).
bool staging_from_env() { return env_flag("IDEM_IT3_HEAD_STAGED", /*fallback=*/true); }
EnvSetting<bool>& staging_slot() {
  static EnvSetting<bool> on{staging_from_env};
  return on;
}
}  // namespace

bool it3_head_staging() { return staging_slot().get(); }
void set_it3_head_staging(bool on) { staging_slot().set(on); }

}  // namespace idem
