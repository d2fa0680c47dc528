// Storage: one owned allocation on one device. Tensors share it through shared_ptr; views keep
// it alive. CPU memory comes from the CPU caching allocator (core/cpu_allocator.h, 64-byte
// aligned); CUDA memory from the CUDA caching allocator.
#pragma once
#include <cstddef>

#include "core/device.h"

namespace idem {

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();  // never throws: returns memory to its allocator
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

// Copies nbytes between any two devices (host<->device, device<->device, host<->host).
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes);

}  // namespace idem
