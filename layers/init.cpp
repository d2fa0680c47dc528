#include "layers/init.h"

#include <atomic>
#include <cmath>

#include "autograd/functions.h"

namespace idem::init {

namespace {

std::atomic<uint64_t> g_seed_base{0};
std::atomic<uint64_t> g_seed_count{0};

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Writes `values` (a fresh tensor of t's shape) into t's storage without recording history.
void assign(const Tensor& t, const Tensor& values) {
  NoGradGuard no_grad;
  t.copy_(values.to(t.dtype()));
}

void check_defined(const Tensor& t, const char* op) {
  IDEM_CHECK(t.defined(), op, "the tensor to initialize is undefined");
  IDEM_CHECK(is_floating(t.dtype()), op, "expected a floating tensor, got ", dtype_name(t.dtype()),
             " ", shape_str(t.shape()));
}

int64_t pick_fan(const Shape& s, FanMode mode) {
  auto [fi, fo] = fan_in_out(s);
  return mode == FanMode::fan_in ? fi : fo;
}

}  // namespace

void manual_seed(uint64_t seed) {
  g_seed_base.store(seed);
  g_seed_count.store(0);
}

uint64_t next_init_seed() {
  const uint64_t k = g_seed_count.fetch_add(1);
  return derive_seed(g_seed_base.load(), k);
}

uint64_t derive_seed(uint64_t seed, uint64_t stream) {
  return splitmix64(splitmix64(seed) ^ (stream * 0xD1B54A32D192ED03ull + 1));
}

std::pair<int64_t, int64_t> fan_in_out(const Shape& s) {
  IDEM_CHECK(s.size() >= 2, "init", "fan in and fan out need at least 2 dims, got ", shape_str(s));
  int64_t receptive = 1;
  for (size_t i = 2; i < s.size(); ++i) receptive *= s[i];
  return {s[1] * receptive, s[0] * receptive};
}

double calculate_gain(const std::string& nl, double param) {
  if (nl == "linear" || nl == "identity" || nl == "conv1d" || nl == "conv2d" ||
      nl == "conv_transpose2d" || nl == "sigmoid")
    return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nl == "selu") return 3.0 / 4.0;
  fail("calculate_gain", "unknown nonlinearity \"", nl,
       "\" (linear, conv2d, sigmoid, tanh, relu, leaky_relu, selu)");
}

void uniform_(const Tensor& t, double lo, double hi, uint64_t seed, uint64_t offset) {
  check_defined(t, "uniform_");
  IDEM_CHECK(lo <= hi, "uniform_", "lower bound ", lo, " exceeds upper bound ", hi);
  assign(t, uniform(t.shape(), lo, hi, seed, t.options(), offset));
}

void normal_(const Tensor& t, double mean, double std, uint64_t seed, uint64_t offset) {
  check_defined(t, "normal_");
  IDEM_CHECK(std >= 0, "normal_", "standard deviation must be >= 0, got ", std);
  Tensor z = randn(t.shape(), seed, t.options(), offset);
  NoGradGuard no_grad;
  assign(t, z * std + mean);
}

void constant_(const Tensor& t, double value) {
  check_defined(t, "constant_");
  assign(t, full(t.shape(), value, t.options()));
}
void zeros_(const Tensor& t) {
  constant_(t, 0.0);
}
void ones_(const Tensor& t) {
  constant_(t, 1.0);
}

void kaiming_uniform_(const Tensor& t, double a, uint64_t seed, uint64_t offset, FanMode mode,
                      const std::string& nonlinearity) {
  check_defined(t, "kaiming_uniform_");
  const int64_t fan = pick_fan(t.shape(), mode);
  IDEM_CHECK(fan > 0, "kaiming_uniform_", "zero fan for ", shape_str(t.shape()));
  const double bound = calculate_gain(nonlinearity, a) * std::sqrt(3.0 / fan);
  uniform_(t, -bound, bound, seed, offset);
}

void kaiming_normal_(const Tensor& t, double a, uint64_t seed, uint64_t offset, FanMode mode,
                     const std::string& nonlinearity) {
  check_defined(t, "kaiming_normal_");
  const int64_t fan = pick_fan(t.shape(), mode);
  IDEM_CHECK(fan > 0, "kaiming_normal_", "zero fan for ", shape_str(t.shape()));
  normal_(t, 0.0, calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan)), seed,
          offset);
}

void xavier_uniform_(const Tensor& t, double gain, uint64_t seed, uint64_t offset) {
  check_defined(t, "xavier_uniform_");
  auto [fi, fo] = fan_in_out(t.shape());
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(fi + fo));
  uniform_(t, -bound, bound, seed, offset);
}

void xavier_normal_(const Tensor& t, double gain, uint64_t seed, uint64_t offset) {
  check_defined(t, "xavier_normal_");
  auto [fi, fo] = fan_in_out(t.shape());
  normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fi + fo)), seed, offset);
}

void glorot_(const Tensor& t, uint64_t seed, uint64_t offset) {
  check_defined(t, "glorot_");
  IDEM_CHECK(t.dim() >= 2, "glorot_", "needs at least 2 dims, got ", shape_str(t.shape()));
  const double bound = std::sqrt(6.0 / static_cast<double>(t.size(-2) + t.size(-1)));
  uniform_(t, -bound, bound, seed, offset);
}

void default_linear_init(const Tensor& weight, const Tensor& bias, uint64_t seed) {
  kaiming_uniform_(weight, std::sqrt(5.0), seed, 0);
  if (bias.defined()) {
    const int64_t fan_in = fan_in_out(weight.shape()).first;
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    uniform_(bias, -bound, bound, seed, 1);
  }
}

}  // namespace idem::init
