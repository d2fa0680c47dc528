// safetensors checkpoints and the strict JSON parser behind them: the exact byte layout of a
// written file, bit-exact round trips, atomic writes, and hostile files (each one an idem::Error
// naming the file and the problem; never a crash, never a half-read tensor).
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>

#include "core/kernels/runtime.h"
#include "io/file.h"
#include "io/json.h"
#include "tests/test_util.h"

namespace idem {
namespace {

using testing::expect_error;
using testing::raw;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

namespace fs = std::filesystem;

// Expects load_safetensors(path) to throw an idem::Error that names the op, the file and `part`.
void expect_load_error(const std::string& path, const std::string& part) {
  expect_error([&] { load_safetensors(path); }, "safetensors", part, path);
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int k = 0; k < 8; ++k) s[k] = static_cast<char>(n >> (8 * k));
  return s;
}

// A safetensors file from a header text and a data section (the length is computed unless
// given).
std::string st_file(const std::string& header, const std::string& data, int64_t len = -1) {
  return le64(len < 0 ? header.size() : static_cast<uint64_t>(len)) + header + data;
}

// ---------------------------------------------------------------------------------------------
// JSON

TEST(Json, ParsesValuesStrictly) {
  json::Value v = json::parse(
      " {\"a\": [1, -2.5e3, true, false, null], \"s\": "
      "\"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\","
      " \"big\": 9007199254740993, \"huge\": 18446744073709551616, \"o\": {}} ");
  ASSERT_TRUE(v.is_object());
  const auto& a = v.at("a").as_array();
  ASSERT_EQ(a.size(), 5u);
  EXPECT_EQ(a[0].as_int(), 1);
  EXPECT_EQ(a[1].as_double(), -2500.0);
  EXPECT_FALSE(a[1].is_integer());
  EXPECT_TRUE(a[2].as_bool());
  EXPECT_FALSE(a[3].as_bool());
  EXPECT_TRUE(a[4].is_null());
  EXPECT_EQ(v.at("s").as_string(), "q\"\\/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80");
  EXPECT_EQ(v.at("big").as_int(), 9007199254740993LL);  // exact, not via double
  EXPECT_FALSE(v.at("huge").is_integer());              // beyond int64: a double
  EXPECT_TRUE(v.at("o").as_object().empty());
  EXPECT_EQ(v.as_object()[0].first, "a");             // document order
  EXPECT_EQ(json::parse("1e-400").as_double(), 0.0);  // underflow is harmless
  EXPECT_EQ(json::parse("-0").as_int(), 0);
}

TEST(Json, RejectsEverythingElse) {
  const std::pair<const char*, const char*> bad[] = {
      {"", "empty document"},
      {"{\"a\": 1,}", "expected a string key"},
      {"[1, 2,]", "expected a value"},
      {"{\"a\": 1, \"a\": 2}", "duplicate key \"a\""},
      {"01", "leading zero"},
      {"+1", "expected a value"},
      {"1.", "digit after '.'"},
      {"1e", "exponent"},
      {"NaN", "expected a value"},
      {"Infinity", "expected a value"},
      {"1e999", "out of range"},
      {"tru", "invalid literal"},
      {"\"abc", "unterminated string"},
      {"\"a\tb\"", "control character"},
      {"\"\\x\"", "invalid escape"},
      {"\"\\ud800\"", "unpaired high surrogate"},
      {"\"\\udc00\"", "unpaired low surrogate"},
      {"\"\\u12g4\"", "invalid hex digit"},
      {"{} {}", "after the value"},
      {"{\"a\" 1}", "expected ':'"},
      {"[1 2]", "expected ',' or ']'"},
      {"\xEF\xBB\xBF{}", "byte-order mark"},
      {"\"\xC3\"", "invalid UTF-8"},
      {"\"\xC0\xAF\"", "invalid UTF-8"},      // overlong '/'
      {"\"\xED\xA0\x80\"", "invalid UTF-8"},  // UTF-8-encoded surrogate
      {"/* c */ {}", "expected a value"},
  };
  for (const auto& [text, part] : bad) {
    try {
      json::parse(text);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("[json] line 1, column "), std::string::npos) << msg;
      EXPECT_NE(msg.find(part), std::string::npos) << text << " -> " << msg;
    }
  }
  // Deep nesting is an error, not a stack overflow.
  EXPECT_THROW(json::parse(std::string(100000, '[')), Error);
  EXPECT_NO_THROW(json::parse(std::string(200, '[') + std::string(200, ']')));
  // Errors report the line and column.
  try {
    json::parse("{\n  \"a\": tru\n}");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2, column 8"), std::string::npos) << e.what();
  }
  // Typed access names the actual type.
  try {
    json::parse("[1]").as_object();
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected an object, got array"), std::string::npos);
  }
}

