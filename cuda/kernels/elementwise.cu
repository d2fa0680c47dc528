// CUDA elementwise kernels: unary (forward and backward), binary with NumPy broadcasting, where,
// expand, cast, fills and the Philox RNG. The scalar formulas come from
// core/kernels/elementwise_math.h, shared with the CPU kernels, so both compute the same thing.
//
// Three kernel shapes cover everything:
//  - map_fwd_vec_kernel: inputs and output of one shape, flat index; V elements per thread per
//    step through 16-byte vector loads/stores when every pointer is aligned (V = 1 otherwise);
//  - binary_fwd_rowcol_kernel: a binary op whose broadcasts collapse to (R, F) against a row
//    vector (F) — a bias — or a column (R, 1) — a per-row scale such as 1/in-degree — or a
//    scalar: the map kernel's vector loads of the full operand and the output, and one
//    division per V elements instead of the general unravel's per-element divisions (the
//    general kernel reaches less than half the map kernel's bandwidth: docs/performance.md);
//  - *_bcast_kernel: the output index is decomposed over at most 8 (collapsed) dims and each
//    input gets its own strides (0 on broadcast dims), passed by value in a small struct.
// All three apply the same functor to the same pair of values, so they give the same bits.
// Ops are template parameters so each kernel's switch over the op folds away.
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/kernels/elementwise.h"
#include "core/kernels/elementwise_math.h"
#include "core/philox.h"
#include "cuda/common.cuh"
#include "cuda/device_utils.cuh"

namespace idem::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxDims = 8;

// ---------------------------------------------------------------------------------------------
// Same-shape map: out[i] = f(a[i], b[i]) (b ignored when !TWO).

template <typename T, typename O, int V, bool TWO, typename F>
__global__ void map_fwd_vec_kernel(O* __restrict__ out, const T* __restrict__ a,
                                   const T* __restrict__ b, int64_t n, F f) {
  const int64_t nv = n / V;
  for (const int64_t i : grid_stride(nv)) {
    const Vec<T, V> va = reinterpret_cast<const Vec<T, V>*>(a)[i];
    Vec<O, V> vo;
    if constexpr (TWO) {
      const Vec<T, V> vb = reinterpret_cast<const Vec<T, V>*>(b)[i];
#pragma unroll
      for (int k = 0; k < V; ++k) vo.v[k] = f(va.v[k], vb.v[k]);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) vo.v[k] = f(va.v[k], va.v[k]);
    }
    reinterpret_cast<Vec<O, V>*>(out)[i] = vo;
  }
  // The tail (fewer than V elements) when n % V != 0.
  for (const int64_t i : grid_stride(nv * V, n)) {
    if constexpr (TWO)
      out[i] = f(a[i], b[i]);
    else
      out[i] = f(a[i], a[i]);
  }
}

template <typename T, typename O, bool TWO, typename F>
void launch_map(const char* op, O* out, const T* a, const T* b, int64_t n, F f) {
  if (n <= 0) return;
  constexpr size_t kWidest = sizeof(T) > sizeof(O) ? sizeof(T) : sizeof(O);
  constexpr int V = static_cast<int>(16 / kWidest);
  const bool vec = V > 1 && n >= V && is_aligned(out, sizeof(O) * V) &&
                   is_aligned(a, sizeof(T) * V) && (!TWO || is_aligned(b, sizeof(T) * V));
  cudaStream_t s = current_stream();
  if (vec) {
    map_fwd_vec_kernel<T, O, V, TWO>
        <<<grid_for(n / V, kThreads), kThreads, 0, s>>>(out, a, b, n, f);
    IDEM_LAUNCH_CHECK(op);
  } else {
    map_fwd_vec_kernel<T, O, 1, TWO><<<grid_for(n, kThreads), kThreads, 0, s>>>(out, a, b, n, f);
    IDEM_LAUNCH_CHECK(op);
  }
}

// ---------------------------------------------------------------------------------------------
// Broadcasting. Dims are stored innermost first so the unrolled loop indexes them with
// compile-time constants (kernel parameters stay in the constant bank, no local-memory copy).

