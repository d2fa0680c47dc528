// Kernel benchmarks at the shapes of the `sage` GNN benchmark (64 grid meshes = 65 536 nodes,
// width 64): the GEMMs of a GraphSAGE layer and the broadcast binary ops around them, each
// kernel called directly (cuda:: functions, no validation or autograd).
//
//   sage/matmul/<form>/<MxKxN>/<kernel>/<cold|warm>
//       form x_Wt = x·Wᵀ (Linear forward), gz_W = gz·W (its input gradient),
//       gzT_x = gzᵀ·x (its weight gradient; split-K in the hand GEMM). kernel: hand (matmul_hand's
//       own choice), hand_<tile> (one config forced: 128x128x8 was the choice before the
//       128x64x8 rule; for gzT_x hand_splitk_tiled, the tiled split-K that hand now picks, and
//       hand_splitk_batched, the batched-GEMM split-K it picked before), cublas. GB/s counts A,
//       B and C once; TFLOP/s = 2·M·N·K / time.
//   sage/sage_linear/65536x64/<fused|separate|cublas>/<cold|warm>
//       a SAGE layer's forward y = relu(a·Wlᵀ + x·Wrᵀ + b): fused = cuda::sage_linear_fwd on the
//       hand GEMM (bias + ReLU in the second GEMM's store, 2 launches), separate = the two hand
//       GEMMs + the bias_act pass (what it replaced, 3 launches), cublas = the two cuBLAS GEMMs +
//       bias_act. GB/s counts a, x and y once (the weights are 32 KB).
//   sage/binary/<op>/<shapes>/<cold|warm>
//       (65536,64) against a bias (64) or a per-row scale (65536,1), both operand orders; F = 65
//       (vector loads of the full operand, scalar index walk); the same-shape add (the map
//       kernel, the bandwidth to aim for) and a middle-dim broadcast (256,256,64)·(256,1,64) of
//       the same size, which the general unravelling kernel still runs. GB/s counts each input
//       read once and the output written once.
//   sage/reduce_sum/<rows|cols>/65536x64/<cold|warm>
//       the backward of those broadcasts: sum over F (a per-row scale's gradient) or over the
//       rows (a bias's gradient).
//
// cold: L2 flushed before each timed launch, one launch between the events (what ncu with
// --cache-control all reports, plus ~1-2 µs of event overhead); warm: 20 back-to-back launches,
// operands L2-resident (the 32 MB working set fits the H100's 50 MB L2). Read the _median lines.
// Without a GPU every line skips.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/kernels/elementwise.h"
#include "core/kernels/fused.h"
#include "core/kernels/matmul.h"
#include "core/kernels/reduce.h"
#include "core/kernels/runtime.h"

