// Internal to the CUDA backend: helpers shared by cuda/runtime.cu and cuda/allocator.cu.
// The public face of the allocator is cuda::alloc / release / allocator_stats / empty_cache in
// core/kernels/runtime.h.
#pragma once
#include <cstddef>

namespace idem::cuda::detail {

// Throws idem::Error naming `op` when CUDA is unusable (no driver, no device: the message names
// the CUDA error) or `device` is not a visible ordinal.
void require_device(int device, const char* op);

// The size class that a request of nbytes is served from: a multiple of 512 B, and above 4 KiB
// one of four classes per power of two (at most 25% slack), with steps capped at 2 MiB so huge
// tensors waste little. Blocks are reused only for requests of exactly the same class.
size_t size_class(size_t nbytes);

}  // namespace idem::cuda::detail