template <int N>
struct BcastDesc {
  int ndim = 1;
  int64_t shape[kMaxDims] = {};
  int64_t stride[N][kMaxDims] = {};
};

// Describes `ins` broadcast to `out`, after dropping extent-1 dims and merging adjacent dims
// that every operand walks contiguously ((B,N)+(N) stays 2-D, (B,N)+(B,N)+scalar becomes 1-D).
template <int N>
BcastDesc<N> make_bcast(const Shape& out, const std::array<const Shape*, N>& ins, const char* op) {
  const size_t nd = out.size();
  std::array<std::vector<int64_t>, N> st;
  for (int k = 0; k < N; ++k) {
    const Shape& in = *ins[k];
    st[k].assign(nd, 0);
    std::vector<int64_t> cs = contiguous_strides(in);
    const size_t lead = nd - in.size();
    for (size_t i = 0; i < in.size(); ++i) st[k][lead + i] = in[i] == 1 ? 0 : cs[i];
  }
  std::vector<int64_t> shp;
  std::vector<std::array<int64_t, N>> strs;
  for (size_t d = 0; d < nd; ++d) {
    if (out[d] == 1) continue;
    bool merge = !shp.empty();
    for (int k = 0; k < N && merge; ++k) merge = strs.back()[k] == st[k][d] * out[d];
    if (merge) {
      shp.back() *= out[d];
      for (int k = 0; k < N; ++k) strs.back()[k] = st[k][d];
    } else {
      shp.push_back(out[d]);
      std::array<int64_t, N> s{};
      for (int k = 0; k < N; ++k) s[k] = st[k][d];
      strs.push_back(s);
    }
  }
  if (shp.empty()) {
    shp.push_back(1);
    strs.push_back({});
  }
  IDEM_CHECK(shp.size() <= static_cast<size_t>(kMaxDims), op, "broadcasting to ", shape_str(out),
             " needs ", shp.size(), " dims after merging; the CUDA kernel takes ", kMaxDims);
  BcastDesc<N> d;
  d.ndim = static_cast<int>(shp.size());
  for (int j = 0; j < d.ndim; ++j) {
    const size_t src = shp.size() - 1 - static_cast<size_t>(j);  // innermost first
    d.shape[j] = shp[src];
    for (int k = 0; k < N; ++k) d.stride[k][j] = strs[src][k];
  }
  return d;
}

// Offsets of output element i in each operand. I is uint32_t when every index fits (cheaper
// division), else int64_t.
template <typename I, int N>
__device__ __forceinline__ void bcast_offsets(const BcastDesc<N>& d, I i, I (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
#pragma unroll
  for (int j = 0; j < kMaxDims; ++j) {
    if (j < d.ndim) {
      const I e = static_cast<I>(d.shape[j]);
      const I c = i % e;
      i /= e;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += c * static_cast<I>(d.stride[k][j]);
    }
  }
}

template <typename T, typename O, typename I, typename F>
__global__ void binary_fwd_bcast_kernel(O* __restrict__ out, const T* __restrict__ a,
                                        const T* __restrict__ b, BcastDesc<2> d, I n, F f) {
  for (const I i : grid_stride(n)) {
    I off[2];
    bcast_offsets<I, 2>(d, i, off);
    out[i] = f(a[off[0]], b[off[1]]);
  }
}

// out (R, F) = f(big, small) — or f(small, big) when small_first — with `big` the full (R, F)
// operand and `small` read at the column c (row: an (F) / (1, F) operand) or at the row r
// (column: (R, 1), or a scalar with R = 1 and F = n). n = R·F < 2^31. Thread step v covers
// elements [vV, vV + V): one division finds (r, c) of the first, the rest step c and wrap it at F,
// so any F works with any V (V > 1 needs only `big` and `out` aligned to V elements). row and
// small_first are uniform run-time flags, not template parameters: a select per element costs
// nothing in a memory-bound loop, while four times the instantiations (13 ops x 4 dtypes x 2
// widths, x2 again for 64-bit indices) would roughly triple this file's nvcc time
// (docs/performance.md). n >= 2^31 stays on the general kernel.
template <typename T, typename O, int V, typename F>
__global__ void binary_fwd_rowcol_kernel(O* __restrict__ out, const T* __restrict__ big,
                                         const T* __restrict__ small, uint32_t cols, uint32_t n,
                                         bool row, bool small_first, F f) {
  const uint32_t nv = n / V;
  for (const uint32_t v : grid_stride(nv)) {
    const uint32_t i = v * V;
    uint32_t r = i / cols, c = i - r * cols;
    const Vec<T, V> vb = reinterpret_cast<const Vec<T, V>*>(big)[v];
    Vec<O, V> vo;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const T sv = small[row ? c : r];
      if (small_first)
        vo.v[k] = f(sv, vb.v[k]);
      else
        vo.v[k] = f(vb.v[k], sv);
      if (++c == cols) {
        c = 0;
        ++r;
      }
    }
    reinterpret_cast<Vec<O, V>*>(out)[v] = vo;
  }
  // The tail (fewer than V elements) when n % V != 0.
  for (const uint32_t i : grid_stride(nv * V, n)) {
    const uint32_t r = i / cols, c = i - r * cols;
    const T sv = small[row ? c : r];
    out[i] = small_first ? f(sv, big[i]) : f(big[i], sv);
  }
}

