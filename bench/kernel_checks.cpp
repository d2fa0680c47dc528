// Correctness checks that run on the GPU before the timings (the llm.c habit: validate the
// variant you are about to time). They reach the paths the op-case parity table's small shapes
// do not: the 128x128 and 64x64 SGEMM tiles with all four transpose flags, unaligned extents,
// shared batch operands and beta = 1; the sorted (cub) paths of index_add / scatter_add; the
// tiled transpose and dim merging of permute; the block-per-row and strided softmax.
//
// Each check is one benchmark line named check/...: it runs once, reports max_err as a counter,
// and fails with SkipWithError ("ERROR OCCURRED: ...") naming the first bad case. References are
// the CPU kernels (core/cpu) on the same inputs. Copies and the deterministic adjoints must match
// the CPU bit for bit; matmul and softmax within a relative error bound.
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/kernels/index.h"
#include "core/kernels/matmul.h"
#include "core/kernels/softmax.h"

namespace idem::bench {

namespace {

#ifdef IDEM_WITH_CUDA

const Device kGpu = Device::cuda(0);

bool same_bytes(const Tensor& gpu_t, const Tensor& cpu_t) {
  const Tensor h = gpu_t.to(Device::cpu());
  return h.nbytes() == cpu_t.nbytes() &&
         std::memcmp(h.raw_data(), cpu_t.raw_data(), cpu_t.nbytes()) == 0;
}

// ||g - c|| / ||c|| over f32 tensors; +inf when g has a NaN that c lacks (an unwritten element
// of a NaN-poisoned output shows up here).
double rel_err(const Tensor& gpu_t, const Tensor& cpu_t) {
  const std::vector<float> g = gpu_t.to_vector<float>(), c = cpu_t.to_vector<float>();
  double num = 0, den = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (std::isnan(g[i]) != std::isnan(c[i])) return INFINITY;
    if (std::isnan(c[i])) continue;
    const double d = static_cast<double>(g[i]) - c[i];
    num += d * d;
    den += static_cast<double>(c[i]) * c[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Runs `body` once (outside the timing loop); it returns the largest error and appends the
// first failure to `fail`.
template <typename Body>
void run_check(benchmark::State& state, Body&& body) {
  if (!gpu_available()) {
    state.SkipWithError("no CUDA GPU available");
    return;
  }
  std::string fail;
  double err = 0;
  try {
    err = body(fail);
    sync_stream();
  } catch (const std::exception& e) {
    fail = e.what();
  }
  if (!fail.empty()) {
    state.SkipWithError(fail.c_str());
    return;
  }
  for (auto _ : state) {
  }
  state.counters["max_err"] = err;
}

// ---- matmul -----------------------------------------------------------------------------------

struct MmCase {
  int64_t batch, M, N, K;
  bool share_a;  // stride_a = 0: one A for the whole batch
  double alpha, beta;
};

double check_matmul(std::string& fail, GemmBackend be) {
  // Which path each case reaches in matmul_hand (H100, 132 SMs): see the selection there.
  const std::vector<MmCase> cases = {
      {1, 2048, 2048, 256, false, 1.0, 0.0},  // 128x128 tile, 16-byte loads
      {1, 2051, 1543, 301, false, 1.0, 0.0},  // 128x128 tile, scalar loads, ragged edges
      {1, 2048, 1024, 512, false, 0.5, 1.0},  // 128x128, alpha/beta
      {3, 515, 1024, 128, true, 0.5, 1.0},    // 64x64 tile, shared A, beta = 1
      {2, 515, 1026, 130, false, 1.0, 0.0},   // 64x64 tile, unaligned
      {1, 300, 200, 100, false, 1.0, 0.0},    // 32x32 tile
      {4, 97, 61, 45, true, 1.0, 1.0},        // 32x32 tile, odd sizes, shared A
      {1, 8, 30, 14, false, 1.0, 0.0},        // small: thread per output
      {5, 8, 20, 30, true, 1.0, 0.0},         // small, batched, shared A
      {1, 64, 50, 320, false, 1.0, 0.0},      // small: warp per output
      {2, 16, 16, 1000, false, 2.0, 1.0},     // warp per output, beta = 1
  };
  const double tol = 2e-5;
  double worst = 0;
  uint64_t seed = 100;
  for (const MmCase& mc : cases)
    for (int t = 0; t < 4; ++t) {
      MatmulParams p;
      p.trans_a = t & 1;
      p.trans_b = t & 2;
      p.batch = mc.batch;
      p.M = mc.M;
      p.N = mc.N;
      p.K = mc.K;
      p.alpha = mc.alpha;
      p.beta = mc.beta;
      const Shape a_mat = p.trans_a ? Shape{mc.K, mc.M} : Shape{mc.M, mc.K};
      const Shape b_mat = p.trans_b ? Shape{mc.N, mc.K} : Shape{mc.K, mc.N};
      Shape a_shape = a_mat, b_shape = b_mat, c_shape{mc.batch, mc.M, mc.N};
      if (!mc.share_a) a_shape.insert(a_shape.begin(), mc.batch);
      b_shape.insert(b_shape.begin(), mc.batch);
      p.stride_a = mc.share_a ? 0 : mc.M * mc.K;
      p.stride_b = mc.K * mc.N;
      p.stride_c = mc.M * mc.N;
      const Tensor a = randn(a_shape, seed++), b = randn(b_shape, seed++);
      // beta = 0: poison C with NaN so an unwritten element is caught.
      const Tensor c0 = mc.beta == 0 ? full(c_shape, NAN) : randn(c_shape, seed++);
      const Tensor c_ref = c0.clone_data();
      cpu::matmul_fwd(c_ref, a, b, p);
      const Tensor c_gpu = c0.to(kGpu);
      if (be == GemmBackend::hand)
        cuda::matmul_hand(c_gpu, a.to(kGpu), b.to(kGpu), p);
      else
        cuda::matmul_cublas(c_gpu, a.to(kGpu), b.to(kGpu), p);
      const double e = rel_err(c_gpu, c_ref);
      worst = std::max(worst, e);
      if (!(e <= tol) && fail.empty()) {
        std::ostringstream os;
        os << gemm_backend_name(be) << " matmul batch=" << mc.batch << " M=" << mc.M
           << " N=" << mc.N << " K=" << mc.K << " trans_a=" << p.trans_a
           << " trans_b=" << p.trans_b << " alpha=" << mc.alpha << " beta=" << mc.beta
           << ": relative error " << e << " > " << tol;
        fail = os.str();
      }
    }
  return worst;
}

// ---- index_add / scatter_add (sorted paths), index_select, gather --------------------------------

Tensor random_index(int64_t n, int64_t high, uint64_t seed, Device dev) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int64_t>(rng() % static_cast<uint64_t>(high));
  return from_vector<int64_t>(v, {n}, dev);
}

void expect_same(const Tensor& g, const Tensor& c, const std::string& what, std::string& fail,
                 double& worst) {
  if (!same_bytes(g, c)) {
    worst = 1;
    if (fail.empty()) fail = what + ": GPU result differs from the CPU reference";
  }
}

double check_index(std::string& fail) {
  double worst = 0;
  // index_add: few indices (scan path) and many (sorted path), outer and inner > 1.
  for (int64_t n_index : {int64_t{20}, int64_t{5000}}) {
    IndexShape s;
    s.outer = 3;
    s.inner = 33;
    s.in_dim = 700;
    s.n_index = n_index;
    const Tensor src = randn({s.outer, n_index, s.inner}, 7);
    const Tensor idx = random_index(n_index, s.in_dim, 8, Device::cpu());
    const Tensor ref = randn({s.outer, s.in_dim, s.inner}, 9);  // accumulates into old values
    const Tensor gpu = ref.to(kGpu), gpu2 = ref.to(kGpu);
    cpu::index_add(ref, src, idx, s);
    cuda::index_add(gpu, src.to(kGpu), idx.to(kGpu), s);
    cuda::index_add(gpu2, src.to(kGpu), idx.to(kGpu), s);
    expect_same(gpu, ref, "index_add n_index=" + std::to_string(n_index), fail, worst);
    expect_same(gpu2, ref, "index_add (second run) n_index=" + std::to_string(n_index), fail,
                worst);
  }
  // scatter_add: scan and sorted paths.
  for (int64_t idx_dim : {int64_t{10}, int64_t{300}}) {
    GatherShape s;
    s.outer = 4;
    s.inner = 7;
    s.in_dim = 20;
    s.idx_dim = idx_dim;
    const int64_t n = s.outer * idx_dim * s.inner;
    const Tensor src = randn({s.outer, idx_dim, s.inner}, 17);
    const Tensor idx = random_index(n, s.in_dim, 18, Device::cpu()).view_as_shape({s.outer, idx_dim, s.inner});
    const Tensor ref = zeros({s.outer, s.in_dim, s.inner});
    const Tensor gpu = ref.to(kGpu);
    cpu::scatter_add(ref, src, idx, s);
    cuda::scatter_add(gpu, src.to(kGpu), idx.to(kGpu), s);
    expect_same(gpu, ref, "scatter_add idx_dim=" + std::to_string(idx_dim), fail, worst);
    // gather with the same index
    GatherShape gs = s;
    gs.in_dim = s.in_dim;
    const Tensor x = randn({s.outer, s.in_dim, s.inner}, 19);
    const Tensor gref = empty({s.outer, idx_dim, s.inner});
    const Tensor ggpu = full({s.outer, idx_dim, s.inner}, NAN, {DType::f32, kGpu});
    cpu::gather_fwd(gref, x, idx, gs);
    cuda::gather_fwd(ggpu, x.to(kGpu), idx.to(kGpu), gs);
    expect_same(ggpu, gref, "gather", fail, worst);
  }
  // index_select of f32 rows (widened loads) and of u8.
  {
    IndexShape s;
    s.outer = 2;
    s.inner = 16;
    s.in_dim = 50;
    s.n_index = 77;
    const Tensor x = randn({s.outer, s.in_dim, s.inner}, 21);
    const Tensor idx = random_index(s.n_index, s.in_dim, 22, Device::cpu());
    const Tensor ref = empty({s.outer, s.n_index, s.inner});
    const Tensor gpu = full({s.outer, s.n_index, s.inner}, NAN, {DType::f32, kGpu});
    cpu::index_select_fwd(ref, x, idx, s);
    cuda::index_select_fwd(gpu, x.to(kGpu), idx.to(kGpu), s);
    expect_same(gpu, ref, "index_select f32", fail, worst);
  }
  // slice_copy into the middle of a larger tensor.
  {
    SliceCopy s;
    s.outer = 3;
    s.inner = 5;
    s.src_dim = 9;
    s.src_start = 2;
    s.dst_dim = 11;
    s.dst_start = 4;
    s.count = 6;
    const Tensor src = randn({3, 9, 5}, 31);
    const Tensor ref = randn({3, 11, 5}, 32);
    const Tensor gpu = ref.to(kGpu);
    cpu::slice_copy(ref, src, s);
    cuda::slice_copy(gpu, src.to(kGpu), s);
    expect_same(gpu, ref, "slice_copy", fail, worst);
  }
  // one_hot into f32.
  {
    const Tensor idx = random_index(37, 9, 41, Device::cpu());
    const Tensor ref = empty({37, 9});
    const Tensor gpu = full({37, 9}, NAN, {DType::f32, kGpu});
    cpu::one_hot(ref, idx, 9);
    cuda::one_hot(gpu, idx.to(kGpu), 9);
    expect_same(gpu, ref, "one_hot", fail, worst);
  }
  return worst;
}

// ---- permute ------------------------------------------------------------------------------------

double check_permute(std::string& fail) {
  struct Case {
    Shape shape;
    std::vector<int64_t> perm;
  };
  const std::vector<Case> cases = {
      {{257, 129}, {1, 0}},                               // tiled 2-D transpose
      {{6, 65, 33}, {0, 2, 1}},                           // tiled batched transpose
      {{2, 3, 4, 5}, {0, 1, 2, 3}},                       // identity -> copy
      {{2, 3, 4, 5}, {0, 2, 3, 1}},                       // merges (2,3)->one dim
      {{2, 3, 4, 5}, {3, 1, 0, 2}},                       // general
      {{1, 5, 1, 7}, {3, 2, 1, 0}},                       // extent-1 dims dropped
      {{3, 4, 1, 2, 5, 2, 3, 2}, {7, 0, 5, 2, 3, 1, 6, 4}},  // 8 dims
      {{17, 1, 19}, {2, 1, 0}},                           // transpose after dropping 1
  };
  double worst = 0;
  uint64_t seed = 51;
  for (const Case& c : cases) {
    Shape out_shape;
    for (int64_t d : c.perm) out_shape.push_back(c.shape[d]);
    for (DType dt : {DType::f32, DType::i64, DType::u8}) {
      const Tensor x = uniform(c.shape, 0, 200, seed++).to(dt);
      const Tensor ref = empty(out_shape, {dt});
      const Tensor gpu = empty(out_shape, {dt, kGpu});
      cpu::permute(ref, x, c.perm);
      cuda::permute(gpu, x.to(kGpu), c.perm);
      expect_same(gpu, ref, std::string("permute ") + shape_str(c.shape) + " " + dtype_name(dt),
                  fail, worst);
    }
  }
  return worst;
}

// ---- softmax ------------------------------------------------------------------------------------

double check_softmax(std::string& fail) {
  const std::vector<ReduceShape> shapes = {
      {100, 1000, 1},  // warp per row, 32 values per lane
      {37, 33, 1},     // warp per row, ragged
      {7, 3000, 1},    // block per row
      {5, 100, 37},    // strided lines
  };
  const double tol = 1e-5;
  double worst = 0;
  uint64_t seed = 71;
  for (const ReduceShape& s : shapes)
    for (bool log : {false, true}) {
      const Shape sh{s.outer, s.reduce, s.inner};
      const Tensor x = randn(sh, seed++), g = randn(sh, seed++);
      const Tensor y_ref = empty(sh), gx_ref = empty(sh);
      cpu::softmax_fwd(y_ref, x, s, log);
      cpu::softmax_bwd(gx_ref, g, y_ref, s, log);
      const Tensor y = full(sh, NAN, {DType::f32, kGpu}), gx = full(sh, NAN, {DType::f32, kGpu});
      cuda::softmax_fwd(y, x.to(kGpu), s, log);
      // Backward from the CPU forward output, so only the backward kernel is compared.
      cuda::softmax_bwd(gx, g.to(kGpu), y_ref.to(kGpu), s, log);
      const double e = std::max(rel_err(y, y_ref), rel_err(gx, gx_ref));
      worst = std::max(worst, e);
      if (!(e <= tol) && fail.empty()) {
        std::ostringstream os;
        os << (log ? "log_softmax" : "softmax") << " (" << s.outer << ", " << s.reduce << ", "
           << s.inner << "): relative error " << e << " > " << tol;
        fail = os.str();
      }
    }
  return worst;
}

#endif  // IDEM_WITH_CUDA

}  // namespace

void register_kernel_checks(bool gpu) {
#ifdef IDEM_WITH_CUDA
  (void)gpu;
  auto reg = [](const char* name, auto fn) {
    benchmark::RegisterBenchmark(name, [fn](benchmark::State& st) { run_check(st, fn); })
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  };
  reg("check/matmul_hand", [](std::string& f) { return check_matmul(f, GemmBackend::hand); });
#ifdef IDEM_WITH_CUBLAS
  reg("check/matmul_cublas", [](std::string& f) { return check_matmul(f, GemmBackend::cublas); });
#endif
  reg("check/index", [](std::string& f) { return check_index(f); });
  reg("check/permute", [](std::string& f) { return check_permute(f); });
  reg("check/softmax", [](std::string& f) { return check_softmax(f); });
#else
  (void)gpu;
#endif
}

}  // namespace idem::bench
