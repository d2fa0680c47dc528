// Op-case rows for the reduce family.
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

std::vector<OpCase> reduce_cases() {
  using V = const std::vector<Tensor>&;
  std::vector<OpCase> c = {
      {"sum_all", "reduce", {{{3, 4}}}, [](V x) { return sum(x[0]); }},
      {"sum_dim0", "reduce", {{{5, 3}}}, [](V x) { return sum(x[0], {0}); }},
      {"sum_dim1_keep", "reduce", {{{5, 3}}}, [](V x) { return sum(x[0], {1}, true); }},
      {"sum_dims_0_2", "reduce", {{{2, 3, 4, 2}}}, [](V x) { return sum(x[0], {0, 2, 3}); }},
      {"sum_neg_dim", "reduce", {{{2, 3, 4}}}, [](V x) { return sum(x[0], {-1}); }},
      {"mean_all", "reduce", {{{3, 4}}}, [](V x) { return mean(x[0]); }},
      {"mean_dims_keep", "reduce", {{{2, 3, 4}}}, [](V x) { return mean(x[0], {0, 2}, true); }},
      {"max_dim1", "reduce", {{{4, 5}}}, [](V x) { return max(x[0], {1}); }},
      {"max_all", "reduce", {{{3, 4}}}, [](V x) { return max(x[0]); }},
      {"max_dim0_keep", "reduce", {{{4, 3, 2}}}, [](V x) { return max(x[0], {0}, true); }},
      {"var_dim0", "reduce", {{{5, 3}}}, [](V x) { return var(x[0], {0}); }},
      {"var_all_pop", "reduce", {{{3, 4}}}, [](V x) { return var(x[0], {}, 0); }},
      {"var_bn_dims", "reduce", {{{3, 2, 2, 2}}}, [](V x) { return var(x[0], {0, 2, 3}, 0, true); }},
  };
  OpCase am{"argmax_dim1", "reduce", {{{4, 6}}}, [](V x) { return argmax(x[0], 1); }};
  am.gradcheck = false;
  c.push_back(am);
  OpCase am0{"argmax_dim0_keep", "reduce", {{{4, 3, 2}}}, [](V x) { return argmax(x[0], 0, true); }};
  am0.gradcheck = false;
  c.push_back(am0);
  for (auto& oc : c) oc.parity_scale = 4.0;  // reductions: tolerance grows with length
  return c;
}

}  // namespace idem::testing