template <typename T, typename I>
__global__ void where_fwd_bcast_kernel(T* __restrict__ out, const uint8_t* __restrict__ cond,
                                       const T* __restrict__ a, const T* __restrict__ b,
                                       BcastDesc<3> d, I n) {
  for (const I i : grid_stride(n)) {
    I off[3];
    bcast_offsets<I, 3>(d, i, off);
    out[i] = cond[off[0]] ? a[off[1]] : b[off[2]];
  }
}

template <typename T, typename I>
__global__ void expand_fwd_bcast_kernel(T* __restrict__ out, const T* __restrict__ in,
                                        BcastDesc<1> d, I n) {
  for (const I i : grid_stride(n)) {
    I off[1];
    bcast_offsets<I, 1>(d, i, off);
    out[i] = in[off[0]];
  }
}

// 32-bit indexing is safe when every output index and every input offset fits.
bool fits_u32(int64_t n) {
  return n < (int64_t(1) << 31);
}

// A binary broadcast that the row/column kernel (or the plain map) can run, read off the
// collapsed descriptor: make_bcast has already dropped extent-1 dims and merged the rest, so
// (B, T, F) + (F) arrives as (B·T, F) against (F), and (R, F) * (R, 1) as (R, F) against (R).
struct RowColPlan {
  enum Kind { none, same, row, col } kind = none;
  bool small_first = false;  // operand a is the broadcast one
  int64_t cols = 0;          // F
};

RowColPlan plan_rowcol(const BcastDesc<2>& d) {
  RowColPlan p;
  if (d.ndim == 1) {
    const int64_t s0 = d.stride[0][0], s1 = d.stride[1][0];
    if (s0 == 1 && s1 == 1) {  // same elements, shapes differ only in extent-1 dims
      p.kind = RowColPlan::same;
    } else if ((s0 == 1 && s1 == 0) || (s0 == 0 && s1 == 1)) {  // against a scalar
      p.kind = RowColPlan::col;  // one row of n columns: small[r] = small[0]
      p.small_first = s0 == 0;
      p.cols = d.shape[0];
    }
    return p;
  }
  if (d.ndim != 2) return p;
  const int64_t cols = d.shape[0];  // innermost first
  for (int big = 0; big < 2; ++big) {
    const int64_t* sb = d.stride[big];
    const int64_t* ss = d.stride[1 - big];
    if (sb[0] != 1 || sb[1] != cols) continue;
    if (ss[0] == 1 && ss[1] == 0)
      p.kind = RowColPlan::row;
    else if (ss[0] == 0 && ss[1] == 1)
      p.kind = RowColPlan::col;
    else
      continue;
    p.small_first = big == 1;
    p.cols = cols;
    return p;
  }
  return p;
}

