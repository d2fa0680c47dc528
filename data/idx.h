// IDX files (the MNIST / Fashion-MNIST container, http://yann.lecun.com/exdb/mnist/), plain or
// gzip-compressed:
//   byte 0, 1   zero
//   byte 2      element type: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
//   byte 3      ndim (1..8)
//   ndim x u32  big-endian extents
//   data        big-endian elements, row-major
// Read types map to idem dtypes: 0x08 -> u8, 0x09/0x0B/0x0C -> i32 (widened), 0x0D -> f32,
// 0x0E -> f64. A file whose first two bytes are 1f 8b is a gzip stream (several concatenated
// members allowed) and is inflated first.
//
// Reading is strict because these files are untrusted input (and are fuzzed): the file must be
// exactly header + data bytes long (plain) or inflate to exactly that (gzip); the data may not
// exceed kIdxMaxBytes. Every violation throws idem::Error "[idx] <name>: <what>" naming the
// problem (wrong magic, unknown type, bad ndim, overflowing dims, expected vs actual bytes,
// truncated or corrupt gzip). Nothing is allocated before the header has been validated; a gzip
// header that claims more data than the compressed bytes could possibly hold (deflate's best
// ratio is 1032:1) is rejected before allocating, so the memory used stays within ~1000x the
// input size even for hostile files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/tensor.h"

namespace idem::data {

// Largest data section accepted (after inflating): 2 GiB. Fashion-MNIST's largest file is 47 MB.
constexpr uint64_t kIdxMaxBytes = uint64_t{1} << 31;

// Parses an IDX image held in memory; `name` (usually the file path) goes into error messages.
// ensures: a CPU tensor with the file's shape.
Tensor parse_idx(const uint8_t* bytes, size_t n, const std::string& name);
// Reads the whole file and parses it.
Tensor read_idx(const std::string& path);
// What a file's header says (the dtype it reads as, and the shape), reading only the first MiB:
// a plain file's length is checked against it; a gzip file's data is not inflated, so its
// length is not checked.
struct IdxInfo {
  DType dtype = DType::u8;
  Shape shape;
};
IdxInfo read_idx_info(const std::string& path);
// Writes `t` (u8, i32, f32 or f64; 1..8 dims, each < 2^32) as IDX, gzip-compressed when `gzip`;
// atomically (temporary file + rename). Used to make fixtures and to export data sets.
void write_idx(const std::string& path, const Tensor& t, bool gzip);

// The bytes as one gzip member (deflate, default level). Exposed for tests and fuzz seeds.
std::string gzip_compress(std::string_view bytes);

}  // namespace idem::data
