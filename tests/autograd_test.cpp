// The engine: accumulation, needs_grad, no-grad guard, detach, deep graphs, shared subgraphs.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

#include "autograd/functions.h"

namespace idem {
namespace {

TEST(Autograd, ChainRuleAndAccumulationIntoLeaves) {
  Tensor x = from_vector<double>({1.0, 2.0, 3.0}, {3});
  x.requires_grad_();
  Tensor y = sum(x * x + 3.0 * x);  // dy/dx = 2x + 3
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5, 7, 9}));
  // A second backward accumulates.
  sum(x * x + 3.0 * x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{10, 14, 18}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, SharedSubgraphSumsBothPaths) {
  Tensor x = from_vector<double>({2.0}, {1});
  x.requires_grad_();
  Tensor h = exp(x);
  Tensor y = sum(h * h + h);  // d/dx = 2e^{2x} + e^x
  y.backward();
  EXPECT_NEAR(x.grad().item(), 2 * std::exp(4.0) + std::exp(2.0), 1e-9);
}

TEST(Autograd, ExplicitGradientForNonScalar) {
  Tensor x = from_vector<double>({1, 2}, {2});
  x.requires_grad_();
  Tensor y = x * 3.0;
  y.backward(from_vector<double>({1, 10}, {2}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{3, 30}));
  EXPECT_THROW(y.backward(), Error);                              // not a scalar
  EXPECT_THROW(y.backward(from_vector<double>({1}, {1})), Error);  // wrong shape
}

TEST(Autograd, NoGradGuardAndDetachRecordNothing) {
  Tensor x = ones({2}, {DType::f64});
  x.requires_grad_();
  {
    NoGradGuard ng;
    Tensor y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
  EXPECT_TRUE(grad_enabled());
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.same_storage(x));
  Tensor y = x * 2.0;
  EXPECT_TRUE(y.requires_grad());
  EXPECT_FALSE(y.is_leaf());
  EXPECT_STREQ(y.grad_fn()->name(), "mul_scalar");
  EXPECT_THROW(sum(d).backward(), Error);  // nothing requires grad
  EXPECT_THROW(y.requires_grad_(false), Error);  // not a leaf
  EXPECT_THROW(ones({2}, {DType::i64}).requires_grad_(), Error);
}

TEST(Autograd, FrozenInputGetsNoGradientButPassesItThrough) {
  // w frozen (no requires_grad), x trainable: the mul node computes only dx.
  Tensor w = from_vector<double>({2, 3}, {2});
  Tensor x = from_vector<double>({5, 7}, {2});
  x.requires_grad_();
  Tensor y = sum(w * x);
  ASSERT_TRUE(y.grad_fn());
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 3}));
  EXPECT_FALSE(w.grad().defined());
  auto mul_node = y.grad_fn()->next()[0].fn;
  ASSERT_TRUE(mul_node);
  EXPECT_FALSE(mul_node->needs_grad(0));
  EXPECT_TRUE(mul_node->needs_grad(1));
}

TEST(Autograd, DeepChainNeedsNoRecursion) {
  // 100k nodes: a recursive engine would overflow the stack.
  Tensor x = from_vector<double>({1.0}, {1});
  x.requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = y + 1e-6;
  sum(y).backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 1.0);
}

TEST(Autograd, BackwardNodeCounterCountsNodes) {
  Tensor x = ones({3}, {DType::f64});
  x.requires_grad_();
  Tensor y = sum(exp(x) * 2.0);  // exp, mul_scalar, sum
  uint64_t before = backward_node_count();
  y.backward();
  EXPECT_EQ(backward_node_count() - before, 3u);
}

TEST(Autograd, GradientThroughBroadcastSumsBack) {
  Tensor b = from_vector<double>({1, 2, 3}, {3});
  b.requires_grad_();
  Tensor a = ones({4, 3}, {DType::f64});
  sum(a + b).backward();
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{4, 4, 4}));
}

}  // namespace
}  // namespace idem

namespace idem {
namespace {

// Review finding: add/reshape pass the upstream buffer through; stored leaf gradients must
// still own their memory.
TEST(Autograd, LeafGradientsNeverAliasTheUpstreamBufferOrEachOther) {
  Tensor a = ones({2}, {DType::f64}), b = ones({2}, {DType::f64});
  a.requires_grad_();
  b.requires_grad_();
  Tensor g = from_vector<double>({3, 4}, {2});
  add(a, b).backward(g);
  EXPECT_FALSE(a.grad().same_storage(g));
  EXPECT_FALSE(b.grad().same_storage(g));
  EXPECT_FALSE(a.grad().same_storage(b.grad()));
  Tensor c = ones({2, 2}, {DType::f64});
  c.requires_grad_();
  Tensor gz = ones({4}, {DType::f64});
  reshape(c, {4}).backward(gz);
  EXPECT_FALSE(c.grad().same_storage(gz));
  Tensor d = ones({2}, {DType::f64});
  d.requires_grad_();
  d.backward(g);
  EXPECT_FALSE(d.grad().same_storage(g));
  EXPECT_EQ(d.grad().to_vector<double>(), (std::vector<double>{3, 4}));
}

// Review finding: d/db a^b at a = 0 is 0 (PyTorch), not 0·ln 0 = NaN.
TEST(Autograd, PowExponentGradientIsZeroWhereTheBaseIsZero) {
  Tensor a = from_vector<double>({0.0, 2.0}, {2});
  Tensor w = from_vector<double>({2.0, 2.0}, {2});
  w.requires_grad_();
  sum(pow(a, w)).backward();
  EXPECT_EQ(w.grad().at({0}), 0.0);
  EXPECT_NEAR(w.grad().at({1}), 4.0 * std::log(2.0), 1e-12);
}

}  // namespace
}  // namespace idem

