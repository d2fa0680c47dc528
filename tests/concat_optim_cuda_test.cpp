// CUDA against the CPU, bit for bit, for two latency-trimmed kernels of the IT³ step:
//   - concat: every input of one concat copied in ONE launch (per kConcatMaxInputs non-empty
//     inputs), along dim 0, a middle dim and the last dim, with 0-width inputs, misaligned
//     views and every dtype CUDA supports (f64 is CPU-only);
//   - the fused SGD/Adam/AdamW step: many small tensors of odd sizes with some null gradients,
//     over several steps, in both launch layouts (descriptors by value for <= 32 participating
//     tensors, the GPU-resident table above that) and over several launches (> 256 tensors).
// Without a GPU every test skips.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/node.h"
#include "core/kernels/index.h"
#include "core/kernels/optim.h"
#include "core/kernels/runtime.h"
#include "core/ops/index.h"
#include "layers/optim.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::bit_equal;

// ---------------------------------------------------------------------------------------------
// concat

// A CPU tensor of `shape` with random bytes-distinct values of dtype dt.
Tensor random_tensor(const Shape& shape, DType dt, uint64_t seed) {
  if (dt == DType::f32) return randn(shape, seed, {DType::f32});
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::mt19937_64 rng(seed);
  switch (dt) {
    case DType::i64: {
      std::vector<int64_t> v(n);
      for (auto& x : v) x = static_cast<int64_t>(rng());
      return from_vector<int64_t>(v, shape);
    }
    case DType::i32: {
      std::vector<int32_t> v(n);
      for (auto& x : v) x = static_cast<int32_t>(rng());
      return from_vector<int32_t>(v, shape);
    }
    default: {
      std::vector<uint8_t> v(n);
      for (auto& x : v) x = static_cast<uint8_t>(rng());
      return from_vector<uint8_t>(v, shape);
    }
  }
}

// Concatenates inputs of `base` shape whose `dim` extent is sizes[k], on the CPU and on the GPU,
// and requires the same bytes, and ceil(non-empty inputs / 8) launches on the GPU. Odd inputs
// are views one row into a bigger tensor (a pointer that is not 16-byte aligned).
void check_concat(Shape base, int64_t dim, const std::vector<int64_t>& sizes, DType dt,
                  uint64_t seed) {
  const int64_t d = dim < 0 ? dim + static_cast<int64_t>(base.size()) : dim;
  std::string what = std::string(dtype_name(dt)) + " dim " + std::to_string(dim) + " sizes";
  for (int64_t s : sizes) what += " " + std::to_string(s);
  what += " seed " + std::to_string(seed);
  SCOPED_TRACE(what);
  std::vector<Tensor> cpu_in, gpu_in;
  int nonempty = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    Shape s = base;
    s[d] = sizes[k];
    Tensor x;
    if (k % 2 == 1) {  // a view that starts one dim-0 row into its storage
      Shape big = s;
      big[0] += 1;
      x = random_tensor(big, dt, seed + k).to(Device::cuda()).slice0(1, big[0]);
    } else {
      x = random_tensor(s, dt, seed + k).to(Device::cuda());
    }
    gpu_in.push_back(x);
    cpu_in.push_back(x.to(Device::cpu()));
    int64_t n = 1;
    for (int64_t e : s) n *= e;
    nonempty += n > 0 ? 1 : 0;
  }
  const Tensor want = ops::concat(cpu_in, dim);
  const uint64_t before = cuda::launch_count();
  const Tensor got = ops::concat(gpu_in, dim);
  const uint64_t launches = cuda::launch_count() - before;
  EXPECT_TRUE(got.device().is_cuda());
  EXPECT_TRUE(bit_equal(got, want));
  const uint64_t expected =
      want.numel() == 0 ? 0 : (nonempty + kConcatMaxInputs - 1) / kConcatMaxInputs;
  EXPECT_EQ(launches, expected);
}

class ConcatCuda : public ::testing::Test {
 protected:
  void SetUp() override { IDEM_REQUIRE_GPU(); }
};

TEST_F(ConcatCuda, MatchesCpuBitForBitAlongEveryDim) {
  // 1, 2, 3 inputs; 9 inputs of which one is empty (8 non-empty: one launch); 11 inputs of which
  // two are empty (9 non-empty: two launches); only empty inputs but one.
  const std::vector<std::vector<int64_t>> size_lists = {{5},
                                                        {3, 1},
                                                        {2, 0, 7},
                                                        {1, 3, 0, 2, 5, 1, 4, 2, 6},
                                                        {3, 0, 1, 5, 2, 7, 0, 4, 1, 6, 2},
                                                        {0, 0, 4, 0}};
  uint64_t seed = 100;
  for (DType dt : {DType::f32, DType::i64, DType::i32, DType::u8})
    for (int64_t dim : {0, 1, 2, -1})
      for (const auto& sizes : size_lists) check_concat({4, 3, 5}, dim, sizes, dt, seed++);
}

