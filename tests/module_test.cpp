// Module: parameter/buffer names, state_dict round trips and their errors, copy_from (bit-exact,
// storage kept), clone (independent), freezing, modes, devices, dtypes and the printout.
#include <gtest/gtest.h>

#include <cstring>

#include "core/kernels/runtime.h"
#include "layers/activation.h"
#include "layers/containers.h"
#include "layers/dropout.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/mlp.h"
#include "layers/norm.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::bit_equal;

// A hand-written model: fc -> bn -> relu -> head, as a user would write one.
class Net : public Module {
 public:
  explicit Net(uint64_t seed) : Module("Net"), seed_(seed) {
    fc = register_module("fc", std::make_shared<Linear>(3, 4, true, Options{}, seed));
    bn = register_module("bn", std::make_shared<BatchNorm1d>(4));
    head = register_module("head", std::make_shared<Linear>(4, 2, false, Options{}, seed + 1));
  }
  Tensor forward(const Tensor& x) override {
    return head->forward(relu(bn->forward(fc->forward(x))));
  }
  std::shared_ptr<Linear> fc, head;
  std::shared_ptr<BatchNorm1d> bn;

 protected:
  std::shared_ptr<Module> clone_impl() const override { return std::make_shared<Net>(seed_); }

 private:
  uint64_t seed_;
};

std::vector<std::string> names(const NamedTensors& nt) {
  std::vector<std::string> out;
  for (const auto& [n, t] : nt) out.push_back(n);
  return out;
}

Tensor input(uint64_t seed, int64_t n = 5, int64_t f = 3) {
  return randn({n, f}, seed);
}

