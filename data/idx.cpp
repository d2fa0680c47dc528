// IDX read/write. Format, limits and error contract: data/idx.h.
#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "io/file.h"  // InputFile, write_file_atomic, check_little_endian

namespace idem::data {

namespace {

template <typename... P>
[[noreturn]] void bad(const std::string& name, const P&... parts) {
  fail("idx", name, ": ", parts...);
}

struct IdxType {
  uint8_t code;
  DType dtype;       // what the elements become
  size_t file_size;  // bytes per element in the file
  const char* name;
};

// clang-format off
constexpr IdxType kTypes[] = {{0x08, DType::u8, 1, "unsigned byte (0x08)"},
                              {0x09, DType::i32, 1, "signed byte (0x09)"},
                              {0x0B, DType::i32, 2, "short (0x0B)"},
                              {0x0C, DType::i32, 4, "int (0x0C)"},
                              {0x0D, DType::f32, 4, "float (0x0D)"},
                              {0x0E, DType::f64, 8, "double (0x0E)"}};
// clang-format on

constexpr size_t kMaxDims = 8;
constexpr uint64_t kMaxDeflateRatio = 1040;  // deflate's limit is 1032:1; a little slack
constexpr size_t kMaxHeader = 4 + 4 * kMaxDims;

std::string hex(uint8_t b) {
  const char* digits = "0123456789ABCDEF";
  return std::string("0x") + digits[b >> 4] + digits[b & 15];
}

uint32_t be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | static_cast<uint32_t>(p[3]);
}

struct IdxHeader {
  const IdxType* type = nullptr;
  Shape shape;
  size_t header_bytes = 0;
  uint64_t data_bytes = 0;
};

// Validates the 4-byte magic (type, ndim) in p[0..4). `src` says what holds the bytes, for errors.
const IdxType& check_magic(const uint8_t* p, size_t avail, const std::string& name,
                           const char* src) {
  if (avail < 4) bad(name, src, " is ", avail, " bytes, too short for the 4-byte IDX magic");
  if (p[0] != 0 || p[1] != 0)
    bad(name, "wrong magic: the first two bytes are ", hex(p[0]), " ", hex(p[1]),
        ", an IDX file starts with 0x00 0x00 (not an IDX file?)");
  const IdxType* type = nullptr;
  for (const IdxType& t : kTypes)
    if (t.code == p[2]) type = &t;
  if (!type)
    bad(name, "unknown element type ", hex(p[2]),
        " (known: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64)");
  if (p[3] == 0 || p[3] > kMaxDims)
    bad(name, "ndim is ", static_cast<int>(p[3]), ", expected 1..", kMaxDims);
  return *type;
}

// Parses magic and extents from the first `avail` bytes.
IdxHeader parse_header(const uint8_t* p, size_t avail, const std::string& name, const char* src) {
  IdxHeader h;
  h.type = &check_magic(p, avail, name, src);
  const size_t ndim = p[3];
  h.header_bytes = 4 + 4 * ndim;
  if (avail < h.header_bytes)
    bad(name, "the header has ", ndim, " dims and needs ", h.header_bytes, " bytes, but the ", src,
        " is only ", avail, " bytes");
  uint64_t numel = 1;
  bool zero = false, overflow = false;
  for (size_t d = 0; d < ndim; ++d) {
    const uint32_t e = be32(p + 4 + 4 * d);
    h.shape.push_back(static_cast<int64_t>(e));
    if (e == 0)
      zero = true;
    else if (numel > std::numeric_limits<uint64_t>::max() / e)
      overflow = true;
    else
      numel *= e;
  }
  if (zero) return h;  // an empty tensor: data_bytes = 0
  if (overflow || numel > kIdxMaxBytes / h.type->file_size)
    bad(name, "dims ", shape_str(h.shape), " of ", h.type->name, " need ",
        overflow ? std::string("more than 2^64") : std::to_string(numel * h.type->file_size),
        " data bytes, over the ", kIdxMaxBytes, "-byte limit");
  h.data_bytes = numel * h.type->file_size;
  return h;
}

// Converts the big-endian data section p into t (the header's shape and dtype). p may be
// t's own storage when the element sizes match (each element is rewritten in place).
void decode_into(const IdxHeader& h, const uint8_t* p, const Tensor& t) {
  const int64_t n = t.numel();
  switch (h.type->code) {
    case 0x08:
      if (n > 0 && p != t.raw_data()) std::memcpy(t.raw_data(), p, static_cast<size_t>(n));
      break;
    case 0x09: {
      int32_t* o = t.data<int32_t>();
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<int8_t>(p[i]);
      break;
    }
    case 0x0B: {
      int32_t* o = t.data<int32_t>();
      for (int64_t i = 0; i < n; ++i)
        o[i] = static_cast<int16_t>(static_cast<uint16_t>(p[2 * i] << 8 | p[2 * i + 1]));
      break;
    }
    case 0x0C:
    case 0x0D: {  // 4-byte elements: reassemble the bits, then reinterpret
      uint32_t* o = static_cast<uint32_t*>(t.raw_data());
      for (int64_t i = 0; i < n; ++i) o[i] = be32(p + 4 * i);
      break;
    }
    case 0x0E: {
      uint64_t* o = static_cast<uint64_t*>(t.raw_data());
      for (int64_t i = 0; i < n; ++i)
        o[i] = static_cast<uint64_t>(be32(p + 8 * i)) << 32 | be32(p + 8 * i + 4);
      break;
    }
  }
}

// Inflates a gzip stream (one or more members) on demand, so that a hostile file cannot make us
// allocate more than the data it really contains.
class GzipReader {
 public:
  GzipReader(const uint8_t* p, size_t n, const std::string& name) : p_(p), n_(n), name_(name) {
    std::memset(&zs_, 0, sizeof(zs_));
    // 16 + MAX_WBITS: gzip wrapper only (the caller saw 1f 8b).
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) bad(name_, "cannot initialise zlib");
  }
  ~GzipReader() { inflateEnd(&zs_); }
  GzipReader(const GzipReader&) = delete;
  GzipReader& operator=(const GzipReader&) = delete;

