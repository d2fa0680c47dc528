// Thread-block clusters (sm_90): the launch configuration and the questions a launcher asks
// once per device. Used by the fused IT³ MLP kernels (fused_mlp_adapt.cu, fused_mlp_cluster.cu)
// and the hand GEMM's cluster split-K (matmul.cu).
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <atomic>

#include "cuda/common.cuh"

namespace idem::cuda {

// The launch of `blocks` blocks as one thread-block cluster (the whole grid), or of a grid of
// clusters, for cudaLaunchKernelEx and cudaOccupancyMaxActiveClusters. The config points at the
// attribute it holds, so a ClusterLaunch is neither copied nor moved.
struct ClusterLaunch {
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute attr = {};
  ClusterLaunch(int blocks, int threads, size_t smem_bytes, cudaStream_t stream)
      : ClusterLaunch(dim3(unsigned(blocks)), dim3(unsigned(blocks)), threads, smem_bytes, stream) {}
  // A grid of clusters: `cluster` blocks a cluster (each extent divides the grid's).
  ClusterLaunch(dim3 grid, dim3 cluster, int threads, size_t smem_bytes, cudaStream_t stream) {
    cfg.gridDim = grid;
    cfg.blockDim = dim3(unsigned(threads));
    cfg.dynamicSmemBytes = smem_bytes;
    cfg.stream = stream;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = cluster.x, attr.val.clusterDim.y = cluster.y, attr.val.clusterDim.z = cluster.z;
    cfg.attrs = &attr, cfg.numAttrs = 1;
  }
  ClusterLaunch(const ClusterLaunch&) = delete;
  ClusterLaunch& operator=(const ClusterLaunch&) = delete;
};

// Whether `kernel` can run as a cluster on `device`: an sm_90 or later device, and the kernel
// compiled for sm_90 or later (a build for an older architecture, JIT-compiled from its PTX on
// an H100, has no cluster barrier: the kernels that use one compile it in for sm_90 only).
inline bool has_cluster_code(const void* kernel, int device, const char* op) {
  int major = 0;
  IDEM_CUDA_CHECK(op, cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  if (major < 9) return false;
  cudaFuncAttributes fa{};
  IDEM_CUDA_CHECK(op, cudaFuncGetAttributes(&fa, kernel));
  return (fa.ptxVersion ? fa.ptxVersion : fa.binaryVersion) >= 90;
}

// An answer about device `device` that `compute()` gives once (a non-negative int), cached in
// `cache` as the answer + 1 (0: not asked yet); a device past the cache's 64 asks every time.
template <typename Compute>
int once_per_device(std::array<std::atomic<int>, 64>& cache, int device, Compute compute) {
  const bool cached = device >= 0 && device < 64;
  if (cached && cache[size_t(device)].load() > 0) return cache[size_t(device)].load() - 1;
  const int n = compute();
  if (cached) cache[size_t(device)].store(n + 1);
  return n;
}

// The largest cluster of `kernel` (`threads` threads and `smem_bytes` of dynamic shared memory
// a block) the current device can hold: 16 blocks (non-portable, allowed on H100), else 8 (the
// portable size), else 0. Blocks of a cluster use one SM each whatever their bytes, so callers
// ask once per device and cache the answer.
inline int largest_cluster(const void* kernel, int threads, size_t smem_bytes) {
  // Failing to allow 16 only means the portable 8.
  const bool wide = cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) == cudaSuccess;
  (void)cudaGetLastError();
  for (int size : {16, 8}) {
    if (size > 8 && !wide) continue;
    ClusterLaunch launch(size, threads, smem_bytes, nullptr);
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &launch.cfg) == cudaSuccess && clusters >= 1) return size;
    (void)cudaGetLastError();
  }
  return 0;
}

}  // namespace idem::cuda
