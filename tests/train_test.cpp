// End to end: a small MLP, a small CNN with BatchNorm and GCN/SAGE/GMMConv networks each fit a
// synthetic task with Adam (loss below a threshold within a fixed number of steps), on the CPU
// and, when present, on the GPU. Seeds are fixed; each CPU case takes well under a second.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/kernels/runtime.h"
#include "layers/activation.h"
#include "layers/containers.h"
#include "layers/conv.h"
#include "layers/flatten.h"
#include "layers/gnn.h"
#include "layers/init.h"
#include "layers/mlp.h"
#include "layers/norm.h"
#include "layers/optim.h"
#include "layers/pool.h"
#include "tests/test_util.h"

namespace idem {
namespace {

struct Fit {
  double initial = 0, final = 0;
};

// Runs `steps` Adam steps on loss_fn() and returns the first and the last loss.
Fit fit(Module& model, const std::function<Tensor()>& loss_fn, int steps, double lr) {
  Adam opt(model.parameters(), AdamOptions{lr});
  Fit f;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    Tensor loss = loss_fn();
    loss.backward();
    opt.step();
    if (s == 0) f.initial = loss.item();
    if (s == steps - 1) f.final = loss.item();
  }
  return f;
}

Device device_or_skip(bool gpu) {
  return gpu ? Device::cuda(0) : Device::cpu();
}

// ---- MLP: y = sin(2 x0) + x1² − x2 ----

void mlp_regression(bool gpu) {
  const Device dev = device_or_skip(gpu);
  const Options o{DType::f32, dev};
  Tensor x = uniform({256, 3}, -1, 1, 1, o);
  Tensor y;
  {
    NoGradGuard ng;
    Tensor x0 = narrow(x, 1, 0, 1), x1 = narrow(x, 1, 1, 1), x2 = narrow(x, 1, 2, 1);
    Tensor s = mul(x0, 2.0);
    y = (exp(s) - exp(neg(s))) / (exp(s) + exp(neg(s))) + square(x1) - x2;  // tanh-ish target
  }
  MLP model({3, 32, 32, 1}, {Activation::tanh}, {}, 2);
  model.to(dev);
  Fit f = fit(
      model, [&] { return mse_loss(model.forward(x), y); }, 300, 1e-2);
  EXPECT_LT(f.final, 0.01) << "initial " << f.initial << " (seeds 1, 2)";
  EXPECT_LT(f.final, 0.05 * f.initial);
}

TEST(Train, MlpRegressionCpu) {
  mlp_regression(false);
}
TEST(Train, MlpRegressionCuda) {
  IDEM_REQUIRE_GPU();
  mlp_regression(true);
}

// ---- CNN with BatchNorm: 8x8 images of a horizontal bar, a vertical bar or a diagonal ----

void cnn_classification(bool gpu) {
  const Device dev = device_or_skip(gpu);
  const int64_t n = 48, classes = 3;
  std::vector<float> img(n * 64, 0.f);
  std::vector<int64_t> label(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i % classes, pos = 1 + (i / classes) % 6;
    label[i] = c;
    for (int64_t k = 0; k < 8; ++k) {
      const int64_t r = c == 0   ? pos
                        : c == 1 ? k
                                 : k,
                    col = c == 0   ? k
                          : c == 1 ? pos
                                   : (k + pos) % 8;
      img[i * 64 + r * 8 + col] = 1.f;
    }
  }
  Tensor x = from_vector<float>(img, {n, 1, 8, 8}).to(dev);
  {
    NoGradGuard ng;
    x = x + randn({n, 1, 8, 8}, 3, {DType::f32, dev}) * 0.2;
  }
  Tensor y = from_vector<int64_t>(label, {n}).to(dev);

  Conv2dOptions pad1;
  pad1.padding = 1;
  init::manual_seed(4);
  Sequential model{std::make_shared<Conv2d>(1, 8, 3, pad1),
                   std::make_shared<BatchNorm2d>(8),
                   std::make_shared<ReLU>(),
                   std::make_shared<MaxPool2d>(2),
                   std::make_shared<Conv2d>(8, 8, 3, pad1),
                   std::make_shared<BatchNorm2d>(8),
                   std::make_shared<ReLU>(),
                   std::make_shared<AdaptiveAvgPool2d>(1),
                   std::make_shared<Flatten>(),
                   std::make_shared<Linear>(8, classes)};
  model.to(dev);
  Fit f = fit(
      model, [&] { return cross_entropy(model.forward(x), y); }, 60, 2e-2);
  EXPECT_LT(f.final, 0.1) << "initial " << f.initial << " (seeds 3, 4)";
  // Evaluation mode (running statistics) still classifies the training set.
  model.eval();
  Tensor pred = argmax(model.forward(x), 1);
  auto p = pred.to_vector<int64_t>();
  int correct = 0;
  for (int64_t i = 0; i < n; ++i) correct += p[i] == label[i];
  EXPECT_GE(correct, n * 9 / 10);
  EXPECT_EQ(model.at<BatchNorm2d>(1)->num_batches_tracked().item(), 60);
}

TEST(Train, CnnWithBatchNormCpu) {
  cnn_classification(false);
}
TEST(Train, CnnWithBatchNormCuda) {
  IDEM_REQUIRE_GPU();
  cnn_classification(true);
}

// ---- GNNs: graph regression on batched rings with chords ----
// Target per graph: mean_v x_v0 · (mean of v's neighbours' x_1) — needs one round of message
// passing and a product, so a 2-layer GNN with pooling has to learn something real.

struct GraphTask {
  Graph g;
  Tensor y;
};

GraphTask graph_task(Device dev) {
  std::vector<Graph> graphs;
  std::vector<float> targets;
  for (int gi = 0; gi < 16; ++gi) {
    const int64_t v = 6 + gi % 5;
    std::vector<int64_t> src, dst;
    auto link = [&](int64_t a, int64_t b) {
      src.push_back(a), dst.push_back(b), src.push_back(b), dst.push_back(a);
    };
    for (int64_t i = 0; i < v; ++i) link(i, (i + 1) % v);
    link(0, v / 2);
    Graph g = Graph::from_edges(v, src, dst);
    g.x = randn({v, 2}, 100 + gi);
    // Pseudo-coordinates: node positions on a unit circle, u = pos[dst] − pos[src].
    std::vector<float> attr;
    const double pi = 3.141592653589793;
    for (size_t e = 0; e < src.size(); ++e) {
      attr.push_back(float(std::cos(2 * pi * dst[e] / v) - std::cos(2 * pi * src[e] / v)));
      attr.push_back(float(std::sin(2 * pi * dst[e] / v) - std::sin(2 * pi * src[e] / v)));
    }
    g.edge_attr = from_vector<float>(attr, {static_cast<int64_t>(src.size()), 2});
    auto xv = g.x.to_vector<float>();
    double t = 0;
    for (int64_t n = 0; n < v; ++n) {
      double m = 0;
      int deg = 0;
      for (size_t e = 0; e < src.size(); ++e)
        if (dst[e] == n) m += xv[src[e] * 2 + 1], ++deg;
      t += xv[n * 2] * m / deg;
    }
    targets.push_back(float(t / v));
    graphs.push_back(g);
  }
  GraphTask task{batch_graphs(graphs).to(dev), from_vector<float>(targets, {16, 1}, dev)};
  return task;
}

// conv -> relu -> conv -> relu -> global mean pool -> linear
class GraphNet : public Module {
 public:
  GraphNet(std::shared_ptr<GraphLayer> c1, std::shared_ptr<GraphLayer> c2)
      : Module("GraphNet"), c1_(std::move(c1)), c2_(std::move(c2)) {
    register_module("conv1", c1_);
    register_module("conv2", c2_);
    head_ = register_module("head", std::make_shared<Linear>(32, 1, true, Options{}, 9));
  }
  Tensor forward(const Tensor& x, const Graph& g) {
    Tensor h = relu(c2_->forward(relu(c1_->forward(x, g)), g));
    return head_->forward(pool_.forward(h, g));
  }

