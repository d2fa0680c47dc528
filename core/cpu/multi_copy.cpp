// CPU multi-tensor copy/zero (contract: core/kernels/multi_copy.h): memcpy / memset per entry.
#include "core/kernels/multi_copy.h"

#include <cstring>

namespace idem::cpu {

void multi_copy(const std::vector<MultiCopyDesc>& table) {
  for (const MultiCopyDesc& d : table) {
    if (d.nbytes == 0) continue;
    if (d.src != nullptr)
      std::memcpy(d.dst, d.src, static_cast<size_t>(d.nbytes));
    else
      std::memset(d.dst, 0, static_cast<size_t>(d.nbytes));
  }
}

}  // namespace idem::cpu
