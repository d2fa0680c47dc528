// .npy files: the exact bytes numpy writes, round trips of every dtype and rank, headers of
// versions 1/2/3 and of older numpy, and hostile headers (each an idem::Error, never a crash).
#include "io/npy.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/kernels/runtime.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_error;
using testing::raw;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

// Expects load_npy(path) to throw an idem::Error that names the op, the file and `part`.
void expect_load_error(const std::string& path, const std::string& part) {
  expect_error([&] { load_npy(path); }, "npy", part, path);
}

// A version 1.0 file: magic, version, u16 length, the header as given, then data.
std::string npy_v1(const std::string& header, const std::string& data) {
  std::string s("\x93NUMPY\x01\x00", 8);
  s += static_cast<char>(header.size() & 0xFF);
  s += static_cast<char>(header.size() >> 8);
  return s + header + data;
}

std::string npy_v2(const std::string& header, const std::string& data, int major = 2) {
  std::string s("\x93NUMPY", 6);
  s += static_cast<char>(major);
  s += '\0';
  for (int k = 0; k < 4; ++k) s += static_cast<char>(header.size() >> (8 * k));
  return s + header + data;
}

TEST(Npy, WritesWhatNumpyWrites) {
  TempDir dir("idem_npy_test");
  const std::string path = dir.file("a.npy");
  Tensor t = from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  save_npy(path, t);
  const std::string bytes = read_bytes(path);
  // np.save(f, np.arange(6, dtype='<f4').reshape(2, 3)) starts "\x93NUMPY\x01\x00v\x00": a
  // 118-byte header so that the data starts at byte 128.
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  const std::string header = dict + std::string(118 - 1 - dict.size(), ' ') + "\n";
  ASSERT_EQ(bytes.size(), 128u + 24u);
  EXPECT_EQ(bytes.substr(0, 10), std::string("\x93NUMPY\x01\x00v\x00", 10));
  EXPECT_EQ(bytes.substr(10, 118), header);
  EXPECT_EQ(bytes.substr(128), raw(t));

  // Other ranks and dtypes: "()" for a scalar, "(5,)" for one dim; '|u1' for bytes.
  save_npy(path, scalar_tensor(1.5, {DType::f64}));
  EXPECT_NE(read_bytes(path).find("{'descr': '<f8', 'fortran_order': False, 'shape': (), }"),
            std::string::npos);
  save_npy(path, arange(5, {DType::u8}));
  const std::string u8 = read_bytes(path);
  EXPECT_NE(u8.find("{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }"),
            std::string::npos);
  EXPECT_EQ(u8.size(), 128u + 5u);
}

TEST(Npy, RoundTripsEveryDtypeAndRank) {
  TempDir dir("idem_npy_test");
  const std::string path = dir.file("rt.npy");
  const std::vector<Tensor> cases = {randn({2, 3, 4}, 3, {DType::f32}),
                                     randn({7}, 4, {DType::f64}),
                                     from_vector<int32_t>({-5, 0, 2147483647}, {3, 1}),
                                     from_vector<int64_t>({-(1LL << 62), 1}, {1, 2}),
                                     arange(10, {DType::u8}),
                                     scalar_tensor(-2.25, {DType::f32}),
                                     empty({0, 3}, {DType::i64}),
                                     randn({1, 1, 1, 1, 5}, 6, {DType::f32})};
  for (const Tensor& t : cases) {
    SCOPED_TRACE(dtype_name(t.dtype()) + shape_str(t.shape()));
    save_npy(path, t);
    const std::string bytes = read_bytes(path);
    EXPECT_EQ((bytes.size() - t.nbytes()) % 64, 0u);  // data aligned to 64 bytes
    Tensor back = load_npy(path);
    EXPECT_EQ(back.dtype(), t.dtype());
    EXPECT_EQ(back.shape(), t.shape());
    EXPECT_EQ(raw(back), raw(t));
  }
}

TEST(Npy, ReadsOtherWritersHeaders) {
  TempDir dir("idem_npy_test");
  const std::string path = dir.file("o.npy");
  double v[3] = {1.0, -2.0, 0.5};
  const std::string data(reinterpret_cast<const char*>(v), sizeof(v));
  const std::vector<std::string> headers = {
      // old numpy: 16-byte alignment
      "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }          \n",
      // another key order, double quotes, no trailing comma, Python-2 long
      "{\"shape\": (3L,), 'descr': '<f8', 'fortran_order': False}\n",
      // no padding, no newline
      "{'descr':'<f8','fortran_order':False,'shape':(3,)}",
  };
  for (const std::string& h : headers) {
    SCOPED_TRACE(h);
    write_bytes(path, npy_v1(h, data));
    EXPECT_EQ(load_npy(path).to_vector<double>(), (std::vector<double>{1.0, -2.0, 0.5}));
    write_bytes(path, npy_v2(h, data));
    EXPECT_EQ(load_npy(path).to_vector<double>(), (std::vector<double>{1.0, -2.0, 0.5}));
    write_bytes(path, npy_v2(h, data, 3));
    EXPECT_EQ(load_npy(path).to_vector<double>(), (std::vector<double>{1.0, -2.0, 0.5}));
  }
  // Many dims still fit a version 1.0 header (2.0 is only needed past 65535 header bytes).
  Tensor many = zeros(Shape(40, 1), {DType::f32});
  save_npy(path, many);
  EXPECT_EQ(read_bytes(path)[6], '\x01');
  EXPECT_EQ(load_npy(path).shape(), many.shape());
}

