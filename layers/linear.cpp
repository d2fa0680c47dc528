#include "layers/linear.h"

#include "layers/init.h"

namespace idem {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Options options,
               std::optional<uint64_t> seed)
    : Module("Linear"), in_(in_features), out_(out_features) {
  IDEM_CHECK(in_features > 0 && out_features > 0, "Linear", "features must be positive, got in ",
             in_features, ", out ", out_features);
  IDEM_CHECK(is_floating(options.dtype), "Linear", "parameters must be floating, got ",
             dtype_name(options.dtype));
  weight_ = register_parameter("weight", empty({out_, in_}, options));
  if (bias) bias_ = register_parameter("bias", empty({out_}, options));
  init::default_linear_init(weight_, bias_, init::resolve_seed(seed));
}

Tensor Linear::forward(const Tensor& x) {
  IDEM_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in_, "Linear", "expected input (*, ", in_,
             "), got ", x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  // y = x·Wᵀ (+ b) on rows: (rows, in)(out, in)ᵀ -> (rows, out)
  const bool rows2d = x.dim() == 2;
  Tensor x2 = rows2d ? x : reshape(x, {-1, in_});
  Tensor y = matmul(x2, weight_, false, true);
  if (bias_.defined()) y = y + bias_;
  if (rows2d) return y;
  Shape out_shape = x.shape();
  out_shape.back() = out_;
  return reshape(y, out_shape);
}

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(in_) + ", out_features=" + std::to_string(out_) +
         ", bias=" + repr_bool(bias_.defined());
}

std::shared_ptr<Module> Linear::clone_impl() const {
  // Values are overwritten by clone(); a fixed seed avoids consuming the global init stream.
  return std::make_shared<Linear>(in_, out_, bias_.defined(), Options{weight_.dtype()}, 0);
}

}  // namespace idem
