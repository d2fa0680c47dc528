// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors), so weights
// move between idem and PyTorch:
//   8 bytes   little-endian u64 N: the header length
//   N bytes   JSON {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//                   ..., "__metadata__": {"format": "pt"}}, padded with spaces to a multiple of 8
//   ...       the raw little-endian tensor data; offsets are relative to the end of the header
//
// Writing is atomic: the bytes go to a temporary file in the same directory, which is flushed,
// fsynced and renamed over the target, so a crash leaves either the old file or the new one.
// Reading validates everything the reference implementation does (and a little more: a tensor
// named "" is refused, as the writer refuses to write one) before allocating tensor memory;
// every violation throws idem::Error naming the file and the problem.
// Supported dtypes: F32, F64, I32, I64, U8 (idem's dtypes).
#pragma once
#include <cstddef>
#include <cstdint>
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

}  // namespace idem
