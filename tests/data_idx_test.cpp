// IDX files: write/read round trips (plain and gzip, every supported type), the bytes of the
// format, and hostile files (each an idem::Error naming the file and the problem, never a crash).
#include <gtest/gtest.h>

#include <string>

#include "data/idx.h"
#include "tests/test_util.h"

namespace idem::data {
namespace {

using testing::bit_equal;
using testing::expect_error;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

Tensor parse(const std::string& bytes, const std::string& name = "mem.idx") {
  return parse_idx(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
}

void expect_parse_error(const std::string& bytes, const std::string& part) {
  expect_error([&] { parse(bytes, "hostile.idx"); }, "idx", part, "hostile.idx");
}

// magic (type, ndim), big-endian u32 dims.
std::string header(uint8_t type, const std::vector<uint32_t>& dims) {
  std::string s{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int k = 3; k >= 0; --k) s += static_cast<char>((d >> (8 * k)) & 0xFF);
  return s;
}

TEST(DataIdx, ParsesTheMnistLayout) {
  // A 2x3 u8 "image set" exactly as the MNIST files store it.
  const std::string bytes = header(0x08, {2, 3}) + std::string("\x01\x02\x03\x04\x05\xFF", 6);
  Tensor t = parse(bytes);
  EXPECT_EQ(t.dtype(), DType::u8);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.to_vector<uint8_t>(), (std::vector<uint8_t>{1, 2, 3, 4, 5, 255}));

  // Big-endian f32 1.5 = 3F C0 00 00, i32 -2 = FF FF FF FE, i16 -3 = FF FD, i8 -4 = FC.
  EXPECT_EQ(parse(header(0x0D, {1}) + std::string("\x3F\xC0\x00\x00", 4)).item(), 1.5);
  EXPECT_EQ(parse(header(0x0C, {1}) + std::string("\xFF\xFF\xFF\xFE", 4)).item(), -2);
  EXPECT_EQ(parse(header(0x0B, {1}) + std::string("\xFF\xFD", 2)).item(), -3);
  Tensor i8 = parse(header(0x09, {1}) + std::string("\xFC", 1));
  EXPECT_EQ(i8.dtype(), DType::i32);
  EXPECT_EQ(i8.item(), -4);
  EXPECT_EQ(parse(header(0x0E, {1}) + std::string("\x40\x09\x21\xFB\x54\x44\x2D\x18", 8)).item(),
            3.141592653589793);
  // A zero extent is an empty tensor with no data bytes.
  EXPECT_EQ(parse(header(0x08, {0, 28})).shape(), (Shape{0, 28}));
}

TEST(DataIdx, RoundTripsEveryTypePlainAndGzip) {
  TempDir dir("idem_idx_test");
  const std::vector<Tensor> tensors = {
      from_vector<uint8_t>({0, 1, 127, 128, 254, 255}, {3, 2}),
      from_vector<int32_t>({-2147483647 - 1, -1, 0, 1, 2147483647, 42}, {1, 2, 3}),
      from_vector<float>({-1.5f, 0.0f, 3.25e-20f, 1e30f, -0.0f, 7}, {6}),
      from_vector<double>({1.0 / 3, -2e300, 5e-310, 0, 1, 2, 3, 4}, {2, 2, 2}),
      zeros({2, 1, 28, 28}, {DType::u8}),
  };
  for (bool gzip : {false, true})
    for (size_t i = 0; i < tensors.size(); ++i) {
      const std::string path = dir.file("t" + std::to_string(i) + (gzip ? ".gz" : ""));
      write_idx(path, tensors[i], gzip);
      const std::string bytes = read_bytes(path);
      ASSERT_GE(bytes.size(), 2u);
      EXPECT_EQ(bytes[0] == '\x1f' && bytes[1] == '\x8b', gzip) << path;
      Tensor back = read_idx(path);
      EXPECT_TRUE(bit_equal(back, tensors[i])) << path << " " << back << " vs " << tensors[i];
    }
  // A plain file is exactly header + big-endian data.
  write_idx(dir.file("plain"), from_vector<int32_t>({1, -2}, {2}), false);
  EXPECT_EQ(read_bytes(dir.file("plain")),
            header(0x0C, {2}) + std::string("\x00\x00\x00\x01\xFF\xFF\xFF\xFE", 8));
}

TEST(DataIdx, ReadsConcatenatedGzipMembers) {
  const std::string plain = header(0x08, {4}) + std::string("\x01\x02\x03\x04", 4);
  const std::string two = gzip_compress(plain.substr(0, 6)) + gzip_compress(plain.substr(6));
  EXPECT_EQ(parse(two).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 2, 3, 4}));
}

TEST(DataIdx, WriteRejectsWhatIdxCannotHold) {
  TempDir dir("idem_idx_test");
  const std::string path = dir.file("x.idx");
  expect_error([&] { write_idx(path, zeros({2}, {DType::i64}), false); }, "idx",
               "no 64-bit integer type", path);
  expect_error([&] { write_idx(path, scalar_tensor(1.0), false); }, "idx", "1..8 dims", path);
  expect_error(
      [&] {
        write_idx(path, zeros({1, 1, 1, 1, 1, 1, 1, 1, 1}), false);
      },
      "idx", "1..8 dims", path);
  EXPECT_FALSE(std::filesystem::exists(path));  // nothing half-written
}

