// Kernel benchmarks (Google Benchmark) and the main() of idem_bench.
//
// GPU lines call the cuda:: kernel functions directly (core/kernels/*.h), so they time the kernel
// alone: no validation, allocation or autograd. Timing: CUDA events on the current stream with
// manual time; one untimed warm-up call; each iteration is `reps` back-to-back launches (the
// /reps:N in the name; N > 1 only for small matmuls, so the events resolve them). The Time
// column is per iteration; the counters are per launch (us/launch, TFLOP/s, GB/s). Each GPU
// benchmark runs 5 repetitions and reports aggregates only: read the `_median` line. Matmul
// flushes L2 before each iteration; the bandwidth cases move 256 MB or more, far beyond L2.
//
//   matmul/<hand|cublas>/MxKxN     TFLOP/s = 2·M·N·K / time   (fp32 FFMA; cuBLAS without TF32)
//   matmul/hand_<tile>/MxKxN       one hand-written tile config forced (tunes the heuristic)
//   copy, elementwise, reduce,
//   softmax, transpose, index_add  GB/s = bytes that must move (each input read once, each
//                                   output written once) / time; a copy counts read + write
//
// A summary table with hand/cuBLAS ratios (medians over repetitions) is printed at the end.
// Without a GPU the CUDA benchmarks skip with a message and only the short CPU matmul set runs.
// bench/op_case_bench.cpp adds op_case/<cpu|cuda>/<family>/<row>/<fwd|fwd_bwd>: every row of the
// op-case table (tests/op_cases/) timed as a whole L2 call.
// Options: the usual --benchmark_filter=REGEX; --benchmark_repetitions=N and
// --benchmark_min_time=T override the built-in 5 repetitions and 0.1 s (GPU) / 0.05 s (CPU).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/kernels/elementwise.h"
#include "core/kernels/index.h"
#include "core/kernels/matmul.h"
#include "core/kernels/reduce.h"
#include "core/kernels/runtime.h"
#include "core/kernels/softmax.h"

