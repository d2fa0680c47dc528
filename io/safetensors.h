// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors), so weights
// move between idem and PyTorch:
//   8 bytes   little-endian u64 N: the header length
//   N bytes   JSON {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//                   ..., "__metadata__": {"format": "pt"}}, padded with spaces to a multiple of 8
//   ...       the raw little-endian tensor data; offsets are relative to the end of the header
//
// Writing is atomic: the bytes go to a temporary file in the same directory, which is flushed,
// fsynced and renamed over the target, so a crash leaves either the old file or the new one.
// Reading validates everything the reference implementation does (and a little more) before
// allocating tensor memory; every violation throws idem::Error naming the file and the problem.
// Supported dtypes: F32, F64, I32, I64, U8 (idem's dtypes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace idem {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using StringPairs = std::vector<std::pair<std::string, std::string>>;

constexpr uint64_t kSafetensorsMaxHeader = 100000000;  // bytes, as the reference implementation

struct SafetensorsContents {
  NamedTensors tensors;  // in data order (= the order they were written by save_safetensors)
  StringPairs metadata;  // the "__metadata__" object, in file order
};

// Writes `tensors` in the given order. Tensors on a GPU are copied to the host one at a time.
// `metadata` goes to "__metadata__"; "format": "pt" is added unless it has a "format" entry.
// requires: names unique, non-empty and not "__metadata__"; tensors defined.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const StringPairs& metadata = {});

// Reads every tensor (CPU tensors, then moved to `device`).
NamedTensors load_safetensors(const std::string& path, Device device = Device::cpu());
SafetensorsContents read_safetensors(const std::string& path, Device device = Device::cpu());

// ---- shared file helpers (also used by io/npy.cpp) ----

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
