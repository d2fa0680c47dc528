// The CPU GEMMs side by side: our packed SGEMM (cpu::sgemm_packed) with its AVX-512 and with
// its AVX2 micro-kernels, against Eigen, on the products the CPU models run, at 1 and 2 threads:
//
//   cpu_gemm/<shape>/threads:<t>
//
// Shapes (M×K·K×N, transposes as matmul's callers pass them):
//   mlp_256 layer (256 → 256) at batch B = 8, 64, 256: fwd  y  = x·Wᵀ   (B, 256, 256, trans_b)
//                                                      bwd  dx = gz·W   (B, 256, 256)
//                                                      bwd  dW = gzᵀ·x  (256, 256, B, trans_a)
//   the fmnist cnn's im2col GEMMs (core/cpu/conv.cpp; a chunk of nb samples side by side):
//     conv1 (1→10, 5×5, 24×24 out, nb 3: 1 728 columns)  fwd (10, 1728, 25)
//           bwd_data (25, 1728, 10, trans_a)  bwd_weight (10, 25, 1728, trans_b)
//     conv2 (10→20, 5×5, 8×8 out, nb 32: 2 048 columns)  fwd (20, 2048, 250)
//           bwd_data (250, 2048, 20, trans_a) bwd_weight (20, 250, 2048, trans_b)
//   (in a convolution each chunk's GEMM runs inside the pool's loop over chunks, so on one
//   thread; the 2-thread lines say what the GEMM alone would do.)
//
// The machine this is written for is shared and noisy, so the GEMMs are timed interleaved:
// every benchmark iteration times a batch of calls of each in turn (who goes first rotates; 41
// iterations unless --benchmark_min_time is given), and the counters are the medians over all
// iterations: avx512_us, avx2_us and eigen_us (µs per call), eigen_over_avx512 and
// eigen_over_avx2 (> 1: ours is faster), and GFLOP/s of the packed GEMM's best kernels. The
// Time column (manual time) is that one's, µs per call. Without AVX-512 (build or CPU) the
// avx512 counters are left out; without the packed GEMM (a build without IDEM_CPU_AVX2) the
// lines skip.
//   idem_bench --benchmark_filter='^cpu_gemm/'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/kernels/matmul.h"
#include "core/parallel.h"

namespace idem::bench {

namespace {

struct GemmShape {
  std::string name;
  int64_t M, N, K;
  bool ta, tb;
};

std::vector<GemmShape> gemm_shapes() {
  std::vector<GemmShape> v;
  for (int64_t B : {8, 64, 256}) {
    const std::string b = "B" + std::to_string(B);
    v.push_back({"mlp256_fwd_" + b, B, 256, 256, false, true});
    v.push_back({"mlp256_dx_" + b, B, 256, 256, false, false});
    v.push_back({"mlp256_dW_" + b, 256, 256, B, true, false});
  }
  v.push_back({"conv1_fwd", 10, 1728, 25, false, false});
  v.push_back({"conv1_bwd_data", 25, 1728, 10, true, false});
  v.push_back({"conv1_bwd_weight", 10, 25, 1728, false, true});
  v.push_back({"conv2_fwd", 20, 2048, 250, false, false});
  v.push_back({"conv2_bwd_data", 250, 2048, 20, true, false});
  v.push_back({"conv2_bwd_weight", 20, 250, 2048, false, true});
  return v;
}

constexpr int kSamples = 41;  // interleaved samples per line (each a batch of calls of both)

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void bm_cpu_gemm(benchmark::State& st, const GemmShape& s, int threads) {
  if (!cpu::sgemm_packed_available()) {
    st.SkipWithError("built without IDEM_CPU_AVX2: no packed GEMM");
    return;
  }
  ThreadCountGuard tg(threads);
  const CpuGemm prev = cpu_gemm();
  MatmulParams p = single_gemm(s.M, s.N, s.K, s.ta, s.tb);
  const Tensor a = randn({s.M * s.K}, 11), b = randn({s.K * s.N}, 12);
  const Tensor c = empty({s.M * s.N});
  const double flops = 2.0 * double(s.M) * double(s.N) * double(s.K);
  // About 2 ms of calls per sample at 20 GFLOP/s.
  const int reps = int(std::clamp(4e7 / flops, 1.0, 2000.0));
  // The contenders: the packed GEMM with its AVX-512 kernels (where this build and CPU have
  // them) and with its AVX2 kernels, called directly, and Eigen through matmul_fwd.
  enum Which { avx512, avx2, eigen };
  const bool has512 = cpu::sgemm_packed_avx512_available();
  using clock = std::chrono::steady_clock;
  auto time_one = [&](Which w) {
    set_cpu_gemm(CpuGemm::eigen);
    const auto t0 = clock::now();
    for (int r = 0; r < reps; ++r) {
      if (w == eigen)
        cpu::matmul_fwd(c, a, b, p);
      else
        cpu::sgemm_packed(a.data<float>(), b.data<float>(), c.data<float>(), p,
                          w == avx512 ? cpu::SgemmIsa::avx512 : cpu::SgemmIsa::avx2);
    }
    benchmark::DoNotOptimize(c.raw_data());
    return std::chrono::duration<double, std::micro>(clock::now() - t0).count() / reps;
  };
  std::vector<Which> order = {avx2, eigen};
  if (has512) order.insert(order.begin(), avx512);
  for (Which w : order) time_one(w);  // warm-up: pool threads, packing buffers, caches
  std::vector<double> times[3];
  size_t first = 0;
  for (auto _ : st) {
    for (size_t q = 0; q < order.size(); ++q) {
      const Which w = order[(first + q) % order.size()];
      times[w].push_back(time_one(w));
    }
    first = (first + 1) % order.size();  // who goes first rotates
    st.SetIterationTime(times[has512 ? avx512 : avx2].back() * 1e-6);
  }
  set_cpu_gemm(prev);
  const double m512 = median(times[avx512]), m2 = median(times[avx2]), me = median(times[eigen]);
  const double best = has512 ? m512 : m2;
  if (has512) {
    st.counters["avx512_us"] = m512;
    st.counters["eigen_over_avx512"] = m512 > 0 ? me / m512 : 0.0;
  }
  st.counters["avx2_us"] = m2;
  st.counters["eigen_us"] = me;
  st.counters["eigen_over_avx2"] = m2 > 0 ? me / m2 : 0.0;
  st.counters["GFLOP/s"] = best > 0 ? flops / best * 1e-3 : 0.0;
  st.counters["reps"] = reps;
}

}  // namespace

void register_cpu_gemm_benchmarks(bool user_min_time) {
  for (const GemmShape& s : gemm_shapes())
    for (int threads : {1, 2}) {
      const std::string name = "cpu_gemm/" + s.name + "/threads:" + std::to_string(threads);
      auto* b = benchmark::RegisterBenchmark(
          name.c_str(), [s, threads](benchmark::State& st) { bm_cpu_gemm(st, s, threads); });
      b->UseManualTime()->Unit(benchmark::kMicrosecond);
      if (!user_min_time) b->Iterations(kSamples);
    }
}

}  // namespace idem::bench