  // Inflates up to `want` bytes into dst; fewer only when the stream has ended.
  size_t read(uint8_t* dst, size_t want) {
    size_t produced = 0;
    while (produced < want && !finished_) {
      if (zs_.avail_in == 0 && fed_ < n_) {
        const size_t chunk = std::min<size_t>(n_ - fed_, UINT_MAX);
        zs_.next_in = const_cast<Bytef*>(p_ + fed_);
        zs_.avail_in = static_cast<uInt>(chunk);
        fed_ += chunk;
      }
      const size_t room = std::min<size_t>(want - produced, UINT_MAX);
      zs_.next_out = dst + produced;
      zs_.avail_out = static_cast<uInt>(room);
      const int ret = inflate(&zs_, Z_NO_FLUSH);
      produced += room - zs_.avail_out;
      total_out_ += room - zs_.avail_out;
      if (ret == Z_STREAM_END) {
        next_member();
      } else if (ret == Z_BUF_ERROR) {
        if (zs_.avail_in == 0 && fed_ == n_)
          bad(name_, "truncated gzip stream: the compressed data ends after ", total_out_,
              " inflated bytes");
        bad(name_, "corrupt gzip stream (zlib made no progress)");
      } else if (ret != Z_OK) {
        bad(name_, "corrupt gzip stream after ", total_out_,
            " inflated bytes: ", zs_.msg ? zs_.msg : "zlib error " + std::to_string(ret));
      }
    }
    return produced;
  }

 private:
  // After a member ends: stop at the end of the input, start the next member, or reject junk.
  void next_member() {
    const size_t left = zs_.avail_in + (n_ - fed_);
    if (left == 0) {
      finished_ = true;
      return;
    }
    const uint8_t* next = zs_.next_in;
    if (left >= 2 && zs_.avail_in >= 2 && next[0] == 0x1f && next[1] == 0x8b) {
      inflateReset(&zs_);
      return;
    }
    bad(name_, left, " bytes of trailing data after the gzip stream");
  }

