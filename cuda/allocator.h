// Internal to the CUDA backend: helpers shared by cuda/runtime.cu, cuda/allocator.cu and
// cuda/cuda_graph.cu. The public face of the allocator is cuda::alloc / release / allocator_stats /
// empty_cache in core/kernels/runtime.h; of CUDA graphs, core/kernels/cuda_graph.h.
//
// ---- The caching allocator's rules ----
//
// 1. Per-stream caches. One cache per device; its free lists are keyed by (stream, size class).
//    A released block goes back to the list of the stream it was allocated on and is handed out
//    again only to a request on that stream: work on one stream runs in order, so whatever
//    reuses the block is queued behind every kernel that used the old tensor. A tensor used on
//    another stream than its own must be kept alive until that stream is done with it (idem
//    switches streams only through cuda::CaptureStream, which synchronizes when it ends).
// 2. Steady state. cudaMalloc only on a cache miss; cudaFree only in empty_cache and on the
//    out-of-memory path. A training or adaptation step that repeats its sizes allocates from the
//    driver in its first iteration only.
// 3. Out of memory. When cudaMalloc fails, every cached block of the device is freed (after a
//    device synchronization) and cudaMalloc is tried once more. If that fails too, alloc throws
//    idem::Error naming the requested size, the allocator's figures (in use, cached, peak, kept
//    by graphs), the device's total and free memory, and a hint; the CUDA error is cleared, so
//    the process carries on (free something, or lower the batch size, and try again).
// 4. CUDA graph capture (core/kernels/cuda_graph.h). While a capture is under way on a device:
//    a. no cudaMalloc and no cudaFree happen (illegal inside a capture). A request is served
//       from, in order: the graph's private pool, the capture stream's free list, then any other
//       stream's free list of that size class (safe: capture begins with a device
//       synchronization, so every block cached at that moment is idle). When all three miss,
//       alloc throws "allocation of N bytes during CUDA graph capture missed the cache; run the
//       same work once on the capture stream before capturing". So warm up first: eager runs
//       of the same step fill the cache with exactly the sizes the capture asks for. Two runs
//       when the step's outputs stay alive between runs (y = step()): while the capture
//       allocates the new y, the old y still holds its block, so the cache needs a second one.
//    b. every block handed out belongs to the graph's private pool, and every block released
//       during the capture (whoever allocated it) goes to that pool too, because the graph's
//       kernels may read or write it on every replay. Pool blocks are never handed to anyone
//       outside the graph while the graph lives; a pool block released after the capture, while
//       the graph lives, returns to the pool.
//    c. tensors allocated during the capture that outlive it (the step's outputs, new
//       gradients) keep their blocks: every replay rewrites them, which is how a caller reads a
//       graph's results. Likewise tensors allocated before the capture and used inside it (the
//       static inputs and parameters) are read or written by every replay: copy new inputs into
//       them, never replace them, and keep them alive as long as the graph.
//    d. when the Graph is destroyed, after a device synchronization, its pool's free blocks go
//       back to the global cache, and its blocks still in use become ordinary blocks.
//    One capture per device at a time; no other idem work may run on that device meanwhile
//    (the current stream is process-wide, so it would be captured too).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace idem::cuda::detail {

// Throws idem::Error naming `op` when CUDA is unusable (no driver, no device: the message names
// the CUDA error) or `device` is not a visible ordinal.
void require_device(int device, const char* op);

// The size class that a request of nbytes is served from: a multiple of 512 B, and above 4 KiB
// one of four classes per power of two (at most 25% slack), with steps capped at 2 MiB so huge
// tensors waste little. Blocks are reused only for requests of exactly the same class.
size_t size_class(size_t nbytes);

// ---- CUDA graph support (cuda/cuda_graph.cu) ----

// True while a capture is under way on `device` (between begin_capture and end_capture).
// Cheap (one atomic load); never throws.
bool capture_active(int device) noexcept;
// Starts routing `device`'s allocations and releases to a new private pool (rule 4) and
// returns its id. requires: no capture under way on `device` (throws idem::Error otherwise);
// the caller has synchronized the device.
uint64_t begin_capture(int device, cudaStream_t capture_stream);
// Stops routing to the pool of the capture; the pool lives on. `home` is the stream whose free
// lists take the pool's blocks when the pool is destroyed. Never throws.
void end_capture(int device, cudaStream_t home) noexcept;
// Returns pool `pool`'s free blocks to the global cache and turns its blocks in use into
// ordinary blocks (rule 4d). requires: the blocks are idle (the caller synchronized the device,
// or a capture began after the pool's last replay). Never throws.
void destroy_pool(int device, uint64_t pool) noexcept;
// Re-keys everything cached under stream `from` (free lists, blocks in use, pool homes) to
// stream `to`, before `from` is destroyed. requires: `from` is idle. Never throws.
void retarget_stream(int device, cudaStream_t from, cudaStream_t to) noexcept;

}  // namespace idem::cuda::detail
