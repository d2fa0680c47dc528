// Op-case rows for the elementwise family. The unary and binary rows are generated from the op
// lists (core/kernels/elementwise.h): every listed op gets its rows, with inputs sampled in the
// op's domain column, so a new op is covered without a row written here.
#include "tests/op_cases/op_cases.h"

namespace idem::testing {

namespace {
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
using V = const std::vector<Tensor>&;

// The scalar of the *_scalar ops and leaky_relu's slope in the generated rows: not 0 or 1 (the
// op would be trivial) and not an integer (pow_scalar takes the non-integer path).
constexpr double kAlpha = 0.75;

InputKind kind_of(OpDomain d) {
  switch (d) {
    case OpDomain::real:
      return InputKind::normal;
    case OpDomain::positive:
      return InputKind::positive;
    case OpDomain::off_zero:
      return InputKind::away_from_zero;
  }
  return InputKind::normal;  // not reached
}

OpCase unary_case(const std::string& name, InputKind kind, Fn fn, Shape shape = {3, 5}) {
  return {name, "elementwise", {{std::move(shape), kind}}, std::move(fn)};
}

// Operand shapes for the binary rows, one per broadcast path of the kernels.
struct BinaryShapes {
  const char* suffix;
  Shape a, b;
};
const BinaryShapes kBinaryShapes[] = {
    {"same", {4, 3}, {4, 3}},        // the flat map
    {"row", {4, 3}, {3}},            // the CUDA row/column kernel: a row vector (F) ...
    {"row_first", {8}, {5, 8}},      // ... as the first operand, F a multiple of 4 (vector loads)
    {"col", {4, 3}, {4, 1}},         // a column (R, 1)
    {"col_first", {5, 1}, {5, 8}},   // ... as the first operand
    {"rank0", {2, 3}, {}},           // a 0-d operand
    {"general", {2, 3, 4}, {3, 1}},  // the general broadcast kernel
};
}  // namespace

std::vector<OpCase> elementwise_cases() {
  using K = InputKind;
  std::vector<OpCase> c;
  // One row per unary op, through the generic L2 call.
  for (UnaryOp op : kUnaryOps)
    c.push_back(unary_case(unary_name(op), kind_of(unary_domain(op)),
                           [op](V x) { return unary_op(x[0], op, {kAlpha}); }));
  // One row per binary op and operand shapes. Comparisons: parity only (u8, no gradient).
  for (BinaryOp op : kBinaryOps) {
    for (const BinaryShapes& s : kBinaryShapes) {
      OpCase oc{std::string(binary_name(op)) + "_" + s.suffix,
                "elementwise",
                {{s.a, kind_of(binary_domain(op, 0))}, {s.b, kind_of(binary_domain(op, 1))}},
                [op](V x) { return binary_op(x[0], x[1], op); }};
      oc.gradcheck = !is_comparison(op);
      c.push_back(std::move(oc));
    }
  }
  // The named L2 functions that are more than a call of one listed op, and a 4-d input.
  c.push_back(unary_case("sub_scalar", K::normal, [](V x) { return x[0] - 0.5; }));
  c.push_back(unary_case("div_scalar", K::normal, [](V x) { return x[0] / 4.0; }));
  c.push_back(
      unary_case("relu_4d", K::away_from_zero, [](V x) { return relu(x[0]); }, {2, 3, 2, 2}));
  c.push_back({"where", "elementwise", {{{3, 4}, K::mask}, {{3, 4}}, {{4}}}, [](V x) {
                 return where(x[0], x[1], x[2]);
               }});
  c.push_back({"expand", "elementwise", {{{3, 1}}}, [](V x) { return expand(x[0], {2, 3, 4}); }});
  return c;
}

}  // namespace idem::testing
