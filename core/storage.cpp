#include "core/storage.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/cpu_allocator.h"
#include "core/error.h"
#include "core/kernels/runtime.h"

namespace idem {


Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (nbytes == 0) return;
  if (device.is_cpu()) {
    data_ = cpu_alloc::allocate(nbytes);
    if (!data_) fail("storage", "out of host memory allocating ", nbytes, " bytes");
  } else {
    data_ = cuda::alloc(nbytes, device.index);
  }
}

Storage::~Storage() {
  if (!data_) return;
  if (device_.is_cpu())
    cpu_alloc::release(data_, nbytes_);
  else
    cuda::release(data_, nbytes_, device_.index);
}

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memmove(dst, src, nbytes);  // views of one storage may overlap
  } else if (dst_dev.is_cuda() && src_dev.is_cpu()) {
    cuda::memcpy(dst, src, nbytes, 0, dst_dev.index);
  } else if (dst_dev.is_cpu() && src_dev.is_cuda()) {
    cuda::memcpy(dst, src, nbytes, 1, src_dev.index);
  } else {
    IDEM_CHECK(dst_dev == src_dev, "copy", "copies between two GPUs (", src_dev.str(), " -> ",
               dst_dev.str(), ") are not supported; go through the CPU");
    cuda::memcpy(dst, src, nbytes, 2, dst_dev.index);
  }
}

}  // namespace idem
