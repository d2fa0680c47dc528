// Differentiable matmul: C = op(A)·op(B), 2-D or batched 3-D, a 2-D operand shared across the
// batch of the other. The backward is two more matmuls with transpose flags (never an explicit
// transpose copy); a shared operand's gradient is summed over the batch.
#include "autograd/functions.h"
#include "core/ops/matmul.h"
#include "core/ops/reduce.h"

namespace idem {

namespace {

class MatmulNode : public Node {
 public:
  MatmulNode(Tensor a, Tensor b, bool trans_a, bool trans_b)
      : a_(std::move(a)), b_(std::move(b)), ta_(trans_a), tb_(trans_b) {}
  const char* name() const override { return "matmul"; }

  std::vector<Tensor> backward(const Tensor& g) override {
    std::vector<Tensor> grads(2);
    if (needs_grad(0)) grads[0] = grad_a(g);
    if (needs_grad(1)) grads[1] = grad_b(g);
    return grads;
  }

 private:
  // Shapes per batch entry below; the same calls work batched (3-D) because ops::matmul
  // broadcasts a 2-D operand over the batch of a 3-D one.
  Tensor grad_a(const Tensor& g) const {
    Tensor ga;
    if (!ta_ && !tb_)
      ga = ops::matmul(g, b_, false, true);  // dA = dC·Bᵀ : (M,N)(K,N)ᵀ -> (M,K)
    else if (!ta_ && tb_)
      ga = ops::matmul(g, b_, false, false);  // dA = dC·B : (M,N)(N,K) -> (M,K)
    else if (ta_ && !tb_)
      ga = ops::matmul(b_, g, false, true);  // dA = B·dCᵀ : (K,N)(M,N)ᵀ -> (K,M)
    else
      ga = ops::matmul(b_, g, true, true);  // dA = Bᵀ·dCᵀ : (N,K)ᵀ(M,N)ᵀ -> (K,M)
    // A shared 2-D A was used by every batch entry: dA = Σ_b dA_b : (B,·,·) -> (·,·)
    if (a_.dim() == 2 && ga.dim() == 3) ga = ops::sum(ga, {0});
    return ga;
  }

  Tensor grad_b(const Tensor& g) const {
    // Shared 2-D B against a 3-D A stored (B,M,K): fold the batch into the rows, so the
    // batch sum happens inside one GEMM: (B·M,K)ᵀ(B·M,N) -> (K,N) (no (B,K,N) temporary).
    if (b_.dim() == 2 && a_.dim() == 3 && !ta_) {
      const int64_t rows = a_.size(0) * a_.size(1);
      const Tensor af = a_.view_as_shape({rows, a_.size(2)});
      const Tensor gf = g.view_as_shape({rows, g.size(2)});
      return tb_ ? ops::matmul(gf, af, true, false)   // dB = dCᵀ·A : (N,B·M)(B·M,K) -> (N,K)
                 : ops::matmul(af, gf, true, false);  // dB = Aᵀ·dC : (K,B·M)(B·M,N) -> (K,N)
    }
    Tensor gb;
    if (!ta_ && !tb_)
      gb = ops::matmul(a_, g, true, false);  // dB = Aᵀ·dC : (M,K)ᵀ(M,N) -> (K,N)
    else if (ta_ && !tb_)
      gb = ops::matmul(a_, g, false, false);  // dB = A·dC : (K,M)(M,N) -> (K,N)
    else if (!ta_ && tb_)
      gb = ops::matmul(g, a_, true, false);  // dB = dCᵀ·A : (M,N)ᵀ(M,K) -> (N,K)
    else
      gb = ops::matmul(g, a_, true, true);  // dB = dCᵀ·Aᵀ : (M,N)ᵀ(K,M)ᵀ -> (N,K)
    // A shared 2-D B: dB = Σ_b dB_b : (B,·,·) -> (·,·)
    if (b_.dim() == 2 && gb.dim() == 3) gb = ops::sum(gb, {0});
    return gb;
  }

  Tensor a_, b_;
  bool ta_, tb_;
};

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  Tensor c = ops::matmul(a, b, trans_a, trans_b);
  if (needs_history({a, b}))
    record(std::make_shared<MatmulNode>(saved(a), saved(b), trans_a, trans_b), {a, b}, c);
  return c;
}

}  // namespace idem
