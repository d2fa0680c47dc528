// Run-time choice of the CUDA convolution implementation (hand-written kernels or cuDNN), so
// both can be timed in one process. Initialised from IDEM_CONV=hand|cudnn.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/kernels/conv.h"

namespace idem {

namespace {
ConvBackend initial_backend() {
  const char* env = std::getenv("IDEM_CONV");
  if (env && std::strcmp(env, "cudnn") == 0) return ConvBackend::cudnn;
  return ConvBackend::hand;
}
std::atomic<ConvBackend>& backend_slot() {
  static std::atomic<ConvBackend> b{initial_backend()};
  return b;
}
}  // namespace

ConvBackend conv_backend() {
  return backend_slot().load();
}
void set_conv_backend(ConvBackend b) {
  backend_slot().store(b);
}
const char* conv_backend_name(ConvBackend b) {
  return b == ConvBackend::hand ? "hand" : "cudnn";
}

}  // namespace idem