namespace idem::bench {

namespace {

int g_reps = 5;  // repetitions per benchmark unless --benchmark_repetitions is given
bool g_user_reps = false;
bool g_user_min_time = false;  // --benchmark_min_time given: leave MinTime to the flag

// Per-repetition matmul rates, for the summary table: key "MxKxN", then backend -> values.
std::mutex g_mu;
std::map<std::string, std::map<std::string, std::vector<double>>> g_matmul, g_matmul_us;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

Options gpu_f32() { return {DType::f32, Device::cuda(0)}; }

benchmark::internal::Benchmark* gpu_bench(benchmark::internal::Benchmark* b, bool gpu) {
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
  if (!gpu) return b->Iterations(1);  // skips at once: one line each
  if (!g_user_min_time) b->MinTime(0.1);
  if (!g_user_reps) b->Repetitions(g_reps)->ReportAggregatesOnly(true);
  return b;
}

const char* variant_name(int v) {
  switch (v) {
    case -1: return "cublas";
    case 0: return "hand";
    case 1: return "hand_128x128x8";
    case 2: return "hand_128x128x16";
    case 3: return "hand_64x64x16";
    case 4: return "hand_32x32x16";
    case 6: return "hand_128x64x8";
    case 9: return "hand_cluster_split";
    default: return "hand_small";
  }
}

// Back-to-back launches per timed iteration: about 1 ms of work at 2 TFLOP/s, 1 to 200.
int matmul_reps(int64_t M, int64_t K, int64_t N) {
  return static_cast<int>(std::clamp(2e9 / (2.0 * M * N * K), 1.0, 200.0));
}

std::string mm_key(int64_t M, int64_t K, int64_t N) {
  return std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N);
}

// ---- matmul -----------------------------------------------------------------------------------

#ifdef IDEM_WITH_CUDA
// variant < 0: cuBLAS; 0: matmul_hand; 1..6, 9: one forced hand-written config (see
// bench_common.h). The tall-skinny shapes that pick 6 are timed in bench/sage_shapes_bench.cpp.
void bm_matmul(benchmark::State& state, int64_t M, int64_t K, int64_t N, int variant) {
  if (!gpu_available()) {
    state.SkipWithError("no CUDA GPU available");
    return;
  }
  Tensor a, b, c;
  try {
    a = randn({M, K}, 11, gpu_f32());
    b = randn({K, N}, 12, gpu_f32());
    c = empty({M, N}, gpu_f32());
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  MatmulParams p;
  p.M = M;
  p.N = N;
  p.K = K;
  p.stride_c = M * N;
  if (variant == 9) {  // the cluster split-K refuses a card or build without sm_90 clusters
    try {
      cuda::matmul_hand_variant(c, a, b, p, variant);
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
  }
  const double flops = 2.0 * M * N * K;
  const int reps = matmul_reps(M, K, N);
  time_gpu(
      state,
      [&] {
        if (variant < 0)
          cuda::matmul_cublas(c, a, b, p);
        else
          cuda::matmul_hand_variant(c, a, b, p, variant);
      },
      reps, /*flush=*/true, Work{flops, 0});
  if (state.counters.count("TFLOP/s")) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_matmul[mm_key(M, K, N)][variant_name(variant)].push_back(state.counters["TFLOP/s"].value);
    g_matmul_us[mm_key(M, K, N)][variant_name(variant)].push_back(state.counters["us/launch"].value);
  }
}

// ---- bandwidth ----------------------------------------------------------------------------------

constexpr int64_t kBig = int64_t{64} << 20;  // 64 Mi floats = 256 MiB

// Allocates inside a try block: a failure becomes SkipWithError.
template <typename Setup>
bool setup(benchmark::State& state, Setup&& f) {
  if (!gpu_available()) {
    state.SkipWithError("no CUDA GPU available");
    return false;
  }
  try {
    f();
    sync_stream();
    return true;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return false;
  }
}

void bm_copy(benchmark::State& state) {
  Tensor src, dst;
  if (!setup(state, [&] {
        src = randn({kBig}, 1, gpu_f32());
        dst = empty({kBig}, gpu_f32());
      }))
    return;
  const size_t bytes = src.nbytes();
  time_gpu(
      state,
      [&] {
        IDEM_CUDA_CHECK("copy", cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes,
                                                cudaMemcpyDeviceToDevice, cuda::current_stream()));
      },
      1, false, Work{0, 2.0 * bytes});
}

void bm_binary_add(benchmark::State& state) {
  Tensor a, b, out;
  if (!setup(state, [&] {
        a = randn({kBig}, 1, gpu_f32());
        b = randn({kBig}, 2, gpu_f32());
        out = empty({kBig}, gpu_f32());
      }))
    return;
  time_gpu(
      state, [&] { cuda::binary_fwd(out, a, b, BinaryOp::add); }, 1, false,
      Work{0, 3.0 * out.nbytes()});
}

void bm_relu(benchmark::State& state) {
  Tensor in, out;
  if (!setup(state, [&] {
        in = randn({kBig}, 1, gpu_f32());
        out = empty({kBig}, gpu_f32());
      }))
    return;
  time_gpu(
      state, [&] { cuda::unary_fwd(out, in, UnaryOp::relu, UnaryParams{}); }, 1, false,
      Work{0, 2.0 * out.nbytes()});
}

// Sum over an 8192 x 8192 matrix: rows (outer 8192, R 8192, inner 1) or columns (1, 8192, 8192).
void bm_reduce(benchmark::State& state, bool rows) {
  const int64_t n = 8192;
  Tensor in, out;
  if (!setup(state, [&] {
        in = randn({n, n}, 1, gpu_f32());
        out = empty({n}, gpu_f32());
      }))
    return;
  const ReduceShape s = rows ? ReduceShape{n, n, 1} : ReduceShape{1, n, n};
  time_gpu(
      state, [&] { cuda::reduce_fwd(out, in, s, ReduceOp::sum); }, 1, false,
      Work{0, static_cast<double>(in.nbytes() + out.nbytes())});
}

// (outer, D, inner) softmax forward or backward over 64 Mi elements.
void bm_softmax(benchmark::State& state, int64_t outer, int64_t D, int64_t inner, bool bwd) {
  Tensor x, y, g, gx;
  if (!setup(state, [&] {
        x = randn({outer, D, inner}, 1, gpu_f32());
        y = empty({outer, D, inner}, gpu_f32());
        if (bwd) {
          cuda::softmax_fwd(y, x, {outer, D, inner}, false);
          g = randn({outer, D, inner}, 2, gpu_f32());
          gx = empty({outer, D, inner}, gpu_f32());
        }
      }))
    return;
  const ReduceShape s{outer, D, inner};
  const double bytes = (bwd ? 3.0 : 2.0) * x.nbytes();
  time_gpu(
      state,
      [&] {
        if (bwd)
          cuda::softmax_bwd(gx, g, y, s, false);
        else
          cuda::softmax_fwd(y, x, s, false);
      },
      1, false, Work{0, bytes});
}

void bm_transpose(benchmark::State& state) {
  const int64_t n = 8192;
  Tensor in, out;
  if (!setup(state, [&] {
        in = randn({n, n}, 1, gpu_f32());
        out = empty({n, n}, gpu_f32());
      }))
    return;
  time_gpu(
      state, [&] { cuda::permute(out, in, {1, 0}); }, 1, false, Work{0, 2.0 * in.nbytes()});
}

// GNN-style aggregation: out (V, F) += rows of src (E, F) at random node indices; includes the
// index sort of the deterministic path.
void bm_index_add(benchmark::State& state) {
  const int64_t V = 16384, E = 6 * V, F = 64;
  Tensor src, out, index;
  if (!setup(state, [&] {
        src = randn({E, F}, 1, gpu_f32());
        out = zeros({V, F}, gpu_f32());
        std::mt19937_64 rng(5);
        std::vector<int64_t> idx(E);
        for (auto& v : idx) v = static_cast<int64_t>(rng() % V);
        index = from_vector<int64_t>(idx, {E}, Device::cuda(0));
      }))
    return;
  IndexShape s;
  s.outer = 1;
  s.inner = F;
  s.in_dim = V;
  s.n_index = E;
  const double bytes = 4.0 * (E * F + 2 * V * F) + 8.0 * E;
  time_gpu(
      state, [&] { cuda::index_add(out, src, index, s); }, 1, false, Work{0, bytes});
}
#endif  // IDEM_WITH_CUDA

// ---- CPU matmul (Eigen) ------------------------------------------------------------------------

void bm_cpu_matmul(benchmark::State& state, int64_t M, int64_t K, int64_t N) {
  Tensor a = randn({M, K}, 11), b = randn({K, N}, 12), c = empty({M, N});
  MatmulParams p;
  p.M = M;
  p.N = N;
  p.K = K;
  p.stride_c = M * N;
  for (auto _ : state) {
    cpu::matmul_fwd(c, a, b, p);
    benchmark::DoNotOptimize(c.raw_data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

struct Shape3 {
  int64_t M, K, N;
};
// 4096^3 and 1024^3 fill the GPU; the rest are the IT³ shapes: an MLP 14->30->20 at batch 8, a
// 3x256 MLP at batch 256, and a 320->50 layer at batch 64.
const std::vector<Shape3> kGpuShapes = {{4096, 4096, 4096}, {1024, 1024, 1024}, {256, 256, 256},
                                        {64, 256, 256},     {64, 320, 50},      {8, 14, 30},
                                        {8, 30, 20}};
const std::vector<Shape3> kCpuShapes = {{8, 14, 30}, {8, 30, 20}, {64, 320, 50}, {256, 256, 256}};

void print_matmul_summary() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_matmul.empty()) return;
  std::printf("\nmatmul summary on %s (median TFLOP/s over repetitions)\n", gpu_name().c_str());
  std::printf("%-18s %-16s %10s %10s %10s\n", "MxKxN", "kernel", "us/launch", "TFLOP/s",
              "of cuBLAS");
  for (const Shape3& s : kGpuShapes) {
    auto it = g_matmul.find(mm_key(s.M, s.K, s.N));
    if (it == g_matmul.end()) continue;
    const double c = median(it->second["cublas"]);
    for (auto& [kernel, values] : it->second) {
      const double h = median(values), us = median(g_matmul_us[it->first][kernel]);
      std::printf("%-18s %-16s %10.2f %10.3f %9.1f%%\n", it->first.c_str(), kernel.c_str(), us, h,
                  c > 0 ? 100.0 * h / c : 0.0);
    }
  }
  std::fflush(stdout);
}

}  // namespace

// ---- shared helpers ----------------------------------------------------------------------------

bool gpu_available() { return cuda::available(); }

bool require_gpu(benchmark::State& st) {
#ifdef IDEM_WITH_CUDA
  if (gpu_available()) return true;
  st.SkipWithError("no CUDA device");
#else
  st.SkipWithError("idem was built without CUDA");
#endif
  return false;
}

std::string gpu_name() {
#ifdef IDEM_WITH_CUDA
  if (!gpu_available()) return "none";
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "unknown";
  return prop.name;
#else
  return "none (built without CUDA)";
#endif
}

#ifdef IDEM_WITH_CUDA
void flush_l2() {
  static Tensor buf;
  if (!buf.defined()) {
    int l2 = 0;
    IDEM_CUDA_CHECK("bench", cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    buf = empty({std::max<int64_t>(2 * static_cast<int64_t>(l2), 1 << 20)}, {DType::u8, Device::cuda(0)});
  }
  IDEM_CUDA_CHECK("bench", cudaMemsetAsync(buf.raw_data(), 0, buf.nbytes(), cuda::current_stream()));
}

void sync_stream() {
  IDEM_CUDA_CHECK("bench", cudaStreamSynchronize(cuda::current_stream()));
}
#endif

void register_kernel_benchmarks(bool gpu) {
#ifdef IDEM_WITH_CUDA
  auto reg_mm = [gpu](const Shape3& s, int v) {
    const std::string name = std::string("matmul/") + variant_name(v) + "/" + mm_key(s.M, s.K, s.N) +
                             "/reps:" + std::to_string(matmul_reps(s.M, s.K, s.N));
    gpu_bench(benchmark::RegisterBenchmark(
                  name.c_str(), [s, v](benchmark::State& st) { bm_matmul(st, s.M, s.K, s.N, v); }),
              gpu);
  };
  for (const Shape3& s : kGpuShapes)
    for (int v : {0, -1}) reg_mm(s, v);
  // Each tile config forced, at the sizes where the choice matters (for tuning the heuristic).
  if (gpu)
    for (const Shape3& s : kGpuShapes)
      if (s.M >= 1024)
        for (int v : {1, 2, 3, 4}) reg_mm(s, v);
      else if (s.M * s.N > 8192 && s.M * s.N <= 65536)
        for (int v : {4, 9}) reg_mm(s, v);  // the wide MLP's layers: unsplit 32x32 vs cluster split-K
  gpu_bench(benchmark::RegisterBenchmark("copy_d2d/256MB", bm_copy), gpu);
  gpu_bench(benchmark::RegisterBenchmark("binary_add/64M", bm_binary_add), gpu);
  gpu_bench(benchmark::RegisterBenchmark("unary_relu/64M", bm_relu), gpu);
  gpu_bench(benchmark::RegisterBenchmark("reduce_sum/rows/8192x8192",
                                         [](benchmark::State& st) { bm_reduce(st, true); }),
            gpu);
  gpu_bench(benchmark::RegisterBenchmark("reduce_sum/cols/8192x8192",
                                         [](benchmark::State& st) { bm_reduce(st, false); }),
            gpu);
  gpu_bench(benchmark::RegisterBenchmark(
                "softmax_fwd/65536x1024",
                [](benchmark::State& st) { bm_softmax(st, 65536, 1024, 1, false); }),
            gpu);
  gpu_bench(benchmark::RegisterBenchmark(
                "softmax_bwd/65536x1024",
                [](benchmark::State& st) { bm_softmax(st, 65536, 1024, 1, true); }),
            gpu);
  gpu_bench(benchmark::RegisterBenchmark(
                "softmax_fwd/2048x32768",
                [](benchmark::State& st) { bm_softmax(st, 2048, 32768, 1, false); }),
            gpu);
  gpu_bench(benchmark::RegisterBenchmark(
                "softmax_fwd/64x1024x1024_dim1",
                [](benchmark::State& st) { bm_softmax(st, 64, 1024, 1024, false); }),
            gpu);
  gpu_bench(benchmark::RegisterBenchmark("transpose/8192x8192", bm_transpose), gpu);
  gpu_bench(benchmark::RegisterBenchmark("index_add/E98304_V16384_F64", bm_index_add), gpu);
#else
  (void)gpu;
#endif
  for (const Shape3& s : kCpuShapes) {
    const std::string name = "cpu/matmul/" + mm_key(s.M, s.K, s.N);
    auto* b = benchmark::RegisterBenchmark(
        name.c_str(), [s](benchmark::State& st) { bm_cpu_matmul(st, s.M, s.K, s.N); });
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
    if (!g_user_min_time) b->MinTime(0.05);
    if (!g_user_reps) b->Repetitions(3)->ReportAggregatesOnly(true);
  }
}

}  // namespace idem::bench

int main(int argc, char** argv) {
  // Line-buffered, so the lines already printed survive when a time limit kills the run.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::cout << std::unitbuf;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_repetitions", 23) == 0) idem::bench::g_user_reps = true;
    if (std::strncmp(argv[i], "--benchmark_min_time", 20) == 0) idem::bench::g_user_min_time = true;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const bool gpu = idem::bench::gpu_available();
  benchmark::AddCustomContext("gpu", idem::bench::gpu_name());
  benchmark::AddCustomContext(
      "timing", "CUDA events, manual time, warm-up first; per-launch time; median of the "
                "repetitions is the _median line");
  // Checks first: a wrong kernel should be visible before its timings.
  idem::bench::register_kernel_checks(gpu);
  idem::bench::register_kernel_benchmarks(gpu);
  idem::bench::register_op_case_benchmarks(gpu, idem::bench::g_user_min_time);
  idem::bench::register_cpu_gemm_benchmarks(idem::bench::g_user_min_time);
  idem::bench::register_host_overhead_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  idem::bench::print_matmul_summary();
  benchmark::Shutdown();
  return 0;
}