template <typename T, typename O, typename F>
void launch_rowcol(const char* op, const RowColPlan& p, O* out, const T* big, const T* small,
                   int64_t n, F f) {
  constexpr size_t kWidest = sizeof(T) > sizeof(O) ? sizeof(T) : sizeof(O);
  constexpr int V = static_cast<int>(16 / kWidest);
  const bool vec =
      V > 1 && n >= V && is_aligned(out, sizeof(O) * V) && is_aligned(big, sizeof(T) * V);
  const bool row = p.kind == RowColPlan::row;
  const uint32_t cols = static_cast<uint32_t>(p.cols), n32 = static_cast<uint32_t>(n);
  cudaStream_t s = current_stream();
  if (vec) {
    binary_fwd_rowcol_kernel<T, O, V><<<grid_for(n / V, kThreads), kThreads, 0, s>>>(
        out, big, small, cols, n32, row, p.small_first, f);
    IDEM_LAUNCH_CHECK(op);
  } else {
    binary_fwd_rowcol_kernel<T, O, 1><<<grid_for(n, kThreads), kThreads, 0, s>>>(
        out, big, small, cols, n32, row, p.small_first, f);
    IDEM_LAUNCH_CHECK(op);
  }
}

// ---------------------------------------------------------------------------------------------
// Functors.

template <UnaryOp OP>
struct UnaryFwd {
  float a;
  __device__ float operator()(float x, float) const { return math::unary_apply(OP, x, a); }
};

// The backward reads the forward input x or the forward output y, never both: the op's
// grad_reads column (core/kernels/elementwise.h) says which.
template <UnaryOp OP>
struct UnaryBwd {
  float a;
  // s is y when unary_grad_reads_output(OP), else x.
  __device__ float operator()(float g, float s) const {
    if constexpr (unary_grad_reads_output(OP))
      return math::unary_grad(OP, g, 0.0f, s, a);
    else
      return math::unary_grad(OP, g, s, 0.0f, a);
  }
};

template <BinaryOp OP, typename T>
struct BinaryFn {
  __device__ auto operator()(T a, T b) const {
    if constexpr (is_comparison(OP))
      return static_cast<uint8_t>(math::binary_compare(OP, a, b) ? 1 : 0);
    else
      return math::binary_apply(OP, a, b);
  }
};

template <typename S, typename D>
struct CastFn {
  __device__ D operator()(S x, S) const {
    // Floating -> u8 goes through int32 as x86 does for the CPU kernel's static_cast, so
    // out-of-range values wrap the same way on both devices (in-range values are exact).
    if constexpr (std::is_floating_point<S>::value && std::is_same<D, uint8_t>::value)
      return static_cast<uint8_t>(static_cast<int32_t>(x));
    else
      return static_cast<D>(x);
  }
};

// ---------------------------------------------------------------------------------------------
// Fills.

template <typename T>
__global__ void fill_fwd_kernel(T* __restrict__ out, int64_t n, T v) {
  for (const int64_t i : grid_stride(n))
    out[i] = v;
}

template <typename T>
__global__ void arange_fwd_kernel(T* __restrict__ out, int64_t n, double start, double step) {
  for (const int64_t i : grid_stride(n))
    out[i] = static_cast<T>(start + static_cast<double>(i) * step);
}

