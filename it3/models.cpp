#include "it3/models.h"

#include "core/error.h"
#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/flatten.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/mlp.h"
#include "layers/norm.h"
#include "layers/pool.h"

namespace idem::it3 {

namespace {
// Layer i of a model built from `seed` gets derive_seed(seed, i): the same seed gives the same
// weights whatever else was built before (the global stream is used only when no seed is given).
struct Seeds {
  uint64_t base;
  uint64_t next = 0;
  explicit Seeds(std::optional<uint64_t> s) : base(init::resolve_seed(s)) {}
  uint64_t operator()() { return init::derive_seed(base, next++); }
};
}  // namespace

std::shared_ptr<RecursiveModel> make_mlp_model(int64_t in_features,
                                               const std::vector<int64_t>& hidden,
                                               SignalSpec spec, Options options,
                                               std::optional<uint64_t> seed) {
  IDEM_CHECK(in_features >= 1, "make_mlp_model", "in_features must be >= 1, got ", in_features);
  std::vector<int64_t> sizes{in_features + spec.dim};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(spec.dim);
  Seeds seeds(seed);
  auto net = std::make_shared<MLP>(sizes, MlpOptions{}, options, seeds());
  return std::make_shared<ConcatModel>(net, spec);
}

// The Linear layers of the CNNs below run fused with the activation after them
// (FusedSequential::push_linear), and so do the small cnn's MaxPool2d layers (push_pool); the
// module trees and names are those of plain Sequentials.
std::shared_ptr<RecursiveModel> make_small_cnn(int64_t classes, Options o,
                                               std::optional<uint64_t> seed) {
  Seeds s(seed);
  auto body = std::make_shared<FusedSequential>();
  // Each MaxPool2d runs with the LeakyReLU after it as one max_pool2d_act (one launch each way
  // instead of two); the children and names are those of the plain Sequential.
  body->push_back(std::make_shared<Conv2d>(1, 10, 5, Conv2dOptions{}, o, s()));
  body->push_pool(std::make_shared<MaxPool2d>(2), Activation::leaky_relu);
  body->push_back(std::make_shared<Conv2d>(10, 20, 5, Conv2dOptions{}, o, s()));
  body->push_pool(std::make_shared<MaxPool2d>(2), Activation::leaky_relu);
  body->push_back(std::make_shared<Flatten>());
  body->push_linear(std::make_shared<Linear>(320, 50, true, o, s()), Activation::leaky_relu);
  auto embed = std::make_shared<FusedSequential>();
  embed->push_linear(std::make_shared<Linear>(classes, 50, true, o, s()), Activation::leaky_relu);
  auto head = std::make_shared<FusedSequential>();
  head->push_linear(std::make_shared<Linear>(50, 50, true, o, s()), Activation::leaky_relu);
  head->push_linear(std::make_shared<Linear>(50, classes, true, o, s()));
  return std::make_shared<FeatureModel>(body, embed, head, SignalSpec::classification(classes));
}

std::shared_ptr<RecursiveModel> make_bn_cnn(int64_t classes, int64_t c1, int64_t c2, Options o,
                                            std::optional<uint64_t> seed) {
  Seeds s(seed);
  Conv2dOptions pad1;
  pad1.padding = 1;
  auto body = std::make_shared<Sequential>(std::initializer_list<std::shared_ptr<Module>>{
      std::make_shared<Conv2d>(1, c1, 3, pad1, o, s()),
      std::make_shared<BatchNorm2d>(c1, BatchNormOptions{}, o), std::make_shared<ReLU>(),
      std::make_shared<MaxPool2d>(2),
      std::make_shared<Conv2d>(c1, c2, 3, pad1, o, s()),
      std::make_shared<BatchNorm2d>(c2, BatchNormOptions{}, o), std::make_shared<ReLU>(),
      std::make_shared<MaxPool2d>(2)});
  auto embed = std::make_shared<FusedSequential>();
  embed->push_linear(std::make_shared<Linear>(classes, c2, true, o, s()), Activation::relu);
  // No BatchNorm after the injection point: there the features depend on the signal, and
  // running statistics averaged over ∅-passes and y-passes would fit neither at test time.
  auto head = std::make_shared<FusedSequential>();
  head->push_back(std::make_shared<Conv2d>(c2, c2, 3, pad1, o, s()));
  head->push_back(std::make_shared<ReLU>());
  head->push_back(std::make_shared<AdaptiveAvgPool2d>(1));
  head->push_back(std::make_shared<Flatten>());
  head->push_linear(std::make_shared<Linear>(c2, classes, true, o, s()));
  return std::make_shared<FeatureModel>(body, embed, head, SignalSpec::classification(classes));
}

std::shared_ptr<RecursiveModel> make_sage_model(int64_t node_features, int64_t width,
                                                int64_t layers, SignalSpec spec, Options o,
                                                std::optional<uint64_t> seed) {
  IDEM_CHECK(layers >= 1 && width >= 1, "make_sage_model", "need layers >= 1 and width >= 1");
  Seeds s(seed);
  std::vector<std::shared_ptr<GraphLayer>> convs;
  int64_t in = node_features + spec.dim;
  for (int64_t i = 0; i < layers; ++i, in = width)
    convs.push_back(std::make_shared<SAGEConv>(in, width, true, true, o, s()));
  auto head = std::make_shared<Linear>(width, spec.dim, true, o, s());
  return std::make_shared<GraphModel>(convs, head, spec);
}

std::shared_ptr<RecursiveModel> make_gmm_model(int64_t node_features, int64_t width,
                                               int64_t layers, int64_t kernel_size,
                                               SignalSpec spec, Options o,
                                               std::optional<uint64_t> seed) {
  IDEM_CHECK(layers >= 1 && width >= 1 && kernel_size >= 1, "make_gmm_model",
             "need layers, width and kernel_size >= 1");
  Seeds s(seed);
  std::vector<std::shared_ptr<GraphLayer>> convs;
  int64_t in = node_features + spec.dim;
  for (int64_t i = 0; i < layers; ++i, in = width)
    convs.push_back(std::make_shared<GMMConv>(in, width, 2, kernel_size, true, true, o, s()));
  auto head = std::make_shared<MLP>(std::vector<int64_t>{width, width, spec.dim}, MlpOptions{}, o, s());
  return std::make_shared<GraphModel>(convs, head, spec);
}

Input grid_mesh_batch(int64_t batch, int64_t side, Device device) {
  IDEM_CHECK(batch >= 1 && side >= 2, "grid_mesh_batch", "need batch >= 1 and side >= 2, got ",
             batch, " and ", side);
  const int64_t n = side * side;
  std::vector<float> pos;
  pos.reserve(size_t(batch * n * 2));
  std::vector<int64_t> src, dst, bvec;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t off = b * n;
    for (int64_t i = 0; i < side; ++i)
      for (int64_t j = 0; j < side; ++j) {
        pos.push_back(float(double(j) / double(side - 1)));
        pos.push_back(float(double(i) / double(side - 1)));
        bvec.push_back(b);
        const int64_t v = off + i * side + j;
        auto edge = [&](int64_t di, int64_t dj) {
          const int64_t ii = i + di, jj = j + dj;
          if (ii >= side || jj >= side) return;
          const int64_t u = off + ii * side + jj;
          src.push_back(v), dst.push_back(u);
          src.push_back(u), dst.push_back(v);
        };
        edge(0, 1);  // right
        edge(1, 0);  // down
        edge(1, 1);  // down-right
      }
  }
  auto g = std::make_shared<Graph>(Graph::from_edges(batch * n, src, dst, device));
  g->batch = from_vector<int64_t>(bvec, {batch * n}, device);
  g->num_graphs = batch;
  return Input(from_vector<float>(pos, {batch * n, 2}, device), g);
}

}  // namespace idem::it3
