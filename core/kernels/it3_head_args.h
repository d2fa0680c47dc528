// Fills the phases' argument structs (core/kernels/it3_head_phases.h) from the contract's
// tensors: one place for the CPU reference and the CUDA launch to read the operands the same way.
#pragma once
#include <vector>

#include "core/kernels/it3_head_phases.h"

namespace idem::it3_head {

// f or F's 2L + 2 tensors (E, e, W_1, b_1, …): undefined ones (F without p.loss) stay null.
template <typename T>
Net<T> net_of(const std::vector<Tensor>& t, const It3HeadParams& p) {
  Net<T> n;
  if (t.size() != size_t(2 * p.layers + 2)) return n;
  n.ew = t[0].data<T>();
  n.eb = t[1].data<T>();
  for (int l = 0; l < p.layers; ++l) n.w[l] = t[2 + 2 * l].data<T>(), n.b[l] = t[3 + 2 * l].data<T>();
  return n;
}

template <typename T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <typename T>
FwdArgs<T> fwd_args(const Tensor& loss, const Tensor& work, const Tensor& h_f, const Tensor& h_F, const Tensor& s0,
                    const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                    const It3HeadParams& p) {
  FwdArgs<T> a;
  a.p = p;
  a.h_f = h_f.data<T>();
  a.h_F = ptr_or_null<T>(h_F);
  a.s0 = s0.data<T>();
  a.f = net_of<T>(f, p);
  if (p.loss) a.F = net_of<T>(F, p);
  a.loss = ptr_or_null<T>(loss);
  a.work = work.data<T>();
  return a;
}

template <typename T>
BwdArgs<T> bwd_args(const std::vector<Tensor>& df, const Tensor& dh_f, const Tensor& dh_F,
                    const Tensor& scratch, const Tensor& g, const Tensor& work, const Tensor& s0,
                    const std::vector<Tensor>& f, const std::vector<Tensor>& F,
                    const It3HeadParams& p) {
  BwdArgs<T> a;
  a.p = p;
  a.g = g.data<T>();
  a.work = work.data<T>();
  a.s0 = s0.data<T>();
  a.f = net_of<T>(f, p);
  a.F = net_of<T>(F, p);
  a.dew = ptr_or_null<T>(df[0]);
  a.deb = ptr_or_null<T>(df[1]);
  for (int l = 0; l < p.layers; ++l)
    a.dw[l] = ptr_or_null<T>(df[2 + 2 * l]), a.db[l] = ptr_or_null<T>(df[3 + 2 * l]);
  a.dh_f = ptr_or_null<T>(dh_f);
  a.dh_F = ptr_or_null<T>(dh_F);
  a.scratch = scratch.data<T>();
  return a;
}

}  // namespace idem::it3_head