// Element i uses Philox block (seed, i, offset) only, exactly as the CPU kernel does, so the
// same (seed, offset) gives the same tensor on both devices.
template <typename T, bool NORMAL>
__global__ void random_fwd_philox_kernel(T* __restrict__ out, int64_t n, double lo, double hi,
                                         uint64_t seed, uint64_t offset) {
  for (const int64_t i : grid_stride(n)) {
    uint32_t r[4];
    philox_block(seed, static_cast<uint64_t>(i), offset, r);
    if constexpr (NORMAL) {
      out[i] = static_cast<T>(lo + hi * static_cast<double>(math::philox_normal(r)));
    } else {
      const double u = philox_uniform(r[0]);
      out[i] = static_cast<T>(lo + (hi - lo) * u);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Host helpers.

void require_f32(const Tensor& t, const char* op) {
  IDEM_CHECK(t.dtype() == DType::f32, op, "the CUDA kernel takes f32, got ", dtype_name(t.dtype()),
             " ", shape_str(t.shape()));
}

// Like IDEM_DISPATCH_ALL without f64 (CUDA tensors are f32 plus integer types).
#define IDEM_CUDA_DISPATCH(dt, op, ...)                                                           \
  switch (dt) {                                                                                   \
    IDEM_DISPATCH_CASE(f32, float, __VA_ARGS__)                                                   \
    IDEM_DISPATCH_CASE(i32, int32_t, __VA_ARGS__)                                                 \
    IDEM_DISPATCH_CASE(i64, int64_t, __VA_ARGS__)                                                 \
    IDEM_DISPATCH_CASE(u8, uint8_t, __VA_ARGS__)                                                  \
    default:                                                                                      \
      ::idem::fail(op, "dtype ", ::idem::dtype_name(dt), " is not supported by the CUDA kernel"); \
  }

// Runs body.template operator()<OP>() for the UnaryOp value `op`: one case per row of
// IDEM_UNARY_OPS, so each op's kernels are instantiated with the op as a constant.
template <typename Body>
void with_unary(UnaryOp op, Body&& body) {
  switch (op) {
#define IDEM_UNARY_CASE(name, reads, domain)   \
  case UnaryOp::name:                          \
    body.template operator()<UnaryOp::name>(); \
    return;
    IDEM_UNARY_OPS(IDEM_UNARY_CASE)
#undef IDEM_UNARY_CASE
  }
  fail("unary", "unknown unary op ", static_cast<int>(op));
}

// The same for BinaryOp, over both lists (arithmetic ops and comparisons).
template <typename Body>
void with_binary(BinaryOp op, Body&& body) {
  switch (op) {
#define IDEM_BINARY_CASE(name)                  \
  case BinaryOp::name:                          \
    body.template operator()<BinaryOp::name>(); \
    return;
#define IDEM_BINARY_ARITH_CASE(name, dtypes, a_domain, b_domain) IDEM_BINARY_CASE(name)
    IDEM_BINARY_ARITH_OPS(IDEM_BINARY_ARITH_CASE)
    IDEM_BINARY_COMPARE_OPS(IDEM_BINARY_CASE)
#undef IDEM_BINARY_ARITH_CASE
#undef IDEM_BINARY_CASE
  }
  fail("binary", "unknown binary op ", static_cast<int>(op));
}

struct UnaryFwdBody {
  float* y;
  const float* x;
  int64_t n;
  float a;
  const char* name;
  template <UnaryOp OP>
  void operator()() const {
    launch_map<float, float, false>(name, y, x, x, n, UnaryFwd<OP>{a});
  }
};

struct UnaryBwdBody {
  float* gi;
  const float* g;
  const float* x;
  const float* y;
  int64_t n;
  float a;
  const char* name;
  template <UnaryOp OP>
  void operator()() const {
    constexpr bool reads_y = unary_grad_reads_output(OP);
    const float* s = reads_y ? y : x;
    IDEM_CHECK(s != nullptr, name, "backward needs the forward ", reads_y ? "output" : "input",
               ", got an undefined tensor");
    launch_map<float, float, true>(name, gi, g, s, n, UnaryBwd<OP>{a});
  }
};

template <typename T>
struct BinaryBody {
  const Tensor& out;
  const Tensor& a;
  const Tensor& b;
  const char* name;
  template <BinaryOp OP>
  void operator()() const {
    using O = std::conditional_t<is_comparison(OP), uint8_t, T>;
    O* po = static_cast<O*>(out.raw_data());
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    const int64_t n = out.numel();
    if (a.shape() == out.shape() && b.shape() == out.shape()) {
      launch_map<T, O, true>(name, po, pa, pb, n, BinaryFn<OP, T>{});
      return;
    }
    BcastDesc<2> d = make_bcast<2>(out.shape(), {&a.shape(), &b.shape()}, name);
    const RowColPlan plan = plan_rowcol(d);
    if (plan.kind == RowColPlan::same) {
      launch_map<T, O, true>(name, po, pa, pb, n, BinaryFn<OP, T>{});
      return;
    }
    if (plan.kind != RowColPlan::none && fits_u32(n)) {
      launch_rowcol<T, O>(name, plan, po, plan.small_first ? pb : pa, plan.small_first ? pa : pb,
                          n, BinaryFn<OP, T>{});
      return;
    }
    cudaStream_t s = current_stream();
    if (fits_u32(n)) {
      binary_fwd_bcast_kernel<T, O, uint32_t><<<grid_for(n, kThreads), kThreads, 0, s>>>(
          po, pa, pb, d, static_cast<uint32_t>(n), BinaryFn<OP, T>{});
      IDEM_LAUNCH_CHECK(name);
    } else {
      binary_fwd_bcast_kernel<T, O, int64_t>
          <<<grid_for(n, kThreads), kThreads, 0, s>>>(po, pa, pb, d, n, BinaryFn<OP, T>{});
      IDEM_LAUNCH_CHECK(name);
    }
  }
};

// Element types by size: where and expand only move bits.
template <size_t S>
using Bits = std::conditional_t<
    S == 1, uint8_t,
    std::conditional_t<S == 2, uint16_t, std::conditional_t<S == 4, uint32_t, uint64_t>>>;

template <typename Body>
void with_bits(size_t size, const char* op, Body&& body) {
  switch (size) {
    case 1:
      body(Bits<1>{});
      return;
    case 2:
      body(Bits<2>{});
      return;
    case 4:
      body(Bits<4>{});
      return;
    case 8:
      body(Bits<8>{});
      return;
  }
  fail(op, "unsupported element size ", size);
}

}  // namespace

// ---- entry points ----

void unary_fwd(const Tensor& out, const Tensor& in, UnaryOp op, UnaryParams p) {
  const char* name = unary_name(op);
  require_f32(in, name);
  set_device(in.device().index);
  with_unary(op, UnaryFwdBody{out.data<float>(), in.data<float>(), in.numel(),
                              static_cast<float>(p.alpha), name});
}

void unary_bwd(const Tensor& grad_in, const Tensor& grad_out, const Tensor& in, const Tensor& out,
               UnaryOp op, UnaryParams p) {
  const char* name = unary_name(op);
  require_f32(grad_out, name);
  set_device(grad_out.device().index);
  with_unary(op, UnaryBwdBody{grad_in.data<float>(), grad_out.data<float>(),
                              in.defined() ? in.data<float>() : nullptr,
                              out.defined() ? out.data<float>() : nullptr, grad_out.numel(),
                              static_cast<float>(p.alpha), name});
}

void binary_fwd(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op) {
  const char* name = binary_name(op);
  if (out.numel() == 0) return;
  set_device(out.device().index);
  IDEM_CUDA_DISPATCH(a.dtype(), name, [&] {
    with_binary(op, BinaryBody<scalar_t>{out, a, b, name});
  });
}

void where_fwd(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  const int64_t n = out.numel();
  if (n == 0) return;
  set_device(out.device().index);
  BcastDesc<3> d = make_bcast<3>(out.shape(), {&cond.shape(), &a.shape(), &b.shape()}, "where");
  const uint8_t* pc = cond.data<uint8_t>();
  cudaStream_t s = current_stream();
  with_bits(dtype_size(out.dtype()), "where", [&](auto tag) {
    using T = decltype(tag);
    T* po = static_cast<T*>(out.raw_data());
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    if (fits_u32(n)) {
      where_fwd_bcast_kernel<T, uint32_t>
          <<<grid_for(n, kThreads), kThreads, 0, s>>>(po, pc, pa, pb, d, static_cast<uint32_t>(n));
      IDEM_LAUNCH_CHECK("where");
    } else {
      where_fwd_bcast_kernel<T, int64_t>
          <<<grid_for(n, kThreads), kThreads, 0, s>>>(po, pc, pa, pb, d, n);
      IDEM_LAUNCH_CHECK("where");
    }
  });
}

void expand_fwd(const Tensor& out, const Tensor& in) {
  const int64_t n = out.numel();
  if (n == 0) return;
  set_device(out.device().index);
  BcastDesc<1> d = make_bcast<1>(out.shape(), {&in.shape()}, "expand");
  cudaStream_t s = current_stream();
  with_bits(dtype_size(out.dtype()), "expand", [&](auto tag) {
    using T = decltype(tag);
    T* po = static_cast<T*>(out.raw_data());
    const T* pi = static_cast<const T*>(in.raw_data());
    if (fits_u32(n)) {
      expand_fwd_bcast_kernel<T, uint32_t>
          <<<grid_for(n, kThreads), kThreads, 0, s>>>(po, pi, d, static_cast<uint32_t>(n));
      IDEM_LAUNCH_CHECK("expand");
    } else {
      expand_fwd_bcast_kernel<T, int64_t><<<grid_for(n, kThreads), kThreads, 0, s>>>(po, pi, d, n);
      IDEM_LAUNCH_CHECK("expand");
    }
  });
}

void cast(const Tensor& out, const Tensor& in) {
  const int64_t n = in.numel();
  if (n == 0) return;
  set_device(out.device().index);
  IDEM_CUDA_DISPATCH(in.dtype(), "cast", [&] {
    using S = scalar_t;
    const S* pi = in.data<S>();
    IDEM_CUDA_DISPATCH(out.dtype(), "cast", [&] {
      using D = scalar_t;
      launch_map<S, D, false>("cast", out.data<D>(), pi, pi, n, CastFn<S, D>{});
    });
  });
}

void fill(const Tensor& out, double value) {
  const int64_t n = out.numel();
  if (n == 0) return;
  set_device(out.device().index);
  cudaStream_t s = current_stream();
  IDEM_CUDA_DISPATCH(out.dtype(), "fill", [&] {
    fill_fwd_kernel<scalar_t><<<grid_for(n, kThreads), kThreads, 0, s>>>(
        out.data<scalar_t>(), n, static_cast<scalar_t>(value));
    IDEM_LAUNCH_CHECK("fill");
  });
}

void arange_fill(const Tensor& out, double start, double step) {
  const int64_t n = out.numel();
  if (n == 0) return;
  set_device(out.device().index);
  cudaStream_t s = current_stream();
  IDEM_CUDA_DISPATCH(out.dtype(), "arange", [&] {
    arange_fwd_kernel<scalar_t>
        <<<grid_for(n, kThreads), kThreads, 0, s>>>(out.data<scalar_t>(), n, start, step);
    IDEM_LAUNCH_CHECK("arange");
  });
}

void random_fill(const Tensor& out, RandomDist dist, double lo, double hi, uint64_t seed,
                 uint64_t offset) {
  const int64_t n = out.numel();
  if (n == 0) return;
  require_f32(out, "random");
  set_device(out.device().index);
  cudaStream_t s = current_stream();
  float* po = out.data<float>();
  if (dist == RandomDist::normal) {
    random_fwd_philox_kernel<float, true>
        <<<grid_for(n, kThreads), kThreads, 0, s>>>(po, n, lo, hi, seed, offset);
    IDEM_LAUNCH_CHECK("random");
  } else {
    random_fwd_philox_kernel<float, false>
        <<<grid_for(n, kThreads), kThreads, 0, s>>>(po, n, lo, hi, seed, offset);
    IDEM_LAUNCH_CHECK("random");
  }
}

}  // namespace idem::cuda
