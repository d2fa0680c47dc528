// CPU-vs-CUDA parity over the whole op-case table: one named test per row (and, for matmul
// rows, once more with the cuBLAS backend). For each row the same inputs run on the CPU and on
// cuda:0; forward outputs and every input's gradient (loss = sum(out * w) with one random w)
// must agree within |g - c| <= atol + rtol*|c| (scaled by the row's parity_scale); NaN/Inf must
// match; non-floating outputs must match exactly. Device allocations are poisoned with NaN bytes
// so a kernel that leaves an output element unwritten fails. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "core/kernels/conv.h"
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "tests/op_cases/op_cases.h"
#include "tests/test_util.h"

namespace idem::testing {
namespace {

constexpr double kAtol = 1e-5;
constexpr double kRtol = 1e-4;
constexpr uint64_t kSeed = 20251;

struct ParityCase {
  OpCase c;
  GemmBackend gemm = GemmBackend::hand;
  ConvBackend conv = ConvBackend::hand;
};

void PrintTo(const ParityCase& p, std::ostream* os) {
  *os << p.c.name << " [" << p.c.family << ", gemm " << gemm_backend_name(p.gemm) << ", conv "
      << conv_backend_name(p.conv) << "]";
}

// Restores the allocator's poison switch and the GEMM/conv backends when a test ends.
class DeviceSettingsGuard {
 public:
  DeviceSettingsGuard(GemmBackend b, ConvBackend cb)
      : poison_(cuda::poison_allocations()), gemm_(gemm_backend()), conv_(conv_backend()) {
    cuda::set_poison_allocations(true);
    set_gemm_backend(b);
    set_conv_backend(cb);
  }
  ~DeviceSettingsGuard() {
    cuda::set_poison_allocations(poison_);
    set_gemm_backend(gemm_);
    set_conv_backend(conv_);
  }
  DeviceSettingsGuard(const DeviceSettingsGuard&) = delete;
  DeviceSettingsGuard& operator=(const DeviceSettingsGuard&) = delete;