  const uint8_t* p_;
  size_t n_;
  const std::string& name_;
  z_stream zs_;
  size_t fed_ = 0;  // input bytes handed to zlib so far
  uint64_t total_out_ = 0;
  bool finished_ = false;
};

// Inflates and parses the magic, then the dims it announces.
IdxHeader inflate_header(GzipReader& z, const std::string& name) {
  uint8_t head[kMaxHeader];
  size_t got = z.read(head, 4);
  check_magic(head, got, name, "the inflated data");
  got += z.read(head + 4, 4 * static_cast<size_t>(head[3]));
  return parse_header(head, got, name, "the inflated data");
}

Tensor parse_gzip(const uint8_t* bytes, size_t n, const std::string& name) {
  GzipReader z(bytes, n, name);
  const IdxHeader h = inflate_header(z, name);

  // Deflate compresses at most 1032:1, so a header that claims more data than the compressed
  // bytes could hold is rejected before anything is allocated; otherwise the allocation is
  // bounded by ~1000x the input, and the data is inflated straight into the tensor.
  const uint64_t expected = h.header_bytes + h.data_bytes;
  if (h.data_bytes > kMaxDeflateRatio * n + 1024)
    bad(name, "the ", n, "-byte gzip file cannot inflate to the ", expected, " bytes (",
        h.header_bytes, "-byte header + ", h.data_bytes, " data bytes) that dims ",
        shape_str(h.shape), " of ", h.type->name,
        " need: deflate compresses at most 1032:1 (truncated file?)");
  Tensor t = empty(h.shape, {h.type->dtype});
  const bool widen = h.type->file_size != dtype_size(h.type->dtype);
  std::vector<uint8_t> staging(widen ? static_cast<size_t>(h.data_bytes) : 0);
  uint8_t* dst = widen ? staging.data() : static_cast<uint8_t*>(t.raw_data());
  const size_t have = h.data_bytes ? z.read(dst, static_cast<size_t>(h.data_bytes)) : 0;
  if (have < h.data_bytes)
    bad(name, "the gzip data inflates to ", h.header_bytes + have, " bytes, expected ", expected,
        " (", h.header_bytes, "-byte header + ", h.data_bytes, " data bytes for dims ",
        shape_str(h.shape), " of ", h.type->name, "; truncated file?)");
  uint8_t extra;
  if (z.read(&extra, 1) != 0)
    bad(name, "the gzip data inflates to more than the ", expected, " bytes that dims ",
        shape_str(h.shape), " of ", h.type->name, " need");
  decode_into(h, dst, t);
  return t;
}

// Writes the low `bytes` bytes of v, most significant first.
void put_be(char* out, uint64_t v, int bytes) {
  for (int k = 0; k < bytes; ++k) out[k] = static_cast<char>((v >> (8 * (bytes - 1 - k))) & 0xFF);
}

}  // namespace

Tensor parse_idx(const uint8_t* bytes, size_t n, const std::string& name) {
  if (n >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) return parse_gzip(bytes, n, name);
  const IdxHeader h = parse_header(bytes, n, name, "the file");
  const uint64_t expected = h.header_bytes + h.data_bytes;
  if (n != expected)
    bad(name, "expected ", expected, " bytes (", h.header_bytes, "-byte header + ", h.data_bytes,
        " data bytes for dims ", shape_str(h.shape), " of ", h.type->name, "), the file has ", n,
        n < expected ? " (truncated?)" : " (trailing data?)");
  Tensor t = empty(h.shape, {h.type->dtype});
  decode_into(h, bytes + h.header_bytes, t);
  return t;
}

Tensor read_idx(const std::string& path) {
  InputFile f(path, "idx");
  // A plain file is never longer than this; a gzip file of real data is shorter.
  if (f.size() > kIdxMaxBytes + kMaxHeader)
    bad(path, "file is ", f.size(), " bytes, over the ", kIdxMaxBytes + kMaxHeader, "-byte limit");
  std::vector<uint8_t> bytes(static_cast<size_t>(f.size()));
  f.read_exact(bytes.data(), bytes.size(), "the file");
  return parse_idx(bytes.data(), bytes.size(), path);
}

