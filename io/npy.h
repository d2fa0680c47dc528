// NumPy .npy files (format versions 1.0 and 2.0; 3.0 is read too, it only differs in allowing
// UTF-8 in the header): one array per file, little-endian, C order.
//   "\x93NUMPY", major, minor, header length (u16 for 1.0, u32 for 2.0/3.0),
//   header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//   padded with spaces and ending in '\n' so the data starts at a multiple of 64, then the data.
// Supported dtypes: '<f4' '<f8' '<i4' '<i8' '|u1' (f32, f64, i32, i64, u8).
//
// Writing is atomic (temporary file + fsync + rename, see write_file_atomic). Reading rejects,
// with an idem::Error naming the file and the problem: a wrong magic or version, a header
// longer than the file or than 1 MiB, a header that is not exactly the three keys with values
// of the right types, fortran_order True, an unsupported or big-endian dtype, a negative or
// overflowing shape, and data that is shorter or longer than the shape says.
#pragma once
#include <string>

#include "core/tensor.h"

namespace idem {

constexpr uint64_t kNpyMaxHeader = 1 << 20;  // bytes

void save_npy(const std::string& path, const Tensor& t);
// Returns a CPU tensor moved to `device`.
Tensor load_npy(const std::string& path, Device device = Device::cpu());

}  // namespace idem