TEST(Module, PyTorchStyleNames) {
  Sequential seq{std::make_shared<Linear>(3, 4), std::make_shared<ReLU>(),
                 std::make_shared<Linear>(4, 2, false)};
  EXPECT_EQ(names(seq.named_parameters()),
            (std::vector<std::string>{"0.weight", "0.bias", "2.weight"}));

  MLP mlp({3, 8, 1});
  EXPECT_EQ(names(mlp.named_parameters()),
            (std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.2.weight",
                                      "layers.2.bias"}));

  Net net(1);
  EXPECT_EQ(
      names(net.named_parameters()),
      (std::vector<std::string>{"fc.weight", "fc.bias", "bn.weight", "bn.bias", "head.weight"}));
  EXPECT_EQ(
      names(net.named_buffers()),
      (std::vector<std::string>{"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}));
  Tensor nbt = net.buffer("bn.num_batches_tracked");
  EXPECT_EQ(nbt.dtype(), DType::i64);
  EXPECT_EQ(nbt.dim(), 0);
  EXPECT_EQ(nbt.item(), 0);
  EXPECT_EQ(net.parameter("fc.weight").shape(), (Shape{4, 3}));
  EXPECT_TRUE(net.has_parameter("head.weight"));
  EXPECT_FALSE(net.has_parameter("head.bias"));
  EXPECT_TRUE(net.has_buffer("bn.running_var"));
  EXPECT_EQ(net.num_parameters(), 4 * 3 + 4 + 4 + 4 + 2 * 4);
  EXPECT_EQ(net.child("bn")->type_name(), "BatchNorm1d");
  EXPECT_THROW(net.parameter("fc.nope"), Error);
  EXPECT_THROW(net.child("nope"), Error);

  std::vector<std::string> mods;
  for (auto& [n, m] : net.named_modules()) mods.push_back(n);
  EXPECT_EQ(mods, (std::vector<std::string>{"", "fc", "bn", "head"}));
  // Parameters are leaves that require grad; buffers do not.
  for (const Tensor& p : net.parameters()) EXPECT_TRUE(p.requires_grad() && p.is_leaf());
  for (const Tensor& b : net.buffers()) EXPECT_FALSE(b.requires_grad());
}

TEST(Module, SharedParametersAreListedOnce) {
  auto lin = std::make_shared<Linear>(3, 3);
  Sequential seq{lin, std::make_shared<ReLU>(), lin};
  EXPECT_EQ(names(seq.named_parameters()), (std::vector<std::string>{"0.weight", "0.bias"}));
  EXPECT_THROW(seq.clone(), Error);  // tied weights cannot be cloned (documented)
}

TEST(Module, BadRegistrationThrows) {
  class Bad : public Module {
   public:
    explicit Bad(int what) : Module("Bad") {
      register_parameter("w", zeros({2}));
      if (what == 0) register_parameter("w", zeros({2}));                // duplicate
      if (what == 1) register_buffer("a.b", zeros({2}));                 // dotted
      if (what == 2) register_parameter("i", zeros({2}, {DType::i64}));  // integer param
      if (what == 3) register_module("w", std::make_shared<ReLU>());     // clash with a param
    }
  };
  for (int i = 0; i < 4; ++i) EXPECT_THROW(Bad{i}, Error) << i;
}

TEST(Module, StateDictRoundTripReproducesOutputs) {
  Net a(10), b(20);
  {  // give a's BatchNorm non-trivial running statistics
    a.train();
    NoGradGuard ng;
    a.forward(input(3, 16));
  }
  a.eval();
  b.eval();
  Tensor x = input(4);
  EXPECT_FALSE(bit_equal(a.forward(x), b.forward(x)));
  b.load_state_dict(a.state_dict());
  EXPECT_TRUE(bit_equal(a.forward(x), b.forward(x)));
  EXPECT_EQ(b.buffer("bn.num_batches_tracked").item(), 1);
  // state_dict entries alias the module's storage.
  StateDict sd = a.state_dict();
  EXPECT_TRUE(sd.at("fc.weight").same_storage(a.fc->weight()));
  EXPECT_EQ(sd.size(), 8u);
}

TEST(Module, LoadStateDictErrorsNameEveryProblemAndWriteNothing) {
  Net a(1), b(2);
  const Tensor before = b.fc->weight().clone_data();
  StateDict sd = a.state_dict();
  sd.erase("bn.running_var");
  sd["extra.weight"] = zeros({1});
  sd["head.weight"] = zeros({2, 5});
  try {
    b.load_state_dict(sd);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("load_state_dict"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"bn.running_var\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"extra.weight\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("head.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(2x5)"), std::string::npos) << msg;
  }
  EXPECT_TRUE(bit_equal(b.fc->weight(), before));  // validated before writing
  // Non-strict ignores missing/unexpected names, but never a shape mismatch.
  EXPECT_THROW(b.load_state_dict(sd, false), Error);
  sd["head.weight"] = a.head->weight();
  b.load_state_dict(sd, /*strict=*/false);
  EXPECT_TRUE(bit_equal(b.fc->weight(), a.fc->weight()));
  // dtype is converted on load.
  StateDict sd64;
  for (auto& [n, t] : a.state_dict()) sd64[n] = is_floating(t.dtype()) ? t.to(DType::f64) : t;
  b.load_state_dict(sd64);
  EXPECT_EQ(b.fc->weight().dtype(), DType::f32);
  EXPECT_TRUE(bit_equal(b.fc->weight(), a.fc->weight()));
}

TEST(Module, CopyFromIsBitExactAndKeepsStorage) {
  Net a(5), b(6);
  {
    NoGradGuard ng;
    a.forward(input(7, 8));  // running stats and num_batches_tracked differ from b's
  }
  std::vector<void*> ptrs;
  for (const Tensor& t : b.parameters()) ptrs.push_back(t.raw_data());
  for (const Tensor& t : b.buffers()) ptrs.push_back(t.raw_data());
  b.copy_from(a);
  size_t i = 0;
  for (const Tensor& t : b.parameters()) EXPECT_EQ(t.raw_data(), ptrs[i++]);
  for (const Tensor& t : b.buffers()) EXPECT_EQ(t.raw_data(), ptrs[i++]);
  auto pa = a.named_parameters(), pb = b.named_parameters();
  for (size_t k = 0; k < pa.size(); ++k)
    EXPECT_TRUE(bit_equal(pa[k].second, pb[k].second)) << pa[k].first;
  auto ba = a.named_buffers(), bb = b.named_buffers();
  for (size_t k = 0; k < ba.size(); ++k)
    EXPECT_TRUE(bit_equal(ba[k].second, bb[k].second)) << ba[k].first;
  // Still independent storage: changing a does not change b.
  a.fc->weight().copy_(zeros({4, 3}));
  EXPECT_NE(b.fc->weight().at({0, 0}), 0.0);

  MLP other({3, 4, 2});
  EXPECT_THROW(b.copy_from(other), Error);
  Linear l1(3, 4), l2(3, 5);
  EXPECT_THROW(l1.copy_from(l2), Error);
}

TEST(Module, CloneIsIndependentAndKeepsFlagsAndModes) {
  Net a(11);
  a.head->set_requires_grad(false);
  a.eval();
  a.bn->train();
  auto c = clone_as(a);
  EXPECT_EQ(c->repr(), a.repr());
  auto pa = a.named_parameters(), pc = c->named_parameters();
  ASSERT_EQ(pa.size(), pc.size());
  for (size_t k = 0; k < pa.size(); ++k) {
    EXPECT_EQ(pa[k].first, pc[k].first);
    EXPECT_TRUE(bit_equal(pa[k].second, pc[k].second));
    EXPECT_FALSE(pa[k].second.same_storage(pc[k].second));
    EXPECT_EQ(pa[k].second.requires_grad(), pc[k].second.requires_grad()) << pa[k].first;
    EXPECT_TRUE(pc[k].second.is_leaf());
  }
  EXPECT_FALSE(c->is_training());
  EXPECT_TRUE(c->bn->is_training());
  EXPECT_FALSE(c->fc->is_training());
  // Members of the clone point at the clone's registered tensors.
  EXPECT_TRUE(c->fc->weight().same_storage(c->parameter("fc.weight")));
  c->fc->weight().copy_(zeros({4, 3}));
  EXPECT_NE(a.fc->weight().at({0, 0}), 0.0);

  // Containers clone deeply too, and clones of clones keep working.
  MLP m({3, 5, 2}, {Activation::tanh, MlpNorm::layer, 0.25});
  auto mc = clone_as(m);
  auto mcc = clone_as(*mc);
  Tensor x = input(12);
  m.eval(), mcc->eval();
  EXPECT_TRUE(bit_equal(m.forward(x), mcc->forward(x)));
  EXPECT_EQ(mcc->repr(), m.repr());
}

TEST(Module, FrozenLinearPassesGradientToItsInputOnly) {
  auto first = std::make_shared<Linear>(3, 4);
  auto frozen = std::make_shared<Linear>(4, 2);
  Sequential seq{first, std::make_shared<Tanh>(), frozen};
  frozen->set_requires_grad(false);
  EXPECT_FALSE(frozen->weight().requires_grad());
  Tensor x = input(13);
  x.requires_grad_();
  sum(square(seq.forward(x))).backward();
  EXPECT_FALSE(frozen->weight().grad().defined());
  EXPECT_FALSE(frozen->bias().grad().defined());
  ASSERT_TRUE(first->weight().grad().defined());
  ASSERT_TRUE(x.grad().defined());
  EXPECT_GT(sum(abs(x.grad())).item(), 0.0);
  // Unfreeze: the weight gets a gradient again; zero_grad drops every gradient.
  seq.set_requires_grad(true);
  sum(square(seq.forward(x))).backward();
  EXPECT_TRUE(frozen->weight().grad().defined());
  seq.zero_grad();
  for (const Tensor& p : seq.parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Module, TrainEvalRecurse) {
  MLP m({3, 4, 4, 1}, {Activation::relu, MlpNorm::batch, 0.5});
  m.eval();
  for (auto& [n, mod] : m.named_modules()) EXPECT_FALSE(mod->is_training()) << n;
  m.train();
  for (auto& [n, mod] : m.named_modules()) EXPECT_TRUE(mod->is_training()) << n;
}

TEST(Module, ToDTypeConvertsInPlaceAndKeepsHandles) {
  Net net(21);
  Tensor w = net.fc->weight();
  net.to(DType::f64);
  EXPECT_EQ(w.dtype(), DType::f64);  // the very same handle
  EXPECT_TRUE(w.requires_grad());
  EXPECT_EQ(net.buffer("bn.running_mean").dtype(), DType::f64);
  EXPECT_EQ(net.buffer("bn.num_batches_tracked").dtype(), DType::i64);
  net.eval();
  Tensor y = net.forward(input(22).to(DType::f64));
  EXPECT_EQ(y.dtype(), DType::f64);
  EXPECT_THROW(net.to(DType::i32), Error);
}

TEST(Module, PrintoutLikePyTorch) {
  Sequential seq{std::make_shared<Linear>(3, 4), std::make_shared<ReLU>(),
                 std::make_shared<Linear>(4, 2, false)};
  EXPECT_EQ(seq.repr(),
            "Sequential(\n"
            "  (0): Linear(in_features=3, out_features=4, bias=True)\n"
            "  (1): ReLU()\n"
            "  (2): Linear(in_features=4, out_features=2, bias=False)\n"
            ")");
  MLP m({2, 3, 1}, {Activation::gelu, MlpNorm::batch, 0.1});
  EXPECT_EQ(m.repr(),
            "MLP(\n"
            "  (layers): Sequential(\n"
            "    (0): Linear(in_features=2, out_features=3, bias=True)\n"
            "    (1): BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, "
            "track_running_stats=True)\n"
            "    (2): GELU()\n"
            "    (3): Dropout(p=0.1)\n"
            "    (4): Linear(in_features=3, out_features=1, bias=True)\n"
            "  )\n"
            ")");
  std::ostringstream os;
  os << Linear(5, 6);
  EXPECT_EQ(os.str(), "Linear(in_features=5, out_features=6, bias=True)");
}

TEST(Module, SingleInputForwardMissingThrows) {
  class NoForward : public Module {
   public:
    NoForward() : Module("NoForward") {}
  };
  NoForward m;
  try {
    m.forward(input(1));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NoForward"), std::string::npos);
  }
  EXPECT_THROW(m.clone(), Error);
}

TEST(ModuleCuda, ToDeviceMovesInPlaceAndMatchesCpu) {
  IDEM_REQUIRE_GPU();
  Net net(31);
  net.eval();
  Tensor x = input(32);
  Tensor y_cpu = net.forward(x);
  Tensor w = net.fc->weight();
  net.to(Device::cuda(0));
  EXPECT_TRUE(w.device().is_cuda());  // the same handle moved
  EXPECT_TRUE(w.requires_grad());
  EXPECT_TRUE(net.buffer("bn.num_batches_tracked").device().is_cuda());
  EXPECT_TRUE(net.device().is_cuda());
  Tensor y = net.forward(x.to(Device::cuda(0)));
  EXPECT_TRUE(y.device().is_cuda());
  auto a = y.to_vector<float>(), b = y_cpu.to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5) << i;
  // clone stays on the device; copy_from works across devices.
  auto c = clone_as(net);
  EXPECT_TRUE(c->fc->weight().device().is_cuda());
  Net host(33);
  host.copy_from(net);
  EXPECT_TRUE(bit_equal(host.fc->weight(), net.fc->weight()));
  // Training mode on the GPU counts batches in the i64 buffer.
  net.train();
  {
    NoGradGuard ng;
    net.forward(x.to(Device::cuda(0)));
  }
  EXPECT_EQ(net.buffer("bn.num_batches_tracked").item(), 1);
}

}  // namespace
}  // namespace idem
