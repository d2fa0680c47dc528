// CUDA multi-tensor copy/zero: ONE launch performs every copy and every zeroing of a
// MultiTensorCopy table. Contract: core/kernels/multi_copy.h; reference: core/cpu/multi_copy.cpp.
//
// Work split (as the fused optimizer, cuda/kernels/optim.cu): entry t owns blocks
// [block_begin[t], block_begin[t] + ceil(nbytes / 16 KiB)); a block finds its entry by binary
// search over the table (resident on the GPU since the MultiTensorCopy was built) and its
// threads stride over that block's 16 KiB with the widest access the entry allows (16, 8, 4 or
// 1 bytes). One thread owns each word: no atomics, no ordering between entries needed because
// destinations never overlap sources or each other.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/kernels/multi_copy.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

// Index of the last entry whose block_begin <= b.
__device__ int64_t owner_of(const MultiCopyDesc* __restrict__ table, int64_t n, int64_t b) {
  int64_t lo = 0, hi = n;
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (table[mid].block_begin <= b)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

template <typename V>
__device__ __forceinline__ void copy_words(void* dst, const void* src, int64_t begin, int64_t end) {
  V* __restrict__ d = static_cast<V*>(dst);
  const V* __restrict__ s = static_cast<const V*>(src);
  const int64_t w0 = begin / static_cast<int64_t>(sizeof(V)),
                w1 = end / static_cast<int64_t>(sizeof(V));
  if (s != nullptr) {
    for (int64_t i = w0 + threadIdx.x; i < w1; i += blockDim.x) d[i] = s[i];
  } else {
    V zero;
    memset(&zero, 0, sizeof(V));
    for (int64_t i = w0 + threadIdx.x; i < w1; i += blockDim.x) d[i] = zero;
  }
}

__global__ void __launch_bounds__(kMultiCopyThreads)
    multi_copy_kernel(const MultiCopyDesc* __restrict__ table, int64_t n) {
  const int64_t b = blockIdx.x;
  const MultiCopyDesc d = table[owner_of(table, n, b)];
  const int64_t begin = (b - d.block_begin) * kMultiCopyBlockBytes;
  int64_t end = begin + kMultiCopyBlockBytes;
  if (end > d.nbytes) end = d.nbytes;
  switch (d.width) {
    case 16:
      copy_words<uint4>(d.dst, d.src, begin, end);
      break;
    case 8:
      copy_words<uint2>(d.dst, d.src, begin, end);
      break;
    case 4:
      copy_words<uint32_t>(d.dst, d.src, begin, end);
      break;
    default:
      copy_words<uint8_t>(d.dst, d.src, begin, end);
      break;
  }
}

}  // namespace

void multi_copy(const void* device_table, int64_t n, int64_t total_blocks, int device) {
  const char* op = "multi_copy";
  if (n == 0 || total_blocks == 0) return;
  IDEM_CHECK(total_blocks <= 0x7fffffffLL, op, "too many blocks (", total_blocks, ")");
  set_device(device);
  multi_copy_kernel<<<static_cast<unsigned>(total_blocks), kMultiCopyThreads, 0,
                      current_stream()>>>(static_cast<const MultiCopyDesc*>(device_table), n);
  IDEM_LAUNCH_CHECK(op);
}

}  // namespace idem::cuda