 private:
  std::shared_ptr<GraphLayer> c1_, c2_;
  std::shared_ptr<Linear> head_;
  GlobalPool pool_{GraphPool::mean};
};

void gnn_regression(const std::string& kind, bool gpu) {
  const Device dev = device_or_skip(gpu);
  GraphTask task = graph_task(dev);
  init::manual_seed(7);
  std::shared_ptr<GraphLayer> c1, c2;
  if (kind == "gcn") c1 = std::make_shared<GCNConv>(2, 32), c2 = std::make_shared<GCNConv>(32, 32);
  if (kind == "sage")
    c1 = std::make_shared<SAGEConv>(2, 32), c2 = std::make_shared<SAGEConv>(32, 32);
  if (kind == "gmm")
    c1 = std::make_shared<GMMConv>(2, 32, 2, 3), c2 = std::make_shared<GMMConv>(32, 32, 2, 3);
  GraphNet net(c1, c2);
  net.to(dev);
  Tensor var0;
  {
    NoGradGuard ng;
    var0 = mean(square(task.y - mean(task.y)));
  }
  Fit f = fit(
      net, [&] { return mse_loss(net.forward(task.g.x, task.g), task.y); }, 100, 1e-2);
  EXPECT_LT(f.final, 0.2 * var0.item()) << kind << ": initial " << f.initial << ", target variance "
                                        << var0.item() << " (seeds 100.., 7, 9)";
}

TEST(Train, GcnCpu) {
  gnn_regression("gcn", false);
}
TEST(Train, SageCpu) {
  gnn_regression("sage", false);
}
TEST(Train, GmmCpu) {
  gnn_regression("gmm", false);
}
TEST(Train, GnnCuda) {
  IDEM_REQUIRE_GPU();
  for (const char* k : {"gcn", "sage", "gmm"}) gnn_regression(k, true);
}

}  // namespace
}  // namespace idem
