// Level L3: parameter initialization, PyTorch's defaults, seeded through idem's Philox.
//
// Every initializer fills an existing tensor in place (values only; storage, requires_grad
// and device are kept) from a counter-based draw (seed, offset): the same seed gives the same
// numbers on the CPU and the GPU, and two draws with one seed but different offsets are
// independent. Layers draw their seed from next_init_seed() unless given one explicitly, so
// `manual_seed(s)` followed by building a model reproduces it exactly, as torch.manual_seed.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "core/tensor.h"

namespace idem::init {

// ---- seeds ----
// Resets the global initialization stream (default 0 at start-up).
void manual_seed(uint64_t seed);
// The next seed of the global stream (thread-safe; each call returns a fresh one).
uint64_t next_init_seed();
// `seed` if given, else next_init_seed().
inline uint64_t resolve_seed(std::optional<uint64_t> seed) {
  return seed ? *seed : next_init_seed();
}
// A child seed, well mixed (splitmix64), so a builder can give layer i the seed derive(s, i).
uint64_t derive_seed(uint64_t seed, uint64_t stream);

// ---- fans and gains (torch.nn.init) ----
// fan_in = size(1)·receptive, fan_out = size(0)·receptive, receptive = Π size(2..).
// requires: t.dim() >= 2.
std::pair<int64_t, int64_t> fan_in_out(const Shape& shape);
enum class FanMode : uint8_t { fan_in, fan_out };
// "linear"/"conv2d"/"sigmoid" 1, "tanh" 5/3, "relu" √2, "leaky_relu" √(2/(1+a²)), "selu" 3/4.
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

// ---- fills (all in place, no autograd history) ----
void uniform_(const Tensor& t, double lo, double hi, uint64_t seed, uint64_t offset = 0);
void normal_(const Tensor& t, double mean, double std, uint64_t seed, uint64_t offset = 0);
void constant_(const Tensor& t, double value);
void zeros_(const Tensor& t);
void ones_(const Tensor& t);
// U(−b, b), b = gain·√(3/fan) with gain = calculate_gain(nonlinearity, a). PyTorch's Linear
// and Conv weights use a = √5, nonlinearity "leaky_relu", fan_in: b = 1/√fan_in.
void kaiming_uniform_(const Tensor& t, double a, uint64_t seed, uint64_t offset = 0,
                      FanMode mode = FanMode::fan_in,
                      const std::string& nonlinearity = "leaky_relu");
// N(0, σ²), σ = gain/√fan (default: He init for ReLU, fan_in).
void kaiming_normal_(const Tensor& t, double a, uint64_t seed, uint64_t offset = 0,
                     FanMode mode = FanMode::fan_in, const std::string& nonlinearity = "relu");
// U(−b, b), b = gain·√(6/(fan_in+fan_out)).
void xavier_uniform_(const Tensor& t, double gain, uint64_t seed, uint64_t offset = 0);
// N(0, σ²), σ = gain·√(2/(fan_in+fan_out)).
void xavier_normal_(const Tensor& t, double gain, uint64_t seed, uint64_t offset = 0);
// PyG's glorot: U(−b, b), b = √(6/(size(−2)+size(−1))) (last two dims only).
void glorot_(const Tensor& t, uint64_t seed, uint64_t offset = 0);

// PyTorch's default for Linear/Conv: weight kaiming_uniform(a=√5), bias U(−1/√fan_in, 1/√fan_in)
// with fan_in from the weight. bias may be undefined. Uses offsets 0 (weight) and 1 (bias).
void default_linear_init(const Tensor& weight, const Tensor& bias, uint64_t seed);

}  // namespace idem::init
