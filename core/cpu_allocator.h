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
// size; smaller ones go straight to aligned_alloc/free (malloc's bins reuse them already).
// The cache holds at most cache_limit() bytes (IDEM_CPU_CACHE_MB, default 1024, and 0 under
// AddressSanitizer so that it still sees every use after free); a block freed beyond that goes
// back to the system. Thread-safe (one mutex). Memory from the cache is
// not zeroed, exactly like aligned_alloc's.
#pragma once
#include <cstddef>

namespace idem::cpu_alloc {

constexpr size_t kAlign = 64;              // every CPU buffer is 64-byte aligned
constexpr size_t kCachedMin = size_t(64) << 10;  // 64 KiB

// requires: nbytes > 0. ensures: a kAlign-aligned block of at least nbytes, or nullptr when the
// system has no memory left.
void* allocate(size_t nbytes);
// requires: p came from allocate(nbytes) with the same nbytes. Never throws.
void release(void* p, size_t nbytes) noexcept;

// Bytes held in the cache now, and its limit.
size_t cached_bytes();
size_t cache_limit();
// Frees every cached block (tests; a user who wants the memory back).
void empty_cache();

}  // namespace idem::cpu_alloc
