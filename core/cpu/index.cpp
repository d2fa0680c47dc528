// CPU data movement: slice copies, index_select/index_add, gather/scatter_add, one_hot, permute.
// Indices arrive validated by the L1 op. The adjoints (index_add, scatter_add) accumulate in a
// fixed order over j, so they are deterministic.
#include "core/kernels/index.h"

#include <cstring>

namespace idem::cpu {

namespace {

template <typename T>
void index_select_typed(const Tensor& out, const Tensor& in, const Tensor& index, IndexShape s) {
  const T* x = in.data<T>();
  const int64_t* idx = index.data<int64_t>();
  T* y = out.data<T>();
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t j = 0; j < s.n_index; ++j) {
      const T* src = x + (o * s.in_dim + idx[j]) * s.inner;
      T* dst = y + (o * s.n_index + j) * s.inner;
      for (int64_t i = 0; i < s.inner; ++i) dst[i] = src[i];
    }
}

template <typename T>
void index_add_typed(const Tensor& out, const Tensor& src, const Tensor& index, IndexShape s) {
  const T* g = src.data<T>();
  const int64_t* idx = index.data<int64_t>();
  T* y = out.data<T>();
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t j = 0; j < s.n_index; ++j) {
      const T* from = g + (o * s.n_index + j) * s.inner;
      T* to = y + (o * s.in_dim + idx[j]) * s.inner;
      for (int64_t i = 0; i < s.inner; ++i) to[i] += from[i];
    }
}

template <typename T>
void gather_typed(const Tensor& out, const Tensor& in, const Tensor& index, GatherShape s) {
  const T* x = in.data<T>();
  const int64_t* idx = index.data<int64_t>();
  T* y = out.data<T>();
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t j = 0; j < s.idx_dim; ++j) {
      const int64_t row = (o * s.idx_dim + j) * s.inner;
      for (int64_t i = 0; i < s.inner; ++i)
        y[row + i] = x[(o * s.in_dim + idx[row + i]) * s.inner + i];
    }
}

template <typename T>
void scatter_add_typed(const Tensor& out, const Tensor& src, const Tensor& index, GatherShape s) {
  const T* g = src.data<T>();
  const int64_t* idx = index.data<int64_t>();
  T* y = out.data<T>();
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t j = 0; j < s.idx_dim; ++j) {
      const int64_t row = (o * s.idx_dim + j) * s.inner;
      for (int64_t i = 0; i < s.inner; ++i)
        y[(o * s.in_dim + idx[row + i]) * s.inner + i] += g[row + i];
    }
}

template <typename T>
void one_hot_typed(const Tensor& out, const Tensor& index, int64_t num_classes) {
  const int64_t* idx = index.data<int64_t>();
  T* y = out.data<T>();
  const int64_t n = index.numel();
  for (int64_t k = 0; k < n * num_classes; ++k) y[k] = T(0);
  for (int64_t k = 0; k < n; ++k) y[k * num_classes + idx[k]] = T(1);
}

// Walks the output in row-major order with an odometer over its dims; `src_stride[k]` is how
// far the input pointer moves when output dim k advances by one.
template <typename T>
void permute_typed(const Tensor& out, const Tensor& in, const std::vector<int64_t>& perm) {
  const T* x = in.data<T>();
  T* y = out.data<T>();
  const int64_t nd = static_cast<int64_t>(perm.size());
  if (nd == 0) {
    y[0] = x[0];
    return;
  }
  const std::vector<int64_t> in_strides = contiguous_strides(in.shape());
  const Shape& os = out.shape();
  std::vector<int64_t> src_stride(nd), counter(nd, 0);
  for (int64_t k = 0; k < nd; ++k) src_stride[k] = in_strides[perm[k]];
  const int64_t last = os[nd - 1], last_stride = src_stride[nd - 1];
  const int64_t rows = out.numel() / last;
  int64_t src = 0;
  for (int64_t r = 0; r < rows; ++r) {
    T* dst = y + r * last;
    for (int64_t i = 0; i < last; ++i) dst[i] = x[src + i * last_stride];
    // Advance the odometer over dims [0, nd-1).
    for (int64_t k = nd - 2; k >= 0; --k) {
      src += src_stride[k];
      if (++counter[k] < os[k]) break;
      src -= src_stride[k] * os[k];
      counter[k] = 0;
    }
  }
}

}  // namespace

void slice_copy(const Tensor& dst, const Tensor& src, SliceCopy s) {
  // Plain bytes: any dtype, one memcpy per outer index (the copied block is contiguous).
  const size_t es = dtype_size(src.dtype());
  const auto* from = static_cast<const char*>(src.raw_data());
  auto* to = static_cast<char*>(dst.raw_data());
  const size_t block = static_cast<size_t>(s.count * s.inner) * es;
  if (block == 0) return;
  for (int64_t o = 0; o < s.outer; ++o)
    std::memcpy(to + static_cast<size_t>((o * s.dst_dim + s.dst_start) * s.inner) * es,
                from + static_cast<size_t>((o * s.src_dim + s.src_start) * s.inner) * es, block);
}

void index_select_fwd(const Tensor& out, const Tensor& in, const Tensor& index, IndexShape s) {
  IDEM_DISPATCH_ALL(in.dtype(), "index_select",
                    [&] { index_select_typed<scalar_t>(out, in, index, s); });
}

void index_add(const Tensor& out, const Tensor& src, const Tensor& index, IndexShape s) {
  IDEM_DISPATCH_ALL(src.dtype(), "index_add",
                    [&] { index_add_typed<scalar_t>(out, src, index, s); });
}

void gather_fwd(const Tensor& out, const Tensor& in, const Tensor& index, GatherShape s) {
  IDEM_DISPATCH_ALL(in.dtype(), "gather", [&] { gather_typed<scalar_t>(out, in, index, s); });
}

void scatter_add(const Tensor& out, const Tensor& src, const Tensor& index, GatherShape s) {
  IDEM_DISPATCH_ALL(src.dtype(), "scatter_add",
                    [&] { scatter_add_typed<scalar_t>(out, src, index, s); });
}

void one_hot(const Tensor& out, const Tensor& index, int64_t num_classes) {
  IDEM_DISPATCH_ALL(out.dtype(), "one_hot",
                    [&] { one_hot_typed<scalar_t>(out, index, num_classes); });
}

void permute(const Tensor& out, const Tensor& in, const std::vector<int64_t>& perm) {
  if (out.numel() == 0) return;
  IDEM_DISPATCH_ALL(in.dtype(), "permute", [&] { permute_typed<scalar_t>(out, in, perm); });
}

}  // namespace idem::cpu
