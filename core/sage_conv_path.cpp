// Run-time choice of SAGEConv's CUDA forward (core/kernels/sage_conv.h): the composed ops or the
// one fused kernel, so both can be timed and compared bit for bit in one process. Initialised
// from IDEM_SAGE_CONV=composed|fused (any other value is an error: core/env.h) unless
// set_sage_conv_path came first: that call overrides the variable and never reads it.
#include "core/env.h"
#include "core/kernels/sage_conv.h"

namespace idem {

namespace {
SageConvPath initial_path() {
  return env_choice("IDEM_SAGE_CONV", {"composed", "fused"}, "composed") == "fused"
             ? SageConvPath::fused
             : SageConvPath::composed;
}
EnvSetting<SageConvPath>& path_slot() {
  static EnvSetting<SageConvPath> p{initial_path};
  return p;
}
}  // namespace

SageConvPath sage_conv_path() {
  return path_slot().get();
}
void set_sage_conv_path(SageConvPath p) {
  path_slot().set(p);
}
const char* sage_conv_path_name(SageConvPath p) {
  return p == SageConvPath::fused ? "fused" : "composed";
}

}  // namespace idem