namespace {

using idem::Tensor;

#ifdef IDEM_WITH_CUDA
using idem::bench::time_gpu;
using idem::bench::Work;

constexpr int64_t kNodes = 65536, kWidth = 64;

idem::Options gpu_f32() { return {idem::DType::f32, idem::Device::cuda(0)}; }

struct Mode {
  const char* name;
  bool flush;
  int reps;
};
const Mode kModes[] = {{"cold", true, 1}, {"warm", false, 20}};

// Allocates inside a try block: a failure (no GPU, out of memory) skips the line.
template <typename Setup>
bool setup(benchmark::State& state, Setup&& f) {
  if (!idem::cuda::available()) {
    state.SkipWithError("no CUDA GPU available");
    return false;
  }
  try {
    f();
    idem::bench::sync_stream();
    return true;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return false;
  }
}

// ---- matmul ---------------------------------------------------------------------------------------

struct MmForm {
  const char* name;
  int64_t M, K, N;
  bool ta, tb;
};
const MmForm kForms[] = {
    {"x_Wt", kNodes, kWidth, kWidth, false, true},
    {"gz_W", kNodes, kWidth, kWidth, false, false},
    {"gzT_x", kWidth, kNodes, kWidth, true, false},
    // The bench sage model's first layer (3 inputs: the node position and the signal): its
    // input gradients gz·Wr and gz·Wl (64 -> 3 per node) ...
    {"gz_W_first", kNodes, kWidth, 3, false, false},
    // ... and its forward products x·Wrᵀ, a·Wlᵀ (3 -> 64 per node: K = 3, the 128x64 tile).
    {"x_Wt_first", kNodes, 3, kWidth, false, true},
};

// variant: -1 cuBLAS, 0 matmul_hand, else the forced config of matmul_hand_variant.
const char* mm_kernel_name(int v) {
  switch (v) {
    case -1: return "cublas";
    case 0: return "hand";
    case 1: return "hand_128x128x8";
    case 3: return "hand_64x64x16";
    case 4: return "hand_32x32x16";
    case 5: return "hand_small";
    case 6: return "hand_128x64x8";
    case 7: return "hand_splitk_tiled";
    case 8: return "hand_splitk_batched";
    case 10: return "hand_narrow";
    default: return "hand_other";
  }
}

void bm_matmul(benchmark::State& state, MmForm f, int variant, Mode mode) {
  Tensor a, b, c;
  if (!setup(state, [&] {
        a = idem::randn(f.ta ? idem::Shape{f.K, f.M} : idem::Shape{f.M, f.K}, 11, gpu_f32());
        b = idem::randn(f.tb ? idem::Shape{f.N, f.K} : idem::Shape{f.K, f.N}, 12, gpu_f32());
        c = idem::empty({f.M, f.N}, gpu_f32());
      }))
    return;
  idem::MatmulParams p;
  p.trans_a = f.ta;
  p.trans_b = f.tb;
  p.M = f.M;
  p.N = f.N;
  p.K = f.K;
  p.stride_c = f.M * f.N;
  const double bytes = 4.0 * static_cast<double>(f.M * f.K + f.K * f.N + f.M * f.N);
  time_gpu(
      state,
      [&] {
        if (variant < 0)
          idem::cuda::matmul_cublas(c, a, b, p);
        else
          idem::cuda::matmul_hand_variant(c, a, b, p, variant);
      },
      mode.reps, mode.flush, Work{2.0 * f.M * f.N * f.K, 0});
  if (state.counters.count("us/launch"))
    state.counters["GB/s"] = bytes / (state.counters["us/launch"].value * 1e-6) * 1e-9;
}

// ---- sage_linear forward ------------------------------------------------------------------------

enum class SageImpl { fused, separate, cublas };

void bm_sage_linear(benchmark::State& state, SageImpl impl, Mode mode) {
  Tensor a, x, wl, wr, b, y;
  if (!setup(state, [&] {
        a = idem::randn({kNodes, kWidth}, 1, gpu_f32());
        x = idem::randn({kNodes, kWidth}, 2, gpu_f32());
        wl = idem::randn({kWidth, kWidth}, 3, gpu_f32());
        wr = idem::randn({kWidth, kWidth}, 4, gpu_f32());
        b = idem::randn({kWidth}, 5, gpu_f32());
        y = idem::empty({kNodes, kWidth}, gpu_f32());
      }))
    return;
  idem::LinearActParams p;
  p.N = kNodes;
  p.in = kWidth;
  p.out = kWidth;
  p.act = idem::FusedAct::relu;
  p.bias = true;
  idem::MatmulParams root = idem::single_gemm(kNodes, kWidth, kWidth, false, true);
  idem::MatmulParams neigh = root;
  neigh.beta = 1.0;
  const idem::GemmBackend saved = idem::gemm_backend();
  idem::set_gemm_backend(impl == SageImpl::cublas ? idem::GemmBackend::cublas
                                                  : idem::GemmBackend::hand);
  try {
    time_gpu(
        state,
        [&] {
          if (impl == SageImpl::separate) {
            idem::cuda::matmul_hand(y, x, wr, root);
            idem::cuda::matmul_hand(y, a, wl, neigh);
            idem::cuda::bias_act(y, b, p);
          } else {
            idem::cuda::sage_linear_fwd(y, a, wl, b, x, wr, p);
          }
        },
        mode.reps, mode.flush,
        Work{2.0 * 2.0 * kNodes * kWidth * kWidth, 3.0 * 4.0 * kNodes * kWidth});
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());  // e.g. a build without cuBLAS
  }
  idem::set_gemm_backend(saved);
}

// ---- broadcast binary ------------------------------------------------------------------------------

struct BinCase {
  const char* name;
  idem::BinaryOp op;
  idem::Shape a, b;
};
const BinCase kBinCases[] = {
    {"mul/65536x64_by_65536x1", idem::BinaryOp::mul, {kNodes, kWidth}, {kNodes, 1}},
    {"mul/65536x1_by_65536x64", idem::BinaryOp::mul, {kNodes, 1}, {kNodes, kWidth}},
    {"add/65536x64_plus_64", idem::BinaryOp::add, {kNodes, kWidth}, {kWidth}},
    {"sub/64_minus_65536x64", idem::BinaryOp::sub, {kWidth}, {kNodes, kWidth}},
    {"div/65536x64_by_65536x1", idem::BinaryOp::div, {kNodes, kWidth}, {kNodes, 1}},
    {"add/65536x65_plus_65", idem::BinaryOp::add, {kNodes, 65}, {65}},
    {"mul/65536x65_by_65536x1", idem::BinaryOp::mul, {kNodes, 65}, {kNodes, 1}},
    {"add/same_65536x64", idem::BinaryOp::add, {kNodes, kWidth}, {kNodes, kWidth}},
    {"mul/general_256x256x64_by_256x1x64", idem::BinaryOp::mul, {256, 256, kWidth}, {256, 1, kWidth}},
};

