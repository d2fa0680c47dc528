// .npy read/write. Format and checks: io/npy.h. The header is a Python literal; this reads
// exactly the subset numpy writes (strings, True/False, tuples of integers) and nothing else.
#include "io/npy.h"

#include <cstring>
#include <limits>

#include "io/file.h"

namespace idem {

namespace {

constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes

template <typename... P>
[[noreturn]] void bad(const std::string& path, const P&... parts) {
  fail("npy", path, ": ", parts...);
}

const char* npy_descr(DType t) {
  switch (t) {
    case DType::f32:
      return "<f4";
    case DType::f64:
      return "<f8";
    case DType::i32:
      return "<i4";
    case DType::i64:
      return "<i8";
    case DType::u8:
      return "|u1";
  }
  return "?";
}

// ---- the header dict ----

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  Shape shape;
};

class HeaderParser {
 public:
  HeaderParser(const std::string& s, const std::string& path) : s_(s), path_(path) {}

  NpyHeader run() {
    NpyHeader h;
    bool has_descr = false, has_fortran = false, has_shape = false;
    skip_ws();
    expect('{');
    skip_ws();
    while (peek() != '}') {
      const std::string key = string_literal();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (has_descr) error("duplicate key 'descr'");
        has_descr = true;
        if (peek() != '\'' && peek() != '"')
          error(
              "'descr' must be a dtype string such as '<f4' (structured dtypes are not "
              "supported)");
        h.descr = string_literal();
      } else if (key == "fortran_order") {
        if (has_fortran) error("duplicate key 'fortran_order'");
        has_fortran = true;
        h.fortran_order = boolean();
      } else if (key == "shape") {
        if (has_shape) error("duplicate key 'shape'");
        has_shape = true;
        h.shape = tuple();
      } else {
        error("unexpected key '", key, "' (expected exactly 'descr', 'fortran_order', 'shape')");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
      } else if (peek() != '}') {
        error("expected ',' or '}' after the value of '", key, "'");
      }
    }
    ++pos_;  // '}'
    skip_ws();
    if (pos_ != s_.size()) error("unexpected text after the header dict");
    if (!has_descr || !has_fortran || !has_shape)
      error("missing key '", !has_descr ? "descr" : !has_fortran ? "fortran_order" : "shape", "'");
    return h;
  }

 private:
  template <typename... P>
  [[noreturn]] void error(const P&... parts) const {
    bad(path_, "bad header at byte ", pos_, ": ", parts...);
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  void expect(char c) {
    if (peek() != c) error("expected '", c, "'");
    ++pos_;
  }
  std::string string_literal() {
    const char q = peek();
    if (q != '\'' && q != '"') error("expected a quoted string");
    ++pos_;
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '\\' || s_[pos_] == '\n') error("unsupported character in a string");
      ++pos_;
    }
    if (pos_ >= s_.size()) error("unterminated string");
    return s_.substr(start, pos_++ - start);
  }
  bool boolean() {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    error("'fortran_order' must be True or False");
  }
  int64_t integer() {
    const size_t start = pos_;
    bool neg = false;
    if (peek() == '-') {
      neg = true;
      ++pos_;
    }
    if (!(peek() >= '0' && peek() <= '9')) error("expected an integer in 'shape'");
    uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      const uint64_t d = static_cast<uint64_t>(peek() - '0');
      if (v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - d) / 10) {
        pos_ = start;
        error("dimension too large in 'shape'");
      }
      v = v * 10 + d;
      ++pos_;
    }
    if (peek() == 'L') ++pos_;  // Python 2 long literal, written by old numpy
    if (neg && v != 0) {
      pos_ = start;
      error("negative dimension -", v, " in 'shape'");
    }
    return static_cast<int64_t>(v);
  }
  Shape tuple() {
    if (peek() != '(') error("'shape' must be a tuple of integers");
    ++pos_;
    Shape shape;
    skip_ws();
    bool single_needs_comma = true;
    while (peek() != ')') {
      shape.push_back(integer());
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
        single_needs_comma = false;
      } else if (peek() != ')') {
        error("expected ',' or ')' in 'shape'");
      }
    }
    // "(3)" is the integer 3 in Python, not a tuple.
    if (shape.size() == 1 && single_needs_comma) error("'shape' must be a tuple, e.g. (3,)");
    ++pos_;  // ')'
    if (shape.size() > 64) error("'shape' has ", shape.size(), " dims (at most 64)");
    return shape;
  }

  const std::string& s_;
  const std::string& path_;
  size_t pos_ = 0;
};

DType parse_descr(const std::string& d, const std::string& path) {
  if (d == "<f4") return DType::f32;
  if (d == "<f8") return DType::f64;
  if (d == "<i4") return DType::i32;
  if (d == "<i8") return DType::i64;
  if (d == "|u1" || d == "<u1" || d == "=u1") return DType::u8;
  if (!d.empty() && d[0] == '>')
    bad(path, "dtype '", d, "' is big-endian; only little-endian files are supported");
  bad(path, "unsupported dtype '", d, "' (supported: '<f4' '<f8' '<i4' '<i8' '|u1')");
}

