// File helpers shared by the file formats (io/, data/) and the command line's run outputs: the
// atomic writer, a checked reader and the host byte-order check. Errors are idem::Error
// prefixed with the caller's `op` and naming the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace idem {

// Appends bytes to the file being written.
using ByteSink = std::function<void(const void* data, size_t nbytes)>;
// Creates `path` atomically: body(sink) writes the content to a temporary file next to it; the
// file is then flushed, fsynced and renamed over `path` (and the directory fsynced). If body or
// any step throws, the temporary file is removed and `path` is untouched. Errors name `op`.
// A writer killed mid-write (SIGKILL) leaves only its temporary file, never a partial `path`;
// the next write of `path` removes such leftovers of processes that no longer exist. A
// replaced file keeps its permission bits. (tests/atomic_write_test.cpp kills a writer.)
void write_file_atomic(const std::string& path, const char* op,
                       const std::function<void(const ByteSink&)>& body);
// Throws idem::Error naming `op` unless the host is little-endian (the file formats are).
void check_little_endian(const char* op);

// A regular file opened for reading. Errors are idem::Error "[op] <path>: ...".
class InputFile {
 public:
  // Opens `path` and rejects anything that is not a regular file.
  InputFile(const std::string& path, const char* op);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }
  // Reads exactly n bytes (naming `what` in the error when the file ends first).
  void read_exact(void* dst, size_t n, const char* what);

 private:
  std::string path_;
  const char* op_;
  std::FILE* f_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace idem