 private:
  bool poison_;
  GemmBackend gemm_;
  ConvBackend conv_;
};

std::string index_str(const Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  std::ostringstream os;
  os << "[";
  for (size_t d = 0; d < idx.size(); ++d) os << (d ? "," : "") << idx[d];
  os << "]";
  return os.str();
}

// Compares a CUDA result with the CPU reference.
::testing::AssertionResult same_values(const Tensor& cpu, const Tensor& gpu, double scale,
                                       const std::string& what) {
  if (cpu.defined() != gpu.defined())
    return ::testing::AssertionFailure()
           << what << ": defined on " << (cpu.defined() ? "CPU" : "CUDA") << " only";
  if (!cpu.defined()) return ::testing::AssertionSuccess();
  if (cpu.shape() != gpu.shape() || cpu.dtype() != gpu.dtype())
    return ::testing::AssertionFailure()
           << what << ": CPU " << dtype_name(cpu.dtype()) << " " << shape_str(cpu.shape())
           << " vs CUDA " << dtype_name(gpu.dtype()) << " " << shape_str(gpu.shape());
  if (!gpu.device().is_cuda())
    return ::testing::AssertionFailure() << what << ": CUDA result lives on " << gpu.device().str();
  const std::vector<double> c = cpu.to_vector<double>();
  const std::vector<double> g = gpu.to_vector<double>();
  const bool exact = !is_floating(cpu.dtype());
  const double atol = kAtol * scale, rtol = kRtol * scale;
  int64_t bad = 0;
  double worst = 0.0;
  std::ostringstream first;
  for (size_t i = 0; i < c.size(); ++i) {
    bool ok;
    if (exact)
      ok = c[i] == g[i];
    else if (std::isnan(c[i]))
      ok = std::isnan(g[i]);
    else if (std::isinf(c[i]))
      ok = g[i] == c[i];
    else if (!std::isfinite(g[i]))
      ok = false;
    else {
      const double err = std::fabs(g[i] - c[i]);
      const double tol = atol + rtol * std::fabs(c[i]);
      ok = err <= tol;
      if (!ok && err / tol > worst) worst = err / tol;
    }
    if (!ok && ++bad <= 5)
      first << "\n    at " << index_str(cpu.shape(), static_cast<int64_t>(i)) << ": CPU " << c[i]
            << ", CUDA " << g[i];
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  auto r = ::testing::AssertionFailure();
  r << what << ": " << bad << " of " << c.size() << " elements differ ("
    << (exact ? "exact match required"
              : "atol " + std::to_string(atol) + ", rtol " + std::to_string(rtol));
  if (worst > 0) r << ", worst error " << worst << "x the tolerance";
  r << ")" << first.str();
  return r;
}

class Parity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(Parity, CpuVsCuda) {
  IDEM_REQUIRE_GPU();
  const ParityCase& p = GetParam();
  const OpCase& c = p.c;
#ifndef IDEM_WITH_CUBLAS
  if (p.gemm == GemmBackend::cublas) GTEST_SKIP() << "built without IDEM_CUBLAS";
#endif
#ifndef IDEM_WITH_CUDNN
  if (p.conv == ConvBackend::cudnn) GTEST_SKIP() << "built without IDEM_CUDNN";
#endif
  DeviceSettingsGuard guard(p.gemm, p.conv);
  SCOPED_TRACE("op case " + c.name + ", seed " + std::to_string(kSeed) + ", gemm " +
               gemm_backend_name(p.gemm));

  std::vector<Tensor> in_c = make_inputs(c, kSeed, DType::f32, Device::cpu());
  std::vector<Tensor> in_g = make_inputs(c, kSeed, DType::f32, Device::cuda(0));
  ASSERT_EQ(in_c.size(), in_g.size());
  bool any_grad = false;
  for (size_t i = 0; i < in_c.size(); ++i) {
    ASSERT_TRUE(same_values(in_c[i], in_g[i], 0.0, "input " + std::to_string(i)))
        << "make_inputs gave different values on the two devices";
    if (c.inputs[i].differentiable && is_floating(in_c[i].dtype())) {
      in_c[i].requires_grad_();
      in_g[i].requires_grad_();
      any_grad = true;
    }
  }

  Tensor out_c = c.fn(in_c);
  Tensor out_g = c.fn(in_g);
  ASSERT_TRUE(same_values(out_c, out_g, c.parity_scale, "forward output"));

  if (!(c.gradcheck || c.grad_parity) || !any_grad || !is_floating(out_c.dtype()) ||
      !out_c.requires_grad())
    return;
  // One upstream gradient for both devices: d(sum(out * w))/d(out) = w.
  const Tensor w = randn(out_c.shape(), kSeed + 1, {DType::f32, Device::cpu()});
  sum(mul(out_c, w)).backward();
  sum(mul(out_g, w.to(Device::cuda(0)))).backward();
  for (size_t i = 0; i < in_c.size(); ++i) {
    if (!in_c[i].requires_grad()) continue;
    EXPECT_TRUE(
        same_values(in_c[i].grad(), in_g[i].grad(), c.parity_scale,
                    "gradient of input " + std::to_string(i) + " " + shape_str(in_c[i].shape())));
  }
}

enum class Variant { hand, cublas, cudnn };

std::vector<ParityCase> rows(Variant v) {
  std::vector<ParityCase> out;
  for (const auto& c : all_op_cases()) {
    if (v == Variant::hand)
      out.push_back({c, GemmBackend::hand, ConvBackend::hand});
    else if (v == Variant::cublas && c.family == "matmul")
      out.push_back({c, GemmBackend::cublas, ConvBackend::hand});
    else if (v == Variant::cudnn && c.family == "conv")
      out.push_back({c, GemmBackend::hand, ConvBackend::cudnn});
  }
  return out;
}

std::string row_name(const ::testing::TestParamInfo<ParityCase>& info) {
  return info.param.c.name;
}

// Every row with the hand-written kernels; matmul rows again with cuBLAS, conv rows with cuDNN.
INSTANTIATE_TEST_SUITE_P(OpCases, Parity, ::testing::ValuesIn(rows(Variant::hand)), row_name);
INSTANTIATE_TEST_SUITE_P(Cublas, Parity, ::testing::ValuesIn(rows(Variant::cublas)), row_name);
INSTANTIATE_TEST_SUITE_P(Cudnn, Parity, ::testing::ValuesIn(rows(Variant::cudnn)), row_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Parity);

}  // namespace
}  // namespace idem::testing
