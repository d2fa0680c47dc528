// Replays the fuzz corpus (tests/fuzz/corpus/<target>/) through the fuzzers' own entry points
// (tests/fuzz/fuzz_entry.h) as ordinary tests, so every seed and every past finding runs in
// every build — under ASan/UBSan in the sanitize build — without clang or libFuzzer.
//   ok_*       valid files: must be accepted;
//   bad_*      hostile files: must be rejected with an idem::Error;
//   regress_*  past fuzz findings: must be accepted or rejected with an idem::Error, as the file
//              name says after the prefix (regress_ok_* / regress_bad_*), never crash.
// Any other outcome (another exception type, an invariant violation, a crash) fails.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_entry.h"
#include "tests/test_util.h"

namespace idem {
namespace {

namespace fs = std::filesystem;

using Entry = std::function<void(const uint8_t*, size_t)>;

const std::map<std::string, Entry>& entries() {
  static const std::map<std::string, Entry> m = {{"safetensors", fuzz::safetensors},
                                                 {"npy", fuzz::npy},
                                                 {"json", fuzz::json_text},
                                                 {"idx", fuzz::idx},
                                                 {"table", fuzz::table}};
  return m;
}

fs::path corpus_root() {
  return fs::path(__FILE__).parent_path() / "fuzz" / "corpus";
}

std::vector<fs::path> files_of(const std::string& target) {
  std::vector<fs::path> out;
  const fs::path dir = corpus_root() / target;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

bool starts_with(const std::string& s, const std::string& p) {
  return s.compare(0, p.size(), p) == 0;
}

// Runs one file; returns "" when the outcome matches its name, else what went wrong.
std::string replay(const Entry& entry, const fs::path& file) {
  const std::string name = file.filename().string();
  const std::string bytes = testing::read_bytes(file.string());
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const bool want_ok = starts_with(name, "ok_") || starts_with(name, "regress_ok_");
  const bool want_error = starts_with(name, "bad_") || starts_with(name, "regress_bad_");
  try {
    entry(p, bytes.size());
  } catch (const Error& e) {
    if (want_ok) return std::string("rejected a valid file: ") + e.what();
    return "";
  } catch (const fuzz::InvariantViolation& e) {
    return std::string("invariant violated: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("threw a non-idem exception: ") + e.what();
  }
  if (want_error) return "accepted a hostile file";
  return "";
}

class FuzzCorpus : public ::testing::TestWithParam<std::string> {};

TEST_P(FuzzCorpus, EverySeedParsesOrThrowsIdemError) {
  const std::string target = GetParam();
  const std::vector<fs::path> files = files_of(target);
  ASSERT_FALSE(files.empty()) << "no corpus for " << target << " under " << corpus_root();
  int ok = 0, bad = 0;
  for (const fs::path& f : files) {
    const std::string name = f.filename().string();
    const bool named = starts_with(name, "ok_") || starts_with(name, "bad_") ||
                       starts_with(name, "regress_ok_") || starts_with(name, "regress_bad_");
    EXPECT_TRUE(named) << f << ": corpus files are named ok_*, bad_* or regress_{ok,bad}_*";
    ok += starts_with(name, "ok_");
    bad += starts_with(name, "bad_");
    const std::string problem = replay(entries().at(target), f);
    EXPECT_EQ(problem, "") << f;
  }
  // Each reader keeps both kinds of seeds.
  EXPECT_GE(ok, 3) << target;
  EXPECT_GE(bad, 8) << target;
}

INSTANTIATE_TEST_SUITE_P(Readers, FuzzCorpus,
                         ::testing::Values("safetensors", "npy", "json", "idx", "table"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// The harness itself: an accepted input that breaks an invariant is reported as such (so a
// corrupt result cannot pass as "parsed").
TEST(FuzzCorpusHarness, InvariantViolationsAreNotSwallowed) {
  const Entry broken = [](const uint8_t*, size_t) { IDEM_FUZZ_CHECK(1 + 1 == 3); };
  const fs::path any = files_of("json").front();
  EXPECT_NE(replay(broken, any).find("invariant violated"), std::string::npos);
}

// ---- fuzz findings, one test each (the input is also in the corpus as regress_*) ----

// fuzz_json: "-0e-3" is the double -0.0; dump wrote "-0", which reads back as the integer 0,
// so the value lost its sign on a round trip. The writer now keeps the sign ("-0.0").
TEST(FuzzFindings, JsonNegativeZeroKeepsItsSignThroughARoundTrip) {
  const json::Value v = json::parse("-0e-3");
  EXPECT_EQ(json::dump(v), "-0.0");
  const json::Value back = json::parse(json::dump(v));
  EXPECT_FALSE(back.is_integer());
  EXPECT_TRUE(std::signbit(back.as_double()));
  EXPECT_EQ(json::dump(json::parse("-0")), "0");  // the integer -0 is the integer 0
}

// fuzz_safetensors: a header that names a tensor "" loaded, while the writer refuses an empty
// name (and the fuzz harness checks that every loaded name is non-empty). The reader now
// rejects it with an idem::Error that says so.
TEST(FuzzFindings, SafetensorsRejectsAnEmptyTensorName) {
  const fs::path f = corpus_root() / "safetensors" / "regress_bad_empty_tensor_name.safetensors";
  ASSERT_TRUE(fs::is_regular_file(f)) << f;
  testing::expect_error([&] { read_safetensors(f.string()); }, "safetensors",
                        "a tensor has an empty name");
}

}  // namespace
}  // namespace idem