TEST_F(ConcatCuda, WideRowsUseWideAccessesAndStayExact) {
  // Rows of 4 and 8 floats: 16-byte accesses where the offsets allow, 4-byte otherwise.
  check_concat({6, 2, 4}, 1, {2, 4, 2}, DType::f32, 7);
  check_concat({6, 2, 4}, 2, {4, 8, 4, 1}, DType::f32, 8);
  check_concat({3, 16}, 1, {16, 32, 16, 16, 16, 48, 16, 16, 32}, DType::f32, 9);
  check_concat({1, 7}, 0, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, DType::f32, 10);
  check_concat({2, 1, 1}, -1, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17},
               DType::u8, 11);
}

TEST_F(ConcatCuda, EmptyOutputLaunchesNothing) {
  check_concat({0, 3}, 1, {2, 5}, DType::f32, 12);
  check_concat({2, 3}, 0, {0, 0}, DType::f32, 13);
}

// The IT³ pattern: concat(x, s) with only s needing a gradient; the backward narrows out the
// gradients of the inputs that need one.
TEST_F(ConcatCuda, BackwardMatchesCpu) {
  const Tensor x = randn({8, 13}, 21, {DType::f32});
  const Tensor s = randn({8, 1}, 22, {DType::f32});
  const Tensor r = randn({8, 3}, 23, {DType::f32});
  const Tensor w = randn({8, 17}, 24, {DType::f32});
  std::vector<Tensor> grads[2];
  for (int dev = 0; dev < 2; ++dev) {
    const Device device = dev == 0 ? Device::cpu() : Device::cuda();
    Tensor xs = x.to(device), ss = s.to(device).clone_data(), rs = r.to(device).clone_data();
    ss.requires_grad_();
    rs.requires_grad_();
    sum(mul(concat({xs, ss, rs}, 1), w.to(device))).backward();
    grads[dev] = {ss.grad(), rs.grad()};
  }
  for (int k = 0; k < 2; ++k) EXPECT_TRUE(bit_equal(grads[1][k], grads[0][k])) << "input " << k;
}

// ---------------------------------------------------------------------------------------------
// Fused optimizer step

void set_grad(const Tensor& p, const Tensor& g) {
  p.impl().autograd->grad = g;
}

// 0 SGD, 1 SGD momentum + Nesterov + weight decay, 2 SGD momentum + dampening + maximize,
// 3 Adam + weight decay, 4 AdamW, 5 Adam + weight decay + maximize.
constexpr int kKinds = 6;
std::unique_ptr<Optimizer> make_kind(int kind, const std::vector<Tensor>& ps) {
  SGDOptions o;
  switch (kind) {
    case 0:
      o.lr = 0.05;
      return std::make_unique<SGD>(ps, o);
    case 1:
      o.lr = 0.05;
      o.momentum = 0.9;
      o.weight_decay = 0.01;
      o.nesterov = true;
      return std::make_unique<SGD>(ps, o);
    case 2:
      o.lr = 0.05;
      o.momentum = 0.8;
      o.dampening = 0.3;
      o.maximize = true;
      return std::make_unique<SGD>(ps, o);
    case 3:
      return std::make_unique<Adam>(ps, AdamOptions{0.01, 0.9, 0.999, 1e-8, 0.02});
    case 4:
      return std::make_unique<AdamW>(ps, AdamWOptions{0.01, 0.85, 0.99, 1e-6, 0.05});
    default: {
      AdamOptions a{0.003, 0.8, 0.95, 1e-7, 0.1};
      a.maximize = true;
      return std::make_unique<Adam>(ps, a);
    }
  }
}

