// Block-wide staging of global memory into shared memory with many loads in flight (for .cu
// files only: device code).
//
// Why: the small kernels of an IT³ step (a 14-wide layer, a 5x5 conv over 8 images) stage a tile
// and then do little arithmetic, so their run time is the number of dependent memory round trips.
// A plain `for (i = tid; i < n; i += blockDim.x) smem[f(i)] = gmem[i];` waits for each load before
// the store and the next iteration: ceil(n / blockDim.x) round trips (an ncu run measured 41 of
// them in the fmnist CNN's conv2 forward at batch 8). block_stage issues kStageUnroll loads per
// thread before its first store: ceil(n / (kStageUnroll · blockDim.x)) round trips.
#pragma once

namespace idem::cuda {

constexpr int kStageUnroll = 8;

// For i in [0, n): store(i, load(i)), where load reads global memory and store writes shared
// memory. load may return a float or a wider value (a float4 for 16-byte loads); Unroll loads
// are in flight a thread (fewer where the caller's registers are short: ptxas -v shows spills).
// Every thread of the block must call it (the caller synchronizes afterwards).
template <int Unroll = kStageUnroll, typename Load, typename Store>
__device__ __forceinline__ void block_stage(int n, Load load, Store store) {
  using T = decltype(load(0));
  const int step = Unroll * static_cast<int>(blockDim.x);
  for (int base = static_cast<int>(threadIdx.x); base < n; base += step) {
    T v[Unroll];
#pragma unroll
    for (int u = 0; u < Unroll; ++u) {
      const int i = base + u * static_cast<int>(blockDim.x);
      v[u] = i < n ? load(i) : T{};
    }
#pragma unroll
    for (int u = 0; u < Unroll; ++u) {
      const int i = base + u * static_cast<int>(blockDim.x);
      if (i < n) store(i, v[u]);
    }
  }
}

}  // namespace idem::cuda
