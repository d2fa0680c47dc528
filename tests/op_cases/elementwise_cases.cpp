// Op-case rows for the elementwise family.
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
OpCase unary_case(const std::string& name, InputKind kind, Fn fn, Shape shape = {3, 5}) {
  return {name, "elementwise", {{shape, kind}}, std::move(fn)};
}
OpCase binary_case(const std::string& name, Shape a, Shape b, InputKind kb, Fn fn,
                   InputKind ka = InputKind::normal) {
  return {name, "elementwise", {{a, ka}, {b, kb}}, std::move(fn)};
}
}  // namespace

std::vector<OpCase> elementwise_cases() {
  using K = InputKind;
  using V = const std::vector<Tensor>&;
  std::vector<OpCase> c = {
      unary_case("neg", K::normal, [](V x) { return neg(x[0]); }),
      unary_case("exp", K::normal, [](V x) { return exp(x[0]); }),
      unary_case("log", K::positive, [](V x) { return log(x[0]); }),
      unary_case("sqrt", K::positive, [](V x) { return sqrt(x[0]); }),
      unary_case("abs", K::away_from_zero, [](V x) { return abs(x[0]); }),
      unary_case("relu", K::away_from_zero, [](V x) { return relu(x[0]); }),
      unary_case("leaky_relu", K::away_from_zero, [](V x) { return leaky_relu(x[0], 0.1); }),
      unary_case("sigmoid", K::normal, [](V x) { return sigmoid(x[0]); }),
      unary_case("tanh", K::normal, [](V x) { return tanh(x[0]); }),
      unary_case("gelu", K::normal, [](V x) { return gelu(x[0]); }),
      unary_case("square", K::normal, [](V x) { return square(x[0]); }),
      unary_case("relu_4d", K::away_from_zero, [](V x) { return relu(x[0]); }, {2, 3, 2, 2}),
      unary_case("add_scalar", K::normal, [](V x) { return x[0] + 1.5; }),
      unary_case("sub_scalar", K::normal, [](V x) { return x[0] - 0.5; }),
      unary_case("mul_scalar", K::normal, [](V x) { return x[0] * -2.0; }),
      unary_case("div_scalar", K::normal, [](V x) { return x[0] / 4.0; }),
      unary_case("pow_scalar", K::positive, [](V x) { return pow(x[0], 2.5); }),
      unary_case("rsub_scalar", K::normal, [](V x) { return 3.0 - x[0]; }),
      unary_case("rdiv_scalar", K::positive, [](V x) { return 2.0 / x[0]; }),
      binary_case("add_same", {4, 3}, {4, 3}, K::normal, [](V x) { return x[0] + x[1]; }),
      binary_case("add_row_bcast", {4, 3}, {3}, K::normal, [](V x) { return x[0] + x[1]; }),
      binary_case("add_col_bcast", {4, 3}, {4, 1}, K::normal, [](V x) { return x[0] + x[1]; }),
      binary_case("add_both_bcast", {4, 1}, {1, 3}, K::normal, [](V x) { return x[0] + x[1]; }),
      binary_case("add_scalar_tensor", {2, 3}, {}, K::normal, [](V x) { return x[0] + x[1]; }),
      binary_case("sub_bcast", {2, 3, 4}, {3, 1}, K::normal, [](V x) { return x[0] - x[1]; }),
      binary_case("mul_bcast", {2, 3, 4}, {1, 4}, K::normal, [](V x) { return x[0] * x[1]; }),
      binary_case("div_bcast", {3, 4}, {4}, K::positive, [](V x) { return x[0] / x[1]; }),
      // The broadcast operand first (the CUDA row/column kernel's swapped order), F a multiple
      // of 4 (its vector loads).
      binary_case("sub_row_first", {8}, {5, 8}, K::normal, [](V x) { return x[0] - x[1]; }),
      binary_case("div_col_first", {5, 1}, {5, 8}, K::positive, [](V x) { return x[0] / x[1]; }),
      binary_case("pow_tensor", {3, 4}, {3, 4}, K::normal, [](V x) { return pow(x[0], x[1]); },
                  K::positive),
      binary_case("maximum", {3, 4}, {3, 4}, K::normal, [](V x) { return maximum(x[0], x[1]); }),
      binary_case("minimum_bcast", {3, 4}, {4}, K::normal,
                  [](V x) { return minimum(x[0], x[1]); }),
      {"where", "elementwise", {{{3, 4}, K::mask}, {{3, 4}}, {{4}}},
       [](V x) { return where(x[0], x[1], x[2]); }},
      {"expand", "elementwise", {{{3, 1}}}, [](V x) { return expand(x[0], {2, 3, 4}); }},
  };
  // Comparisons: parity only (u8 outputs have no gradient).
  for (auto [name, fn] : std::vector<std::pair<std::string, Fn>>{
           {"eq", [](V x) { return eq(x[0], x[1]); }},
           {"ne", [](V x) { return ne(x[0], x[1]); }},
           {"lt", [](V x) { return lt(x[0], x[1]); }},
           {"le", [](V x) { return le(x[0], x[1]); }},
           {"gt", [](V x) { return gt(x[0], x[1]); }},
           {"ge", [](V x) { return ge(x[0], x[1]); }}}) {
    OpCase oc = binary_case("cmp_" + name, {3, 4}, {4}, K::normal, fn);
    oc.gradcheck = false;
    c.push_back(oc);
  }
  return c;
}

}  // namespace idem::testing
