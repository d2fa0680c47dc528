#include "layers/conv.h"

#include "layers/init.h"

namespace idem {

std::string Hw::str() const {
  return "(" + std::to_string(h) + ", " + std::to_string(w) + ")";
}

namespace {

void check_conv_config(const char* op, int64_t in, int64_t out, Hw k, Hw stride, Hw pad, Hw dil,
                       int64_t groups, DType dtype) {
  IDEM_CHECK(in > 0 && out > 0, op, "channels must be positive, got in ", in, ", out ", out);
  IDEM_CHECK(groups > 0 && in % groups == 0 && out % groups == 0, op, "groups ", groups,
             " must divide in_channels ", in, " and out_channels ", out);
  IDEM_CHECK(k.h > 0 && k.w > 0, op, "kernel_size must be positive, got ", k.str());
  IDEM_CHECK(stride.h > 0 && stride.w > 0, op, "stride must be positive, got ", stride.str());
  IDEM_CHECK(pad.h >= 0 && pad.w >= 0, op, "padding must be >= 0, got ", pad.str());
  IDEM_CHECK(dil.h > 0 && dil.w > 0, op, "dilation must be positive, got ", dil.str());
  IDEM_CHECK(is_floating(dtype), op, "parameters must be floating, got ", dtype_name(dtype));
}

void check_input(const char* op, const Tensor& x, int64_t in) {
  IDEM_CHECK(x.defined() && x.dim() == 4 && x.size(1) == in, op, "expected input (N, ", in,
             ", H, W), got ", x.defined() ? shape_str(x.shape()) : std::string("undefined"));
}

}  // namespace

// ---- Conv2d ----

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, Hw kernel_size, Conv2dOptions opt,
               Options options, std::optional<uint64_t> seed)
    : Module("Conv2d"), in_(in_channels), out_(out_channels), kernel_(kernel_size), opt_(opt) {
  check_conv_config("Conv2d", in_, out_, kernel_, opt.stride, opt.padding, opt.dilation, opt.groups,
                    options.dtype);
  weight_ =
      register_parameter("weight", empty({out_, in_ / opt.groups, kernel_.h, kernel_.w}, options));
  if (opt.bias) bias_ = register_parameter("bias", empty({out_}, options));
  init::default_linear_init(weight_, bias_, init::resolve_seed(seed));
}

Conv2dParams Conv2d::params() const {
  Conv2dParams p;
  p.stride_h = opt_.stride.h, p.stride_w = opt_.stride.w;
  p.pad_h = opt_.padding.h, p.pad_w = opt_.padding.w;
  p.dilation_h = opt_.dilation.h, p.dilation_w = opt_.dilation.w;
  p.groups = opt_.groups;
  return p;
}

Tensor Conv2d::forward(const Tensor& x) {
  check_input("Conv2d", x, in_);
  return conv2d(x, weight_, bias_, params());
}

std::string Conv2d::extra_repr() const {
  std::string s = std::to_string(in_) + ", " + std::to_string(out_) +
                  ", kernel_size=" + kernel_.str() + ", stride=" + opt_.stride.str();
  if (opt_.padding.h || opt_.padding.w) s += ", padding=" + opt_.padding.str();
  if (opt_.dilation.h != 1 || opt_.dilation.w != 1) s += ", dilation=" + opt_.dilation.str();
  if (opt_.groups != 1) s += ", groups=" + std::to_string(opt_.groups);
  if (!bias_.defined()) s += ", bias=False";
  return s;
}

std::shared_ptr<Module> Conv2d::clone_impl() const {
  return std::make_shared<Conv2d>(in_, out_, kernel_, opt_, Options{weight_.dtype()}, 0);
}

// ---- ConvTranspose2d ----

ConvTranspose2d::ConvTranspose2d(int64_t in_channels, int64_t out_channels, Hw kernel_size,
                                 ConvTranspose2dOptions opt, Options options,
                                 std::optional<uint64_t> seed)
    : Module("ConvTranspose2d"),
      in_(in_channels),
      out_(out_channels),
      kernel_(kernel_size),
      opt_(opt) {
  check_conv_config("ConvTranspose2d", in_, out_, kernel_, opt.stride, opt.padding, opt.dilation,
                    opt.groups, options.dtype);
  IDEM_CHECK(opt.output_padding.h >= 0 && opt.output_padding.w >= 0 &&
                 (opt.output_padding.h < opt.stride.h || opt.output_padding.h < opt.dilation.h) &&
                 (opt.output_padding.w < opt.stride.w || opt.output_padding.w < opt.dilation.w),
             "ConvTranspose2d", "output_padding ", opt.output_padding.str(),
             " must be smaller than stride ", opt.stride.str(), " or dilation ",
             opt.dilation.str());
  weight_ =
      register_parameter("weight", empty({in_, out_ / opt.groups, kernel_.h, kernel_.w}, options));
  if (opt.bias) bias_ = register_parameter("bias", empty({out_}, options));
  init::default_linear_init(weight_, bias_, init::resolve_seed(seed));
}

ConvTranspose2dParams ConvTranspose2d::params() const {
  ConvTranspose2dParams p;
  p.stride_h = opt_.stride.h, p.stride_w = opt_.stride.w;
  p.pad_h = opt_.padding.h, p.pad_w = opt_.padding.w;
  p.output_pad_h = opt_.output_padding.h, p.output_pad_w = opt_.output_padding.w;
  p.dilation_h = opt_.dilation.h, p.dilation_w = opt_.dilation.w;
  p.groups = opt_.groups;
  return p;
}

Tensor ConvTranspose2d::forward(const Tensor& x) {
  check_input("ConvTranspose2d", x, in_);
  return conv_transpose2d(x, weight_, bias_, params());
}

std::string ConvTranspose2d::extra_repr() const {
  std::string s = std::to_string(in_) + ", " + std::to_string(out_) +
                  ", kernel_size=" + kernel_.str() + ", stride=" + opt_.stride.str();
  if (opt_.padding.h || opt_.padding.w) s += ", padding=" + opt_.padding.str();
  if (opt_.output_padding.h || opt_.output_padding.w)
    s += ", output_padding=" + opt_.output_padding.str();
  if (opt_.dilation.h != 1 || opt_.dilation.w != 1) s += ", dilation=" + opt_.dilation.str();
  if (opt_.groups != 1) s += ", groups=" + std::to_string(opt_.groups);
  if (!bias_.defined()) s += ", bias=False";
  return s;
}

std::shared_ptr<Module> ConvTranspose2d::clone_impl() const {
  return std::make_shared<ConvTranspose2d>(in_, out_, kernel_, opt_, Options{weight_.dtype()}, 0);
}

}  // namespace idem