namespace idem {
namespace {

// A node of two inputs that records, during its backward, what gradient_starts_empty says for
// each, and passes the gradient on to both (or to neither, or throws).
class ProbeNode : public Node {
 public:
  enum class Then { pass_on, pass_nothing, throw_error };
  ProbeNode(std::vector<bool>* seen, Then then) : seen_(seen), then_(then) {}
  const char* name() const override { return "probe"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    for (size_t i = 0; i < next().size(); ++i) seen_->push_back(gradient_starts_empty(i));
    if (then_ == Then::throw_error) throw std::runtime_error("probe");
    if (then_ == Then::pass_nothing) return {Tensor(), Tensor()};
    return {g, g};
  }

 private:
  std::vector<bool>* seen_;
  Then then_;
};

Tensor probe(const Tensor& a, const Tensor& b, std::vector<bool>* seen,
             ProbeNode::Then then = ProbeNode::Then::pass_on) {
  Tensor y = a.detach().clone_data();
  record(std::make_shared<ProbeNode>(seen, then), {a, b}, y);
  return y;
}

// What a node may ask the engine during backward: whether an input's gradient is still empty
// (a leaf without .grad, a node whose buffer holds no term yet), so that it can hand over a
// sum of two of its own terms as the first one.
TEST(Autograd, GradientStartsEmptyTellsWhetherAnInputsSumHasBegun) {
  std::vector<bool> seen;
  Tensor a = from_vector<double>({1.0, 2.0}, {2}), c = from_vector<double>({3.0, 4.0}, {2});
  a.requires_grad_();
  // Leaves: empty at the first backward, no longer at the second; c needs no gradient.
  sum(probe(a, c, &seen)).backward();
  EXPECT_EQ(seen, (std::vector<bool>{true, false}));
  seen.clear();
  sum(probe(a, a, &seen)).backward();
  EXPECT_EQ(seen, (std::vector<bool>{false, false}));
  // A non-leaf input: empty when the probe is its only consumer; not when another consumer
  // (the add, which runs before the probe) has already passed a term to it.
  Tensor b = from_vector<double>({5.0, 6.0}, {2});
  b.requires_grad_();
  seen.clear();
  Tensor h = b * 2.0;
  sum(probe(h, h, &seen)).backward();
  EXPECT_EQ(seen, (std::vector<bool>{true, true}));
  seen.clear();
  Tensor h2 = b * 2.0;
  sum(probe(h2, h2, &seen) + h2).backward();
  EXPECT_EQ(seen, (std::vector<bool>{false, false}));
  // The gradients themselves: each probe passes g to both inputs.
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{4 + 6, 4 + 6}));
  // Outside backward() the question has no answer: false, even for a node whose input's
  // gradient is still empty (a probe that passed nothing on), after a backward that returned
  // and after one that threw.
  Tensor d = from_vector<double>({1.0}, {1});
  d.requires_grad_();
  seen.clear();
  Tensor y = probe(d, d, &seen, ProbeNode::Then::pass_nothing);
  const std::shared_ptr<Node> quiet = y.grad_fn();
  sum(y).backward();
  EXPECT_EQ(seen, (std::vector<bool>{true, true}));
  EXPECT_FALSE(d.grad().defined());
  EXPECT_FALSE(quiet->gradient_starts_empty(0));
  Tensor z = probe(d, d, &seen, ProbeNode::Then::throw_error);
  const std::shared_ptr<Node> thrower = z.grad_fn();
  EXPECT_THROW(sum(z).backward(), std::runtime_error);
  EXPECT_FALSE(thrower->gradient_starts_empty(0));
  EXPECT_FALSE(quiet->gradient_starts_empty(0));
}

// A node whose backward asks about another node (the answer is only ever a node's own: false),
// runs a whole backward of an unrelated graph inside its own, then asks about itself again (the
// engine restores its context after the inner one).
class NestingNode : public Node {
 public:
  // inner_loss: a scalar recorded beforehand (backward runs with grad mode off).
  NestingNode(std::vector<bool>* seen, std::shared_ptr<Node> other, Tensor inner_loss)
      : seen_(seen), other_(std::move(other)), inner_loss_(std::move(inner_loss)) {}
  const char* name() const override { return "nesting"; }
  std::vector<Tensor> backward(const Tensor& g) override {
    seen_->push_back(gradient_starts_empty(0));
    seen_->push_back(other_->gradient_starts_empty(0));
    inner_loss_.backward();
    seen_->push_back(gradient_starts_empty(0));
    return {g};
  }

 private:
  std::vector<bool>* seen_;
  std::shared_ptr<Node> other_;
  Tensor inner_loss_;
};

TEST(Autograd, GradientStartsEmptyAnswersOnlyForTheRunningNodeAndSurvivesANestedBackward) {
  std::vector<bool> seen, unused;
  Tensor a = from_vector<double>({1.0, 2.0}, {2}), c = from_vector<double>({3.0}, {1});
  a.requires_grad_();
  c.requires_grad_();
  // `other` is a node whose input (a) has an empty gradient: asked by itself during its own
  // backward it would say true.
  const std::shared_ptr<Node> other = probe(a, a, &unused).grad_fn();
  Tensor y = a.detach().clone_data();
  record(std::make_shared<NestingNode>(&seen, other, sum(c * 3.0)), {a}, y);
  sum(y).backward();
  EXPECT_EQ(seen, (std::vector<bool>{true, false, true}));
  EXPECT_EQ(c.grad().to_vector<double>(), (std::vector<double>{3.0}));
}

}  // namespace
}  // namespace idem