void bm_binary(benchmark::State& state, const BinCase& bc, Mode mode) {
  Tensor a, b, out;
  if (!setup(state, [&] {
        a = idem::randn(bc.a, 1, gpu_f32());
        b = idem::randn(bc.b, 2, gpu_f32());
        out = idem::empty(a.numel() >= b.numel() ? bc.a : bc.b, gpu_f32());
      }))
    return;
  time_gpu(
      state, [&] { idem::cuda::binary_fwd(out, a, b, bc.op); }, mode.reps, mode.flush,
      Work{0, static_cast<double>(a.nbytes() + b.nbytes() + out.nbytes())});
}

// ---- reduce (the broadcasts' backward) ----------------------------------------------------------

void bm_reduce(benchmark::State& state, bool rows, Mode mode) {
  Tensor in, out;
  if (!setup(state, [&] {
        in = idem::randn({kNodes, kWidth}, 1, gpu_f32());
        out = idem::empty({rows ? kNodes : kWidth}, gpu_f32());
      }))
    return;
  const idem::ReduceShape s = rows ? idem::ReduceShape{kNodes, kWidth, 1}
                                   : idem::ReduceShape{1, kNodes, kWidth};
  time_gpu(
      state, [&] { idem::cuda::reduce_fwd(out, in, s, idem::ReduceOp::sum); }, mode.reps,
      mode.flush, Work{0, static_cast<double>(in.nbytes() + out.nbytes())});
}

benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* b, bool gpu) {
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
  if (!gpu) return b->Iterations(1);  // skips at once: one line each
  return b->MinTime(0.05)->Repetitions(3)->ReportAggregatesOnly(true);
}

const bool g_registered = [] {
  const bool gpu = idem::cuda::available();
  for (const Mode& m : kModes) {
    for (const MmForm& f : kForms) {
      const std::vector<int> variants = f.ta       ? std::vector<int>{0, 7, 8, -1}
                                        : f.N <= 4  ? std::vector<int>{0, 5, 6, 10, -1}
                                        : f.K <= 16 ? std::vector<int>{0, 5, 6, -1}
                                                    : std::vector<int>{0, 1, 3, 6, -1};
      for (int v : variants) {
        const std::string name = std::string("sage/matmul/") + f.name + "/" +
                                 std::to_string(f.M) + "x" + std::to_string(f.K) + "x" +
                                 std::to_string(f.N) + "/" + mm_kernel_name(v) + "/" + m.name;
        configure(benchmark::RegisterBenchmark(
                      name.c_str(), [f, v, m](benchmark::State& st) { bm_matmul(st, f, v, m); }),
                  gpu);
      }
    }
    for (SageImpl impl : {SageImpl::fused, SageImpl::separate, SageImpl::cublas}) {
      const char* iname = impl == SageImpl::fused      ? "fused"
                          : impl == SageImpl::separate ? "separate"
                                                       : "cublas";
      const std::string name = std::string("sage/sage_linear/65536x64/") + iname + "/" + m.name;
      configure(benchmark::RegisterBenchmark(
                    name.c_str(), [impl, m](benchmark::State& st) { bm_sage_linear(st, impl, m); }),
                gpu);
    }
    for (const BinCase& bc : kBinCases) {
      const std::string name = std::string("sage/binary/") + bc.name + "/" + m.name;
      configure(benchmark::RegisterBenchmark(
                    name.c_str(), [&bc, m](benchmark::State& st) { bm_binary(st, bc, m); }),
                gpu);
    }
    for (bool rows : {true, false}) {
      const std::string name =
          std::string("sage/reduce_sum/") + (rows ? "rows" : "cols") + "/65536x64/" + m.name;
      configure(benchmark::RegisterBenchmark(
                    name.c_str(), [rows, m](benchmark::State& st) { bm_reduce(st, rows, m); }),
                gpu);
    }
  }
  return true;
}();
#endif  // IDEM_WITH_CUDA

}  // namespace