TEST(DataIdx, HostilePlainFiles) {
  const std::string ok = header(0x08, {2, 2}) + "abcd";
  ASSERT_NO_THROW(parse(ok));
  expect_parse_error("", "0 bytes, too short for the 4-byte IDX magic");
  expect_parse_error(std::string("\0\0\x08", 3), "too short for the 4-byte IDX magic");
  expect_parse_error("PK\x03\x04 a zip file", "wrong magic");
  expect_parse_error(std::string("\x01\x00\x08\x01\x00\x00\x00\x01x", 9), "wrong magic");
  expect_parse_error(header(0x07, {1}) + "x", "unknown element type 0x07");
  expect_parse_error(header(0x08, {}), "ndim is 0");
  expect_parse_error(header(0x08, {1, 1, 1, 1, 1, 1, 1, 1, 1}) + "x", "ndim is 9");
  // ndim says 3 dims, the file ends inside the second.
  expect_parse_error(header(0x08, {2, 2, 2}).substr(0, 10), "needs 16 bytes");
  // Header only, no data; truncated data; trailing data.
  expect_parse_error(header(0x08, {2, 2}), "expected 16 bytes");
  expect_parse_error(header(0x08, {2, 2}), "the file has 12 (truncated?)");
  expect_parse_error(ok.substr(0, ok.size() - 1), "the file has 15 (truncated?)");
  expect_parse_error(ok + "e", "the file has 17 (trailing data?)");
  // Dims whose product is larger than the file, and products beyond the limit or 64 bits.
  expect_parse_error(header(0x0D, {1000, 1000}) + "abcd", "expected 4000012 bytes");
  expect_parse_error(header(0x0D, {65536, 65536}), "over the 2147483648-byte limit");
  expect_parse_error(header(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}),
                     "more than 2^64");
}

TEST(DataIdx, HostileGzipFiles) {
  const std::string plain = header(0x08, {2, 2}) + "abcd";
  const std::string gz = gzip_compress(plain);
  ASSERT_EQ(parse(gz).numel(), 4);
  // Not deflate data after the gzip magic.
  expect_parse_error(std::string("\x1f\x8b\x08\x00garbage that is not deflate", 31), "gzip stream");
  // Cut anywhere in the middle: truncated stream, or a stream too short for the header.
  for (size_t cut : {size_t{2}, size_t{10}, gz.size() / 2, gz.size() - 4, gz.size() - 1})
    expect_parse_error(gz.substr(0, cut), "gzip");
  expect_parse_error(gz.substr(0, gz.size() - 1), "truncated gzip stream");
  // A flipped byte in the compressed data or the CRC.
  std::string flipped = gz;
  flipped[gz.size() - 6] ^= 0x55;
  expect_parse_error(flipped, "corrupt gzip stream");
  // Valid gzip whose content disagrees with its own header.
  expect_parse_error(gzip_compress(plain.substr(0, plain.size() - 1)), "inflates to 15 bytes");
  expect_parse_error(gzip_compress(plain + "x"), "inflates to more than the 16 bytes");
  expect_parse_error(gzip_compress(header(0x08, {2, 2})), "inflates to 12 bytes, expected 16");
  // Hostile content inside a valid stream gets the same checks as a plain file.
  expect_parse_error(gzip_compress("\x12\x34\x08\x01"), "wrong magic");
  expect_parse_error(gzip_compress(std::string("\0\0\x08", 3)),
                     "inflated data is 3 bytes, too short");
  expect_parse_error(gzip_compress(header(0x08, {0x10000, 0x10000, 2})), "over the");
  // A huge claimed size with little data fails without allocating it (this would need 1 GiB).
  expect_parse_error(gzip_compress(header(0x08, {0x8000, 0x8000}) + "abc"),
                     "cannot inflate to the 1073741836 bytes");
  // A small zip bomb (8 MiB of zeros in ~8 KB) inflates fine when its header is honest, and is
  // rejected at the first extra byte when it is not.
  const std::string zeros8(8 << 20, '\0');
  EXPECT_EQ(parse(gzip_compress(header(0x08, {8 << 20}) + zeros8)).numel(), 8 << 20);
  expect_parse_error(gzip_compress(header(0x08, {1024}) + zeros8),
                     "inflates to more than the 1032 bytes");
  // Trailing junk after the stream.
  expect_parse_error(gz + "junk", "4 bytes of trailing data after the gzip stream");
}

TEST(DataIdx, ReadsTheHeaderAlone) {
  TempDir dir("idem_idx_test");
  for (bool gzip : {false, true}) {
    const std::string path = dir.file(gzip ? "a.gz" : "a");
    write_idx(path, zeros({3, 5, 7}), gzip);
    const IdxInfo info = read_idx_info(path);
    EXPECT_EQ(info.dtype, DType::f32);
    EXPECT_EQ(info.shape, (Shape{3, 5, 7}));
  }
  write_bytes(dir.file("short"), header(0x08, {3, 5}) + "abc");
  expect_error([&] { read_idx_info(dir.file("short")); }, "idx", "expected 27 bytes");
}

TEST(DataIdx, ReadErrorsNameTheFile) {
  TempDir dir("idem_idx_test");
  const std::string missing = dir.file("nope-idx3-ubyte");
  expect_error([&] { read_idx(missing); }, "idx", "cannot open", missing);
  const std::string bad = dir.file("bad-idx3-ubyte");
  write_bytes(bad, "\x01\x02\x03\x04 not idx");
  expect_error([&] { read_idx(bad); }, "idx", "wrong magic", bad);
  expect_error([&] { read_idx(dir.path().string()); }, "idx", "", dir.path().string());
}

}  // namespace
}  // namespace idem::data