IdxInfo read_idx_info(const std::string& path) {
  InputFile f(path, "idx");
  std::vector<uint8_t> bytes(static_cast<size_t>(std::min<uint64_t>(f.size(), 1 << 20)));
  f.read_exact(bytes.data(), bytes.size(), "the file");
  if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
    GzipReader z(bytes.data(), bytes.size(), path);
    const IdxHeader h = inflate_header(z, path);
    return {h.type->dtype, h.shape};
  }
  const IdxHeader h = parse_header(bytes.data(), bytes.size(), path, "the file");
  if (f.size() != h.header_bytes + h.data_bytes)
    bad(path, "expected ", h.header_bytes + h.data_bytes, " bytes for dims ", shape_str(h.shape),
        " of ", h.type->name, ", the file has ", f.size());
  return {h.type->dtype, h.shape};
}

std::string gzip_compress(std::string_view bytes) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK)
    fail("idx", "cannot initialise zlib for compression");
  std::string out;
  size_t fed = 0;
  unsigned char buf[1 << 16];
  int ret = Z_OK;
  while (ret != Z_STREAM_END) {
    if (zs.avail_in == 0 && fed < bytes.size()) {
      const size_t chunk = std::min<size_t>(bytes.size() - fed, UINT_MAX);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data() + fed));
      zs.avail_in = static_cast<uInt>(chunk);
      fed += chunk;
    }
    zs.next_out = buf;
    zs.avail_out = sizeof(buf);
    ret = deflate(&zs, fed == bytes.size() ? Z_FINISH : Z_NO_FLUSH);
    if (ret == Z_STREAM_ERROR) {
      deflateEnd(&zs);
      fail("idx", "zlib deflate failed");
    }
    out.append(reinterpret_cast<const char*>(buf), sizeof(buf) - zs.avail_out);
  }
  deflateEnd(&zs);
  return out;
}

void write_idx(const std::string& path, const Tensor& t, bool gzip) {
  IDEM_CHECK(t.defined(), "idx", path, ": cannot write an undefined tensor");
  uint8_t code = 0;
  switch (t.dtype()) {
    case DType::u8:
      code = 0x08;
      break;
    case DType::i32:
      code = 0x0C;
      break;
    case DType::f32:
      code = 0x0D;
      break;
    case DType::f64:
      code = 0x0E;
      break;
    case DType::i64:
      fail("idx", path, ": IDX has no 64-bit integer type; convert the i64 tensor to i32 first");
  }
  IDEM_CHECK(t.dim() >= 1 && static_cast<size_t>(t.dim()) <= kMaxDims, "idx", path,
             ": IDX needs 1..", kMaxDims, " dims, the tensor has shape ", shape_str(t.shape()));
  for (int64_t d : t.shape())
    IDEM_CHECK(d <= static_cast<int64_t>(UINT32_MAX), "idx", path, ": extent ", d, " of shape ",
               shape_str(t.shape()), " does not fit the u32 IDX header");
  check_little_endian("idx");  // the element loop below reads host-order values
  const Tensor h = t.to(Device::cpu());
  const size_t es = dtype_size(h.dtype());
  const size_t header = 4 + 4 * static_cast<size_t>(h.dim());
  std::string out(header + h.nbytes(), '\0');
  out[2] = static_cast<char>(code);
  out[3] = static_cast<char>(h.dim());
  for (int64_t d = 0; d < h.dim(); ++d)
    put_be(&out[4 + 4 * d], static_cast<uint64_t>(h.size(d)), 4);
  const uint8_t* p = static_cast<const uint8_t*>(h.raw_data());
  for (int64_t i = 0; i < h.numel(); ++i) {
    uint64_t v = 0;
    std::memcpy(&v, p + es * i, es);  // little-endian host: the value sits in the low bytes
    put_be(&out[header + es * i], v, static_cast<int>(es));
  }
  const std::string body = gzip ? gzip_compress(out) : std::move(out);
  write_file_atomic(path, "idx", [&](const ByteSink& sink) { sink(body.data(), body.size()); });
}

}  // namespace idem::data
