// Level L4: the recursive-input networks the experiments and benchmarks use, built once here so
// the command line, the tests, the examples and bench/compare_pytorch.py all mean the same
// model (the parameter names below are what the PyTorch side loads from safetensors).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "it3/recursive_model.h"

namespace idem::it3 {

// Tables: ConcatModel over MLP(d + dim → hidden... → dim), ReLU.
// Keys: net.layers.0.weight, net.layers.0.bias, net.layers.2.weight, ...
std::shared_ptr<RecursiveModel> make_mlp_model(int64_t in_features,
                                               const std::vector<int64_t>& hidden,
                                               SignalSpec spec, Options options = {},
                                               std::optional<uint64_t> seed = std::nullopt);

// The MNIST-style CNN of the IT³ reference code (the benchmark's `cnn`), feature injection:
//   body: 0 Conv2d(1,10,5) 1 MaxPool2d(2) 2 LeakyReLU 3 Conv2d(10,20,5) 4 MaxPool2d(2)
//         5 LeakyReLU 6 Flatten 7 Linear(320,50) 8 LeakyReLU
//   embed: 0 Linear(C,50) 1 LeakyReLU;   head: 0 Linear(50,50) 1 LeakyReLU 2 Linear(50,C)
// Input (B,1,28,28); ∅ = 1/C. Each body is a FusedSequential: MaxPool2d + LeakyReLU runs as
// one max_pool2d_act and Linear + LeakyReLU as one linear_act (push_pool, push_linear).
std::shared_ptr<RecursiveModel> make_small_cnn(int64_t classes = 10, Options options = {},
                                               std::optional<uint64_t> seed = std::nullopt);

// The demo's recursive-input CNN with BatchNorm (feature injection into the 7×7 map):
//   body: 0 Conv2d(1,c1,3,pad 1) 1 BatchNorm2d 2 ReLU 3 MaxPool2d(2)
//         4 Conv2d(c1,c2,3,pad 1) 5 BatchNorm2d 6 ReLU 7 MaxPool2d(2)        -> (B,c2,7,7)
//   embed: 0 Linear(C,c2) 1 ReLU   (added to every spatial position)
//   head: 0 Conv2d(c2,c2,3,pad 1) 1 ReLU 2 AdaptiveAvgPool2d(1) 3 Flatten 4 Linear(c2,C)
// BatchNorm only before the injection point: after it the features depend on the signal, and
// running statistics averaged over the training objective's ∅-passes and y-passes fit neither
// (measured: 25 % clean error with running statistics vs 12 % with batch statistics).
std::shared_ptr<RecursiveModel> make_bn_cnn(int64_t classes = 10, int64_t c1 = 32,
                                            int64_t c2 = 64, Options options = {},
                                            std::optional<uint64_t> seed = std::nullopt);

// The benchmark's `sage`: 4 SAGEConv (mean) layers of width 64 over node features
// (features + signal), ReLU, global mean pool, Linear(64, dim). Keys convs.0.lin_l.weight,
// convs.0.lin_l.bias, convs.0.lin_r.weight, ..., head.weight, head.bias.
std::shared_ptr<RecursiveModel> make_sage_model(int64_t node_features, int64_t width,
                                                int64_t layers, SignalSpec spec,
                                                Options options = {},
                                                std::optional<uint64_t> seed = std::nullopt);

// The airfoil GNN (MoNet as in the paper): GMMConv layers (pseudo-coordinate dim 2, kernel
// size k) of the given width, ELU-free ReLU, global mean pool, MLP head width→width→dim.
std::shared_ptr<RecursiveModel> make_gmm_model(int64_t node_features, int64_t width,
                                               int64_t layers, int64_t kernel_size,
                                               SignalSpec spec, Options options = {},
                                               std::optional<uint64_t> seed = std::nullopt);

// A batch of B grid meshes for the benchmark's `sage` model: each side×side nodes at
// positions (j/(side−1), i/(side−1)), edges right, down and down-right in both directions.
// Input::x is the (B·side², 2) positions; the graph carries batch and num_graphs.
Input grid_mesh_batch(int64_t batch, int64_t side, Device device = Device::cpu());

}  // namespace idem::it3
