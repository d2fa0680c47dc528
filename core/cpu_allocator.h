// The CPU caching allocator: big host buffers are kept for reuse instead of returned to the C
// library.
//
// Why: a training step allocates and frees the same few MB-sized activations every step. glibc
// serves them with fresh pages (mmap, or a heap that it trims back), and touching a fresh page
// costs a page fault: on the virtual machines we measure on (docs/performance.md) about 10 µs a
// page, which made a 2.9 MB output cost 7 ms of faults for 0.4 ms of arithmetic. Reusing the
// buffer removes the faults.
//
// Blocks of at least kCachedMin bytes are rounded up to whole 4 KiB pages and cached by that
// size. The cache holds at most cache_limit() bytes (IDEM_CPU_CACHE_MB, default 1024, and 0
// under AddressSanitizer so that it still sees every use after free); a block freed beyond that
// goes back to the system.
//
// Blocks of at most kSmallMax bytes (the scalars and small vectors of an eager op chain) are
// rounded up to 64 bytes and kept on per-size free lists of at most kSmallPerSize blocks each
// (under 0.6 MiB in all, not counted in cached_bytes; off when the cache limit is 0): glibc's
// aligned_alloc + free of 64 bytes costs about 70 ns on our machine against 10 ns for a list
// pop and push, and an eager op allocates one such block per output. Blocks in between go
// straight to aligned_alloc/free. Thread-safe (one mutex per cache). Memory from the caches is
// not zeroed, exactly like aligned_alloc's.
#pragma once
#include <cstddef>

namespace idem::cpu_alloc {

constexpr size_t kAlign = 64;              // every CPU buffer is 64-byte aligned
constexpr size_t kCachedMin = size_t(64) << 10;  // 64 KiB
constexpr size_t kSmallMax = 1024;                // small blocks: 64, 128, ..., 1024 bytes
constexpr size_t kSmallPerSize = 64;              // blocks kept per small size

// requires: nbytes > 0. ensures: a kAlign-aligned block of at least nbytes, or nullptr when the
// system has no memory left.
void* allocate(size_t nbytes);
// requires: p came from allocate(nbytes) with the same nbytes. Never throws.
void release(void* p, size_t nbytes) noexcept;

// Bytes held in the cache now, and its limit.
size_t cached_bytes();
size_t cache_limit();
// Small blocks (<= kSmallMax bytes) held on the free lists now.
size_t small_cached_blocks();
// Frees every cached block, big and small (tests; a user who wants the memory back).
void empty_cache();

}  // namespace idem::cpu_alloc
