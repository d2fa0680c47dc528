// Module checkpoints in safetensors: the file holds PyTorch-style names, and a model loaded from
// it reproduces the saved model's outputs bit for bit (CPU, and GPU when present).
#include <gtest/gtest.h>

#include <algorithm>

#include "core/kernels/runtime.h"
#include "layers/activation.h"
#include "layers/checkpoint.h"
#include "layers/containers.h"
#include "layers/conv.h"
#include "layers/flatten.h"
#include "layers/linear.h"
#include "layers/norm.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::bit_equal;
using testing::expect_error;
using testing::TempDir;

std::shared_ptr<Sequential> small_cnn(uint64_t seed, Device device) {
  Options o{DType::f32, device};
  auto net = std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Conv2d>(1, 4, 3, Conv2dOptions{}, o, seed),
      std::make_shared<BatchNorm2d>(4, BatchNormOptions{}, o), std::make_shared<ReLU>(),
      std::make_shared<Flatten>(), std::make_shared<Linear>(4 * 6 * 6, 3, true, o, seed + 1)});
  return net;
}

void round_trip(Device device) {
  auto a = small_cnn(1, device);
  Tensor x = randn({5, 1, 8, 8}, 7, {DType::f32, device});
  a->forward(x);  // training mode: moves the BatchNorm running statistics
  a->eval();
  const Tensor want = a->forward(x).to(Device::cpu());

  TempDir dir("idem_ckpt");
  const std::string path = dir.file("cnn.safetensors");
  save_checkpoint(*a, path);
  auto b = small_cnn(99, device);  // different initial weights
  b->eval();
  load_checkpoint(*b, path);
  const Tensor got = b->forward(x).to(Device::cpu());
  ASSERT_EQ(got.shape(), want.shape());
  EXPECT_TRUE(bit_equal(got, want)) << "reloaded model's outputs differ";

  // The names are PyTorch's, buffers included.
  NamedTensors file = load_safetensors(path);
  std::vector<std::string> names;
  for (const auto& [n, t] : file) names.push_back(n);
  for (const char* n : {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                        "1.running_var", "1.num_batches_tracked", "4.weight", "4.bias"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
}

TEST(Checkpoint, ReloadedModelReproducesOutputsBitForBit) { round_trip(Device::cpu()); }

TEST(Checkpoint, ReloadedModelReproducesOutputsBitForBitOnGpu) {
  IDEM_REQUIRE_GPU();
  round_trip(Device::cuda(0));
}

TEST(Checkpoint, MismatchedModelIsAClearErrorAndLeavesWeightsUntouched) {
  auto a = small_cnn(1, Device::cpu());
  TempDir dir("idem_ckpt");
  const std::string path = dir.file("mismatch.safetensors");
  save_checkpoint(*a, path);
  Linear other(3, 2);
  Tensor before = other.weight().clone_data();
  expect_error([&] { load_checkpoint(other, path); }, "load_state_dict");
  EXPECT_TRUE(bit_equal(other.weight(), before));
  EXPECT_THROW(load_checkpoint(other, dir.file("does_not_exist.safetensors")), Error);
}

}  // namespace
}  // namespace idem