TEST(Json, DumpRoundTrips) {
  json::Value v = json::Value::object();
  v.set("name", json::Value("tab\there \"q\" \x01 \xC3\xA9"));
  v.set("x", json::Value(0.1));
  v.set("n", json::Value(int64_t{-9223372036854775807LL - 1}));
  v.set("l", json::Value::array({json::Value(true), json::Value(), json::Value(1e-300)}));
  const std::string compact = json::dump(v);
  EXPECT_EQ(compact,
            "{\"name\":\"tab\\there \\\"q\\\" \\u0001 \xC3\xA9\",\"x\":0.1,"
            "\"n\":-9223372036854775808,\"l\":[true,null,1e-300]}");
  const json::Value back = json::parse(compact);
  EXPECT_EQ(json::dump(back), compact);
  EXPECT_EQ(json::dump(json::parse(json::dump(v, 2))), compact);
  EXPECT_THROW(json::dump(json::Value(NAN)), Error);
}

// ---------------------------------------------------------------------------------------------
// Layout

TEST(Safetensors, WritesTheExactLayout) {
  TempDir dir("idem_safetensors_test");
  const std::string path = dir.file("model.safetensors");
  Tensor w = from_vector<float>({0.5f, -1.0f, 2.0f, 3.25f, -0.0f, 1e-3f}, {2, 3});
  Tensor b = from_vector<int64_t>({-7, 1LL << 40}, {2});
  Tensor s = scalar_tensor(3.5, {DType::f64});
  Tensor e = empty({0, 4}, {DType::u8});
  save_safetensors(path,
                   {{"layers.0.weight", w}, {"layers.0.bias", b}, {"scale", s}, {"empty", e}});

  const std::string bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(bytes[k]);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 24 + 16 + 8);
  const std::string header = bytes.substr(8, n);
  const std::string expected_json =
      "{\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
      "\"layers.0.bias\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[24,40]},"
      "\"scale\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[40,48]},"
      "\"empty\":{\"dtype\":\"U8\",\"shape\":[0,4],\"data_offsets\":[48,48]},"
      "\"__metadata__\":{\"format\":\"pt\"}}";
  ASSERT_GE(header.size(), expected_json.size());
  EXPECT_EQ(header.substr(0, expected_json.size()), expected_json);
  EXPECT_LT(header.size() - expected_json.size(), 8u);  // padding only up to the next 8
  EXPECT_EQ(header.find_first_not_of(' ', expected_json.size()), std::string::npos);

  // The header parses, and its offsets point at the raw little-endian data.
  const json::Value h = json::parse(header);
  const auto& entries = h.as_object();
  ASSERT_EQ(entries.size(), 5u);
  const std::string data = bytes.substr(8 + n);
  const std::pair<const char*, const Tensor*> want[] = {
      {"layers.0.weight", &w}, {"layers.0.bias", &b}, {"scale", &s}, {"empty", &e}};
  for (const auto& [name, t] : want) {
    const json::Value& info = h.at(name);
    const auto& off = info.at("data_offsets").as_array();
    const int64_t begin = off[0].as_int(), end = off[1].as_int();
    EXPECT_EQ(data.substr(begin, end - begin), raw(*t)) << name;
  }
  EXPECT_EQ(h.at("__metadata__").at("format").as_string(), "pt");

  // Nothing but the file is left in the directory (no temporary file).
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(Safetensors, RoundTripIsBitExact) {
  TempDir dir("idem_safetensors_test");
  const std::string path = dir.file("rt.safetensors");
  const float fspecial[] = {
      std::numeric_limits<float>::quiet_NaN(),  std::numeric_limits<float>::infinity(),
      -std::numeric_limits<float>::infinity(),  -0.0f,
      std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max()};
  Tensor f = randn({3, 5, 7}, 42, {DType::f32});
  std::memcpy(f.raw_data(), fspecial, sizeof(fspecial));
  Tensor d = randn({11}, 43, {DType::f64});
  Tensor i32 = from_vector<int32_t>(
      {std::numeric_limits<int32_t>::min(), -1, 0, 1, std::numeric_limits<int32_t>::max()}, {5});
  Tensor i64 = from_vector<int64_t>(
      {std::numeric_limits<int64_t>::min(), 0, std::numeric_limits<int64_t>::max()}, {3, 1});
  std::vector<uint8_t> all(256);
  for (int k = 0; k < 256; ++k) all[k] = static_cast<uint8_t>(k);
  Tensor u8 = from_vector<uint8_t>(all, {16, 16});
  const NamedTensors in = {{"z.last_name_first", f},
                           {"d", d},
                           {"\xC3\xBCn\xC3\xAF \"q\"", i32},
                           {"i64", i64},
                           {"u8", u8},
                           {"empty", empty({0}, {DType::f32})}};
  save_safetensors(path, in, {{"step", "1200"}, {"note", "x"}});
  const SafetensorsContents out = read_safetensors(path);
  ASSERT_EQ(out.tensors.size(), in.size());
  for (size_t k = 0; k < in.size(); ++k) {
    SCOPED_TRACE(in[k].first);
    EXPECT_EQ(out.tensors[k].first, in[k].first);  // same order
    const Tensor& t = out.tensors[k].second;
    EXPECT_EQ(t.dtype(), in[k].second.dtype());
    EXPECT_EQ(t.shape(), in[k].second.shape());
    EXPECT_TRUE(t.device().is_cpu());
    EXPECT_EQ(raw(t), raw(in[k].second));
  }
  const StringPairs meta = {{"format", "pt"}, {"step", "1200"}, {"note", "x"}};
  EXPECT_EQ(out.metadata, meta);
  // Saving again over the same path replaces the file.
  save_safetensors(path, {{"only", d}});
  const NamedTensors again = load_safetensors(path);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(raw(again[0].second), raw(d));
}