TEST(Npy, HostileFilesRaiseClearErrors) {
  TempDir dir("idem_npy_test");
  const std::string path = dir.file("bad.npy");
  const std::string f4x2(8, 'x');
  auto hdr = [](const std::string& descr, const std::string& fortran, const std::string& shape) {
    return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape +
           ", }\n";
  };
  struct Case {
    std::string bytes;
    std::string part;
  };
  const std::vector<Case> cases = {
      {"", "too short"},
      {"\x93NUMPY", "too short"},
      {std::string("\x93NUMPZ\x01\x00\x00\x00", 10), "wrong magic"},
      {std::string("PK\x03\x04\x00\x00\x00\x00\x00\x00", 10), "wrong magic"},
      {npy_v2("{}", "", 4), "unsupported format version 4.0"},
      {std::string("\x93NUMPY\x01\x01\x00\x00", 10), "unsupported format version 1.1"},
      {std::string("\x93NUMPY\x01\x00\xff\x00{}", 12), "header length 255 exceeds the 2 bytes"},
      {std::string("\x93NUMPY\x02\x00\x00\x00\x00\x80{}", 14), "exceeds the 1048576-byte limit"},
      {npy_v1(hdr("<f4", "True", "(2,)"), f4x2), "fortran_order is True"},
      {npy_v1(hdr(">f4", "False", "(2,)"), f4x2), "big-endian"},
      {npy_v1(hdr("<f2", "False", "(4,)"), f4x2), "unsupported dtype '<f2'"},
      {npy_v1(hdr("|b1", "False", "(8,)"), f4x2), "unsupported dtype '|b1'"},
      {npy_v1(hdr("<f4", "False", "(-2,)"), f4x2), "negative dimension"},
      {npy_v1(hdr("<f4", "False", "(99999999999999999999,)"), f4x2), "dimension too large"},
      {npy_v1(hdr("<f4", "False", "(4294967296, 4294967296, 4)"), f4x2), "overflows 64 bits"},
      {npy_v1(hdr("<f4", "False", "(2)"), f4x2), "must be a tuple"},
      {npy_v1(hdr("<f4", "False", "[2]"), f4x2), "tuple of integers"},
      {npy_v1(hdr("<f4", "False", "(2.0,)"), f4x2), "expected ',' or ')'"},
      {npy_v1(hdr("<f4", "0", "(2,)"), f4x2), "True or False"},
      {npy_v1("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }\n", f4x2),
       "structured dtypes are not supported"},
      {npy_v1("{'descr': '<f4', 'fortran_order': False}\n", f4x2), "missing key 'shape'"},
      {npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}\n", f4x2),
       "unexpected key 'x'"},
      {npy_v1("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n", f4x2),
       "duplicate key 'descr'"},
      {npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk\n", f4x2),
       "unexpected text after the header"},
      {npy_v1("{'descr: '<f4'", f4x2), "bad header"},
      {npy_v1("'descr'", f4x2), "expected '{'"},
      {npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)\n", f4x2),
       "expected ',' or '}'"},
      {npy_v1("{'d\xc3\xa9scr': '<f4'}\n", f4x2), "non-ASCII byte"},
      {npy_v1(hdr("<f4", "False", "(2,)"), "xxxx"), "truncated"},
      {npy_v1(hdr("<f4", "False", "(2,)"), std::string(9, 'x')), "1 bytes after the array data"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.part);
    write_bytes(path, c.bytes);
    expect_load_error(path, c.part);
  }
  expect_load_error(dir.file("missing.npy"), "cannot open");
}

TEST(Npy, EveryTruncationIsAnError) {
  TempDir dir("idem_npy_test");
  const std::string good = dir.file("g.npy"), path = dir.file("t.npy");
  save_npy(good, randn({3, 4}, 9, {DType::f64}));
  const std::string bytes = read_bytes(good);
  for (size_t len = 0; len < bytes.size(); ++len) {
    write_bytes(path, bytes.substr(0, len));
    EXPECT_THROW(load_npy(path), Error) << "truncated to " << len << " bytes";
  }
  EXPECT_NO_THROW(load_npy(good));
}

TEST(Npy, CudaTensors) {
  IDEM_REQUIRE_GPU();
  TempDir dir("idem_npy_test");
  const std::string path = dir.file("gpu.npy");
  Tensor t = randn({5, 7}, 12, {DType::f32});
  save_npy(path, t.to(Device::cuda()));
  Tensor back = load_npy(path, Device::cuda());
  EXPECT_TRUE(back.device().is_cuda());
  EXPECT_EQ(raw(back), raw(t));
}

}  // namespace
}  // namespace idem
