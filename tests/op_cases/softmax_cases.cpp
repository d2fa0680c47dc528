// Op-case rows for softmax / log_softmax on the first, a middle and the last dim.
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
OpCase sm_case(const std::string& name, Shape shape, int64_t dim, bool log) {
  OpCase c{name, "softmax", {{std::move(shape)}}, [dim, log](const std::vector<Tensor>& x) {
             return log ? log_softmax(x[0], dim) : softmax(x[0], dim);
           }};
  c.parity_scale = 2.0;  // exp and a sum over D
  return c;
}
}  // namespace

std::vector<OpCase> softmax_cases() {
  return {
      sm_case("softmax_dim0", {4, 3, 2}, 0, false),
      sm_case("softmax_mid", {2, 5, 3}, 1, false),
      sm_case("softmax_last", {3, 2, 6}, -1, false),
      sm_case("softmax_2d_rows", {8, 10}, 1, false),
      sm_case("softmax_1d", {7}, 0, false),
      sm_case("log_softmax_dim0", {4, 3, 2}, 0, true),
      sm_case("log_softmax_mid", {2, 5, 3}, 1, true),
      sm_case("log_softmax_last", {3, 2, 6}, -1, true),
      sm_case("log_softmax_2d_rows", {8, 10}, -1, true),
  };
}

}  // namespace idem::testing
