// Kernel contract: the multi-tensor copy/zero (MultiTensorCopy, core/ops/multi_copy.h).
// cpu:: in core/cpu/multi_copy.cpp, cuda:: in cuda/kernels/multi_copy.cu, stubs in
// cuda/no_cuda.cpp.
//
// One call performs every entry of a table built once: copy `nbytes` from src to dst, or zero
// `nbytes` at dst when src is null. Entries are byte ranges (dtype-agnostic: zero bytes are 0 in
// every idem dtype). Requires (checked by MultiTensorCopy): no destination range overlaps another
// destination or any source, pointers stay valid while the table is used.
#pragma once
#include <cstdint>
#include <vector>

namespace idem {

// The CUDA kernel gives each entry ceil(nbytes / kMultiCopyBlockBytes) consecutive blocks.
constexpr int64_t kMultiCopyBlockBytes = 16384;
constexpr int kMultiCopyThreads = 256;

struct MultiCopyDesc {
  void* dst = nullptr;
  const void* src = nullptr;  // null: zero dst
  int64_t nbytes = 0;
  int64_t block_begin =
      0;  // prefix sum of ceil(nbytes / kMultiCopyBlockBytes) over earlier entries
  // Bytes per access the kernel may use: 16, 8, 4 or 1 (dst, src and nbytes all multiples).
  int32_t width = 1;
  int32_t pad = 0;
};

namespace cpu {
void multi_copy(const std::vector<MultiCopyDesc>& table);
}

namespace cuda {
// ONE launch over `total_blocks` blocks on current_stream() of `device`. `device_table` is the
// table resident on the GPU (n entries, uploaded once by MultiTensorCopy). Never allocates,
// never synchronizes (capturable in a CUDA graph).
void multi_copy(const void* device_table, int64_t n, int64_t total_blocks, int device);
}  // namespace cuda

}  // namespace idem
