#include "tests/op_cases/op_cases.h"

#include <set>

namespace idem::testing {

const std::vector<OpCase>& all_op_cases() {
  static const std::vector<OpCase> cases = [] {
    std::vector<OpCase> all;
    for (auto fam : {elementwise_cases, reduce_cases, matmul_cases, softmax_cases, index_cases,
                     conv_cases, pool_cases, norm_cases, loss_cases, segment_cases, fused_cases}) {
      auto rows = fam();
      all.insert(all.end(), rows.begin(), rows.end());
    }
    std::set<std::string> seen;
    for (const auto& c : all)
      if (!seen.insert(c.name).second) fail("op_cases", "duplicate case name '", c.name, "'");
    return all;
  }();
  return cases;
}

std::vector<Tensor> make_inputs(const OpCase& c, uint64_t seed, DType dtype, Device device) {
  std::vector<Tensor> out;
  uint64_t offset = 0;
  for (const auto& spec : c.inputs) {
    Tensor t;
    const Options f64{DType::f64, Device::cpu()};
    switch (spec.kind) {
      case InputKind::normal:
        t = randn(spec.shape, seed, f64, offset);
        break;
      case InputKind::positive:
        t = uniform(spec.shape, 0.5, 2.0, seed, f64, offset);
        break;
      case InputKind::away_from_zero: {
        Tensor mag = uniform(spec.shape, 0.2, 1.5, seed, f64, offset);
        Tensor sign = rand(spec.shape, seed + 7919, f64, offset);
        NoGradGuard ng;
        t = where(lt(sign, full({}, 0.5, f64)), neg(mag), mag);
        break;
      }
      case InputKind::index: {
        Tensor u = rand(spec.shape, seed, f64, offset);
        NoGradGuard ng;
        t = ops::cast(mul(u, static_cast<double>(spec.index_high)), DType::i64);
        break;
      }
      case InputKind::mask: {
        Tensor u = rand(spec.shape, seed, f64, offset);
        t = lt(u, full({}, 0.5, f64));
        break;
      }
    }
    offset += static_cast<uint64_t>(numel_of(spec.shape)) + 1;
    if (is_floating(t.dtype())) t = t.to(dtype);
    out.push_back(t.to(device));
  }
  return out;
}

}  // namespace idem::testing
