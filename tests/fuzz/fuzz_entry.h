// The fuzzed entry points, one per reader, shared by the libFuzzer targets (tests/fuzz/fuzz_*.cpp,
// built with -DIDEM_FUZZ=ON and clang) and the corpus replay test (tests/fuzz_corpus_test.cpp,
// part of idem_tests), so a seed or a past finding is replayed through exactly the code that
// the fuzzer ran.
//
// Contract of every entry: for any bytes, it returns (the input was accepted and the result
// passed the invariant checks) or throws idem::Error (the input was rejected with a message).
// Anything else is a finding: a crash or sanitizer report, another exception type (bad_alloc,
// length_error, ...), or an InvariantViolation (accepted input whose result breaks the
// reader's documented guarantees).
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/tensor.h"
#include "data/idx.h"
#include "data/table.h"
#include "io/json.h"
#include "io/npy.h"
#include "io/safetensors.h"

namespace idem::fuzz {

struct InvariantViolation : std::logic_error {
  using std::logic_error::logic_error;
};

#define IDEM_FUZZ_CHECK(cond)                                                        \
  do {                                                                               \
    if (!(cond))                                                                     \
      throw ::idem::fuzz::InvariantViolation(std::string(__FILE__) + ":" +           \
                                             std::to_string(__LINE__) + ": " #cond); \
  } while (0)

// The file readers take a path; an anonymous in-memory file (memfd) gives them one without
// touching the disk, so a fuzzer runs thousands of inputs a second. Reused across calls.
class MemFile {
 public:
  MemFile() {
    fd_ = ::memfd_create("idem_fuzz", MFD_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error(std::string("memfd_create: ") + std::strerror(errno));
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  // Replaces the content with `data` and returns a path that opens it.
  const std::string& hold(const uint8_t* data, size_t n) {
    if (::ftruncate(fd_, 0) != 0) throw std::runtime_error("ftruncate failed");
    size_t done = 0;
    while (done < n) {
      const ssize_t w = ::pwrite(fd_, data + done, n - done, static_cast<off_t>(done));
      if (w <= 0) throw std::runtime_error("pwrite failed");
      done += static_cast<size_t>(w);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

inline MemFile& mem_file() {
  static MemFile f;  // one per process: the fuzzer and the replay test are single-threaded
  return f;
}

// A loaded tensor is self-consistent: a CPU tensor whose bytes are all readable.
inline void check_tensor(const Tensor& t) {
  IDEM_FUZZ_CHECK(t.defined());
  IDEM_FUZZ_CHECK(t.device().is_cpu());
  for (int64_t d : t.shape()) IDEM_FUZZ_CHECK(d >= 0);
  if (t.nbytes() == 0) return;
  volatile unsigned char sink = 0;
  const auto* p = static_cast<const unsigned char*>(t.raw_data());
  for (size_t i = 0; i < t.nbytes(); i += 4096) sink = sink ^ p[i];  // ASan sees any overrun
  sink = sink ^ p[t.nbytes() - 1];
  (void)sink;
}

inline void safetensors(const uint8_t* data, size_t n) {
  const SafetensorsContents c = read_safetensors(mem_file().hold(data, n));
  uint64_t total = 0;
  for (const auto& [name, t] : c.tensors) {
    IDEM_FUZZ_CHECK(!name.empty() && name != "__metadata__");
    check_tensor(t);
    total += t.nbytes();
  }
  // The tensors tile the data section exactly (the reader's guarantee).
  IDEM_FUZZ_CHECK(n >= 8);
  uint64_t header = 0;
  for (int k = 7; k >= 0; --k) header = (header << 8) | data[k];
  IDEM_FUZZ_CHECK(8 + header + total == n);
}

inline void npy(const uint8_t* data, size_t n) {
  const Tensor t = load_npy(mem_file().hold(data, n));
  check_tensor(t);
  IDEM_FUZZ_CHECK(t.nbytes() < n);  // the data follows a non-empty header in the same bytes
  if (t.nbytes() > 0)               // (an empty tensor may have no storage pointer at all)
    IDEM_FUZZ_CHECK(std::memcmp(t.raw_data(), data + (n - t.nbytes()), t.nbytes()) == 0);
}

// JSON: accepted documents round-trip (dump, parse again, dump again gives the same text).
inline void json_text(const uint8_t* data, size_t n) {
  const std::string_view text(reinterpret_cast<const char*>(data), n);
  const json::Value v = json::parse(text);  // may reject: idem::Error
  // From here on the document was accepted: writing and re-reading it must not fail.
  try {
    const std::string once = json::dump(v);
    const std::string pretty = json::dump(v, 2);
    IDEM_FUZZ_CHECK(json::dump(json::parse(once)) == once);
    IDEM_FUZZ_CHECK(json::dump(json::parse(pretty)) == once);
  } catch (const Error& e) {
    throw InvariantViolation(std::string("an accepted document does not round-trip: ") + e.what());
  }
}

inline void idx(const uint8_t* data, size_t n) {
  const Tensor t = data::parse_idx(data, n, "fuzz input");
  check_tensor(t);
  IDEM_FUZZ_CHECK(t.dim() >= 1 && t.dim() <= 8);
}

inline void table(const uint8_t* data, size_t n) {
  const data::Table t =
      data::parse_table(std::string_view(reinterpret_cast<const char*>(data), n), "fuzz input");
  IDEM_FUZZ_CHECK(t.rows >= 1 && t.cols >= 1);
  IDEM_FUZZ_CHECK(t.values.size() == static_cast<size_t>(t.rows * t.cols));
  IDEM_FUZZ_CHECK(t.header.empty() || t.header.size() == static_cast<size_t>(t.cols));
  for (double v : t.values) IDEM_FUZZ_CHECK(std::isfinite(v));
}

}  // namespace idem::fuzz