// Runs `steps` steps of every kind on the CPU and the GPU from the same start, with the same
// gradients; has_grad(step, i) says whether parameter i gets a gradient in that step (else it
// sits the step out: its own step count, and in the GPU launch it is left out). Parameters and
// state must be equal bit for bit; `launches_per_step` (when >= 0) is what one GPU step costs.
template <typename HasGrad>
void check_optim(const std::vector<Shape>& shapes, int steps, HasGrad has_grad, uint64_t seed,
                 int64_t launches_per_step = -1) {
  for (int kind = 0; kind < kKinds; ++kind) {
    SCOPED_TRACE("kind " + std::to_string(kind) + " seed " + std::to_string(seed) + ", " +
                 std::to_string(shapes.size()) + " tensors");
    std::vector<Tensor> cpu_p, gpu_p;
    for (size_t i = 0; i < shapes.size(); ++i) {
      Tensor init = randn(shapes[i], seed + i, {DType::f32});
      cpu_p.push_back(init.clone_data());
      gpu_p.push_back(init.to(Device::cuda()));
      cpu_p.back().requires_grad_();
      gpu_p.back().requires_grad_();
    }
    auto cpu_opt = make_kind(kind, cpu_p), gpu_opt = make_kind(kind, gpu_p);
    for (int s = 0; s < steps; ++s) {
      for (size_t i = 0; i < shapes.size(); ++i) {
        cpu_p[i].zero_grad();
        gpu_p[i].zero_grad();
        if (!has_grad(s, i)) continue;
        Tensor g = randn(shapes[i], seed + 7919 * (s + 1) + i, {DType::f32});
        set_grad(cpu_p[i], g);
        set_grad(gpu_p[i], g.to(Device::cuda()));
      }
      cpu_opt->step();
      const uint64_t before = cuda::launch_count();
      gpu_opt->step();
      if (launches_per_step >= 0)
        EXPECT_EQ(static_cast<int64_t>(cuda::launch_count() - before), launches_per_step)
            << "step " << s;
    }
    int bad = 0;
    for (size_t i = 0; i < shapes.size() && bad < 5; ++i)
      if (!bit_equal(gpu_p[i], cpu_p[i])) {
        ADD_FAILURE() << "param " << i << " " << shape_str(shapes[i]) << " differs";
        ++bad;
      }
    if (cpu_opt->state_buffer().defined())
      EXPECT_TRUE(bit_equal(gpu_opt->state_buffer(), cpu_opt->state_buffer())) << "state";
  }
}

class OptimCudaBits : public ::testing::Test {
 protected:
  void SetUp() override { IDEM_REQUIRE_GPU(); }
};

// mlp_tab's 8 tensors (14·30, 30, 30·20, 20, 20·10, 10, 10·1, 1) plus an empty tensor: the
// by-value layout; one launch per step.
TEST_F(OptimCudaBits, FewTensorsByValue) {
  const std::vector<Shape> shapes = {{30, 14}, {30},    {20, 30}, {20}, {10, 20},
                                     {10},     {1, 10}, {1},      {0}};
  check_optim(
      shapes, 4, [](int, size_t) { return true; }, 31, 1);
}

// Odd sizes around the 2048-element block and the 256-thread stride, with null gradients:
// 1, 3, 2049, ... some tensors sit out steps, one never has a gradient.
TEST_F(OptimCudaBits, OddSizesAndNullGradients) {
  const std::vector<Shape> shapes = {{1},    {3}, {2049},   {255}, {257},  {2048},
                                     {4097}, {},  {7, 293}, {0},   {6143}, {5}};
  check_optim(
      shapes, 5,
      [](int s, size_t i) { return i != 4 && !(s % 2 == 1 && i % 3 == 0) && !(s == 2 && i == 2); },
      41);
}

// 48 tensors of odd sizes: when more than 32 take part, the table layout (step 1: with gaps
// where tensors sit out); when fewer do (step 2, and the groups of unequal step counts that
// follow), the by-value layout. Tensor 5 never has a gradient.
TEST_F(OptimCudaBits, TableLayoutAndMixedSteps) {
  std::vector<Shape> shapes;
  for (int i = 0; i < 48; ++i) shapes.push_back({1 + (i * 97) % 2200});
  check_optim(
      shapes, 4,
      [](int s, size_t i) {
        if (i == 5) return false;
        if (s == 1) return i % 7 != 3;
        if (s == 2) return i % 4 == 0;
        return true;
      },
      51);
}

// More tensors than one launch holds (2·256 + 17): several launches per step, the middle one
// with few participants.
TEST_F(OptimCudaBits, SeveralLaunches) {
  std::vector<Shape> shapes;
  for (int i = 0; i < 2 * kOptimMaxTensorsPerLaunch + 17; ++i)
    shapes.push_back({1 + (i * 37) % 300});
  check_optim(
      shapes, 3,
      [](int, size_t i) {
        return i < 256 || i >= 512 || i % 16 == 0;  // tensors 256..511: 16 take part
      },
      61, 3);
}

}  // namespace
}  // namespace idem