TEST(Safetensors, ReadsTensorsInDataOrderWhateverTheKeyOrder) {
  // Other writers (PyTorch's) order header keys differently from the data; both are legal.
  TempDir dir("idem_safetensors_test");
  const std::string path = dir.file("order.safetensors");
  std::string data(12, '\0');
  const float a[2] = {1.0f, 2.0f};
  const int32_t b = 7;
  std::memcpy(&data[0], a, 8);
  std::memcpy(&data[8], &b, 4);
  write_bytes(path, st_file("{\"__metadata__\":{\"format\":\"pt\"},"
                            "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                            "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                            data));
  const NamedTensors t = load_safetensors(path);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].first, "a");
  EXPECT_EQ(t[0].second.to_vector<float>(), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(t[1].first, "b");
  EXPECT_EQ(t[1].second.item(), 7.0);
  // A file with no tensors and no metadata is valid too.
  write_bytes(path, st_file("{}      ", ""));
  EXPECT_TRUE(load_safetensors(path).empty());
}

TEST(Safetensors, BadWritesLeaveTheOldFile) {
  TempDir dir("idem_safetensors_test");
  const std::string path = dir.file("keep.safetensors");
  save_safetensors(path, {{"a", ones({2})}});
  const std::string before = read_bytes(path);
  auto expect_write_error = [&](const NamedTensors& t, const std::string& part) {
    try {
      save_safetensors(path, t);
      ADD_FAILURE() << "expected " << part;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_write_error({{"a", ones({2})}, {"a", ones({1})}}, "duplicate tensor name \"a\"");
  expect_write_error({{"", ones({2})}}, "empty name");
  expect_write_error({{"__metadata__", ones({2})}}, "cannot name a tensor");
  expect_write_error({{"u", Tensor()}}, "undefined");
  EXPECT_EQ(read_bytes(path), before);
  // A failure in the middle of writing the body removes the temporary file.
  EXPECT_THROW(write_file_atomic(path, "test",
                                 [](const ByteSink& sink) {
                                   sink("partial", 7);
                                   fail("test", "simulated failure");
                                 }),
               Error);
  EXPECT_EQ(read_bytes(path), before);
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1);
  // An unwritable location is a clear error naming the path.
  try {
    save_safetensors(dir.file("no/such/dir/x.safetensors"), {{"a", ones({1})}});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no/such/dir"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Hostile files

const char* kF32x2 = "\"dtype\":\"F32\",\"shape\":[2]";

TEST(Safetensors, HostileFilesRaiseClearErrors) {
  TempDir dir("idem_safetensors_test");
  const std::string path = dir.file("bad.safetensors");
  const std::string eight(8, 'x');
  auto one = [](const std::string& name, const std::string& body) {
    return "{\"" + name + "\":{" + body + "}}";
  };
  struct Case {
    std::string bytes;
    std::string part;
  };
  const std::vector<Case> cases = {
      {"", "too short"},
      {"\x05\x00\x00", "too short"},
      {le64(1000) + "{}", "header length 1000 exceeds the 2 bytes"},
      {le64(200000000) + std::string(64, ' '), "exceeds the 100000000-byte limit"},
      {le64(~uint64_t{0}) + "{}", "exceeds the 100000000-byte limit"},
      {st_file("[1, 2]  ", ""), "does not start with '{'"},
      {st_file("{\"a\":{\"dtype\":\"F32\",", ""), "invalid JSON header"},
      {st_file("{\"a\":1,}", ""), "invalid JSON header"},
      {st_file("{\"a\":\"\xFF\"}", ""), "invalid UTF-8"},
      {st_file("{\"a\":" + std::string(100000, '[') + "}", ""), "nesting deeper"},
      {st_file("{\"a\":[]}", ""), "tensor \"a\": expected an object"},
      {st_file(one("a", "\"shape\":[2],\"data_offsets\":[0,8]"), eight), "missing \"dtype\""},
      {st_file(one("a", "\"dtype\":\"F32\",\"data_offsets\":[0,8]"), eight), "missing \"shape\""},
      {st_file(one("a", kF32x2), eight), "missing \"data_offsets\""},
      {st_file(one("a", "\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]"), eight),
       "dtype must be a string"},
      {st_file(one("a", "\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]"), eight),
       "unknown dtype \"F33\""},
      {st_file(one("a", "\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]"), eight),
       "dtype BF16 is not supported by idem"},
      {st_file(one("a", "\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]"), eight),
       "shape must be an array"},
      {st_file(one("a", "\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]"), eight),
       "shape entry must be >= 0"},
      {st_file(one("a", "\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]"), eight),
       "shape entry must be an integer"},
      {st_file(one("a", "\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]"), eight),
       "shape entry must be an integer, got string"},
      {st_file(
           one("a", "\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]"),
           eight),
       "too large"},
      {st_file(one("a",
                   "\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],"
                   "\"data_offsets\":[0,8]"),
               eight),
       "overflows 64 bits"},
      {st_file(one("a",
                   "\"dtype\":\"F64\",\"shape\":[2305843009213693952],"
                   "\"data_offsets\":[0,8]"),
               eight),
       "overflows 64 bits"},
      {st_file(one("a", std::string(kF32x2) + ",\"data_offsets\":[0]"), eight),
       "data_offsets must be an array [begin, end]"},
      {st_file(one("a", std::string(kF32x2) + ",\"data_offsets\":[0,8,16]"), eight),
       "data_offsets must be an array [begin, end]"},
      {st_file(one("a", std::string(kF32x2) + ",\"data_offsets\":[8,0]"), eight),
       "end before begin"},
      {st_file(one("a", std::string(kF32x2) + ",\"data_offsets\":[0,-8]"), eight),
       "data_offsets end must be >= 0"},
      // offsets disagree with dtype × shape
      {st_file(one("a", "\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]"), eight),
       "F64 (2) needs 16 bytes but data_offsets [0, 8] hold 8"},
      // overlap, gap, not starting at 0, too little / too much data
      {st_file("{\"a\":{" + std::string(kF32x2) + ",\"data_offsets\":[0,8]},\"b\":{" + kF32x2 +
                   ",\"data_offsets\":[4,12]}}",
               std::string(12, 'x')),
       "tensor \"b\" at [4, 12] overlaps tensor \"a\" at [0, 8]"},
      {st_file("{\"a\":{" + std::string(kF32x2) + ",\"data_offsets\":[0,8]},\"b\":{" + kF32x2 +
                   ",\"data_offsets\":[12,20]}}",
               std::string(20, 'x')),
       "gap of 4 bytes"},
      {st_file(one("a", std::string(kF32x2) + ",\"data_offsets\":[8,16]"), std::string(16, 'x')),
       "gap of 8 bytes"},
      {st_file(one("a", std::string(kF32x2) + ",\"data_offsets\":[0,8]"), "xxxx"),
       "need 8 bytes of data but the file holds only 4"},
      {st_file(one("a", std::string(kF32x2) + ",\"data_offsets\":[0,8]"), std::string(9, 'x')),
       "1 bytes after the last tensor"},
      // duplicate names (a JSON object with a repeated key)
      {st_file("{\"a\":{" + std::string(kF32x2) + ",\"data_offsets\":[0,8]},\"a\":{" + kF32x2 +
                   ",\"data_offsets\":[8,16]}}",
               std::string(16, 'x')),
       "duplicate key \"a\""},
      {st_file("{\"__metadata__\":{\"format\":1}}", ""), "__metadata__ entry \"format\""},
      {st_file("{\"__metadata__\":[]}", ""), "__metadata__ must be an object"},
      {st_file(one("", std::string(kF32x2) + ",\"data_offsets\":[0,8]"), eight),
       "a tensor has an empty name"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.part);
    write_bytes(path, c.bytes);
    expect_load_error(path, c.part);
  }
  expect_load_error(dir.file("does_not_exist.safetensors"), "cannot open");
  expect_load_error(dir.path().string(), "not a regular file");
}

TEST(Safetensors, EveryTruncationAndRandomCorruptionIsAnErrorOrALoad) {
  TempDir dir("idem_safetensors_test");
  const std::string good = dir.file("good.safetensors"), path = dir.file("cut.safetensors");
  save_safetensors(good, {{"w", randn({4, 3}, 7, {DType::f32})},
                          {"b", arange(5, {DType::i64})},
                          {"s", scalar_tensor(2.0, {DType::f64})}});
  const std::string bytes = read_bytes(good);
  for (size_t len = 0; len < bytes.size(); ++len) {
    write_bytes(path, bytes.substr(0, len));
    EXPECT_THROW(load_safetensors(path), Error) << "truncated to " << len << " bytes";
  }
  // Random byte corruption anywhere in the length or the header: each load either succeeds
  // with consistent tensors or throws idem::Error; nothing else escapes (no crash, no
  // bad_alloc from a hostile length).
  std::mt19937 rng(1234);
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(bytes[k]);
  int errors = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string m = bytes;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) {
      const size_t at = rng() % (8 + n);
      m[at] = static_cast<char>(rng() & 0xFF);
    }
    write_bytes(path, m);
    try {
      for (const auto& [name, t] : load_safetensors(path)) EXPECT_LE(t.nbytes(), m.size());
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 0) << "seed 1234";
}

TEST(Safetensors, CudaTensorsAreSavedAndLoadedToADevice) {
  IDEM_REQUIRE_GPU();
  TempDir dir("idem_safetensors_test");
  const std::string path = dir.file("gpu.safetensors");
  Tensor w = randn({17, 3}, 5, {DType::f32});
  save_safetensors(path, {{"w", w.to(Device::cuda())}, {"i", arange(4, {DType::i64})}});
  const NamedTensors cpu = load_safetensors(path);
  EXPECT_EQ(raw(cpu[0].second), raw(w));
  const NamedTensors gpu = load_safetensors(path, Device::cuda());
  EXPECT_TRUE(gpu[0].second.device().is_cuda());
  EXPECT_EQ(raw(gpu[0].second), raw(w));
  EXPECT_EQ(gpu[1].second.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3}));
}

}  // namespace
}  // namespace idem