std::string shape_literal(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  if (s.size() == 1) out += ",";
  return out + ")";
}

}  // namespace

void save_npy(const std::string& path, const Tensor& t) {
  const char* op = "npy";
  check_little_endian(op);
  IDEM_CHECK(t.defined(), op, path, ": cannot save an undefined tensor");
  std::string dict = std::string("{'descr': '") + npy_descr(t.dtype()) +
                     "', 'fortran_order': False, 'shape': " + shape_literal(t.shape()) + ", }";
  // Pad with spaces so that magic + version + length + header (ending in '\n') is a multiple
  // of 64: the data is then aligned for memory mapping.
  auto padded = [&](size_t preamble) {
    std::string h = dict;
    const size_t total = preamble + h.size() + 1;
    h.append((64 - total % 64) % 64, ' ');
    h += '\n';
    return h;
  };
  std::string header = padded(10);
  int major = 1;
  if (header.size() > 65535) {
    major = 2;
    header = padded(12);
  }
  write_file_atomic(path, op, [&](const ByteSink& sink) {
    sink(kMagic, 6);
    const unsigned char version[2] = {static_cast<unsigned char>(major), 0};
    sink(version, 2);
    const uint32_t n = static_cast<uint32_t>(header.size());
    const unsigned char len[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                                  static_cast<unsigned char>(n >> 16),
                                  static_cast<unsigned char>(n >> 24)};
    sink(len, major == 1 ? 2 : 4);
    sink(header.data(), header.size());
    if (t.numel() > 0) {
      const Tensor h = t.device().is_cpu() ? t : t.to(Device::cpu());
      sink(h.raw_data(), h.nbytes());
    }
  });
}

Tensor load_npy(const std::string& path, Device device) {
  check_little_endian("npy");
  InputFile f(path, "npy");
  const uint64_t size = f.size();
  if (size < 10) bad(path, "file is ", size, " bytes, too short for an .npy header");

  unsigned char pre[8];
  f.read_exact(pre, 8, "the magic");
  if (std::memcmp(pre, kMagic, 6) != 0) bad(path, "wrong magic (not an .npy file)");
  const int major = pre[6], minor = pre[7];
  if (!((major == 1 || major == 2 || major == 3) && minor == 0))
    bad(path, "unsupported format version ", major, ".", minor, " (supported: 1.0, 2.0, 3.0)");
  const size_t len_bytes = major == 1 ? 2 : 4;
  unsigned char lb[4] = {0, 0, 0, 0};
  f.read_exact(lb, len_bytes, "the header length");
  const uint64_t hlen = static_cast<uint64_t>(lb[0]) | static_cast<uint64_t>(lb[1]) << 8 |
                        static_cast<uint64_t>(lb[2]) << 16 | static_cast<uint64_t>(lb[3]) << 24;
  const uint64_t preamble = 8 + len_bytes;
  if (hlen > kNpyMaxHeader)
    bad(path, "header length ", hlen, " exceeds the ", kNpyMaxHeader, "-byte limit");
  if (hlen > size - preamble)
    bad(path, "header length ", hlen, " exceeds the ", size - preamble,
        " bytes that follow it (truncated file?)");
  std::string text(hlen, '\0');
  f.read_exact(text.data(), hlen, "the header");
  if (major < 3)
    for (unsigned char c : text)
      if (c >= 0x80) bad(path, "non-ASCII byte in a version ", major, ".0 header");

  const NpyHeader h = HeaderParser(text, path).run();
  const DType dtype = parse_descr(h.descr, path);
  if (h.fortran_order)
    bad(path,
        "fortran_order is True: Fortran-ordered arrays are not supported (save a "
        "C-contiguous array, e.g. np.ascontiguousarray)");
  uint64_t numel = 1;
  bool zero = false;
  bool overflow = false;
  for (int64_t d : h.shape) {
    if (d == 0)
      zero = true;
    else if (numel >
             static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / static_cast<uint64_t>(d))
      overflow = true;
    else
      numel *= static_cast<uint64_t>(d);
  }
  if (zero)
    numel = 0;
  else if (overflow)
    bad(path, "shape ", shape_str(h.shape), " overflows 64 bits");
  const uint64_t es = dtype_size(dtype);
  const uint64_t data = size - preamble - hlen;
  if (numel > data / es)
    bad(path, "shape ", shape_str(h.shape), " of ", h.descr, " needs ", numel, " x ", es,
        " bytes but only ", data, " follow the header (truncated file?)");
  if (numel * es != data)
    bad(path, data - numel * es, " bytes after the array data (the shape ", shape_str(h.shape),
        " of ", h.descr, " needs ", numel * es, ")");
  Tensor t = empty(h.shape, {dtype});
  f.read_exact(t.raw_data(), numel * es, "the array data");
  return device.is_cpu() ? t : t.to(device);
}

}  // namespace idem
