// Run-time choice of the CUDA convolution implementation (hand-written kernels or cuDNN), so
// both can be timed in one process. Initialised from IDEM_CONV=hand|cudnn (any other value is an
// error: core/env.h) unless set_conv_backend came first: that call overrides the variable and
// never reads it (EnvSetting).
#include "core/env.h"
#include "core/kernels/conv.h"

namespace idem {

namespace {
ConvBackend initial_backend() {
  return env_choice("IDEM_CONV", {"hand", "cudnn"}, "hand") == "cudnn" ? ConvBackend::cudnn
                                                                       : ConvBackend::hand;
}
EnvSetting<ConvBackend>& backend_slot() {
  static EnvSetting<ConvBackend> b{initial_backend};
  return b;
}
}  // namespace

ConvBackend conv_backend() {
  return backend_slot().get();
}
void set_conv_backend(ConvBackend b) {
  backend_slot().set(b);
}
const char* conv_backend_name(ConvBackend b) {
  return b == ConvBackend::hand ? "hand" : "cudnn";
}

}  // namespace idem
