#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/functions.h"

namespace idem {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, GradcheckOptions opt) {
  for (const Tensor& t : inputs)
    IDEM_CHECK(!t.requires_grad() || (t.dtype() == DType::f64 && t.device().is_cpu()),
               "gradcheck", "differentiable inputs must be f64 CPU tensors, got ",
               dtype_name(t.dtype()), " ", shape_str(t.shape()), " on ", t.device().str());
  GradcheckResult res;
  for (const Tensor& t : inputs)
    if (t.requires_grad()) t.zero_grad();

  Tensor out = fn(inputs);
  IDEM_CHECK(out.dtype() == DType::f64, "gradcheck", "output must be f64, got ",
             dtype_name(out.dtype()));
  const Tensor w = randn(out.shape(), opt.seed ^ 0x9E3779B97F4A7C15ull, {DType::f64});
  auto loss_of = [&](const Tensor& o) { return sum(mul(o, w)); };
  loss_of(out).backward();

  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    Tensor analytic = x.grad();
    double* px = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double orig = px[i];
      double lp, lm;
      {
        NoGradGuard ng;
        px[i] = orig + opt.eps;
        lp = loss_of(fn(inputs)).item();
        px[i] = orig - opt.eps;
        lm = loss_of(fn(inputs)).item();
        px[i] = orig;
      }
      const double numeric = (lp - lm) / (2 * opt.eps);
      const double a = analytic.defined() ? analytic.data<double>()[i] : 0.0;
      ++res.checked;
      if (!(std::fabs(a - numeric) <= opt.atol + opt.rtol * std::fabs(numeric))) {
        std::ostringstream os;
        os.precision(10);
        os << "input " << k << " " << shape_str(x.shape()) << " element " << i
           << ": analytic " << a << " vs numeric " << numeric
           << (analytic.defined() ? "" : " (no gradient reached this input)");
        res.ok = false;
        res.message = os.str();
        return res;
      }
    }
  }
  return res;
}

}  // namespace idem
