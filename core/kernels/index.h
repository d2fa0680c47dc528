// Kernel contract: data movement along one dim, seen as (outer, D, inner), and permutes.
// Index tensors are i64 and already validated (in range) by the L1 op.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace idem {

// Copies `count` slices along the middle dim:
//   dst[o, dst_start + j, i] = src[o, src_start + j, i]   for j < count.
// src is (outer, src_dim, inner), dst is (outer, dst_dim, inner). Used by concat, split/narrow
// and their backwards. Any dtype.
struct SliceCopy {
  int64_t outer = 1, inner = 1;
  int64_t src_dim = 0, src_start = 0;
  int64_t dst_dim = 0, dst_start = 0;
  int64_t count = 0;
};

// concat along the middle dim: out (outer, total, inner) holds the inputs side by side,
//   out[o, c_k + j, i] = xs[k][o, j, i]   for j < n_k,  c_k = n_0 + ... + n_{k-1},
// input k being (outer, n_k, inner) with n_k = xs[k].numel() / (outer·inner) (n_k = 0: the
// input adds nothing). Σ n_k == total. Any dtype; the bytes are copied unchanged, as by one
// slice_copy per input. The CUDA kernel takes kConcatMaxInputs non-empty inputs by value per
// launch (a concat of up to 8 non-empty inputs is ONE launch; more: ceil(n / 8) launches). The
// CPU path is the op's loop of slice_copy (launches cost nothing there).
constexpr int kConcatMaxInputs = 8;
struct ConcatShape {
  int64_t outer = 1, inner = 1;
  int64_t total = 0;
};

// index_select: out[o, j, i] = in[o, index[j], i]; in (outer, in_dim, inner), out
// (outer, n_index, inner). index_add is its adjoint: out[o, index[j], i] += src[o, j, i]
// (deterministic: fixed order over j).
struct IndexShape {
  int64_t outer = 1, inner = 1;
  int64_t in_dim = 0;   // extent of the indexed dim of the big tensor
  int64_t n_index = 0;  // number of indices
};

// gather (torch.gather): out[o, j, i] = in[o, index[o, j, i], i]; index and out are
// (outer, idx_dim, inner), in is (outer, in_dim, inner). scatter_add is its adjoint:
// out[o, index[o, j, i], i] += src[o, j, i] (deterministic order over j).
struct GatherShape {
  int64_t outer = 1, inner = 1;
  int64_t in_dim = 0, idx_dim = 0;
};

namespace cpu {
void slice_copy(const Tensor& dst, const Tensor& src, SliceCopy s);
void index_select_fwd(const Tensor& out, const Tensor& in, const Tensor& index, IndexShape s);
void index_add(const Tensor& out, const Tensor& src, const Tensor& index, IndexShape s);
void gather_fwd(const Tensor& out, const Tensor& in, const Tensor& index, GatherShape s);
void scatter_add(const Tensor& out, const Tensor& src, const Tensor& index, GatherShape s);
// out (N, C) of out's dtype: out[n, index[n]] = 1, zeros elsewhere.
void one_hot(const Tensor& out, const Tensor& index, int64_t num_classes);
// out = in with dims permuted: out.shape[k] = in.shape[perm[k]]. Any dtype.
void permute(const Tensor& out, const Tensor& in, const std::vector<int64_t>& perm);
}  // namespace cpu

namespace cuda {
void slice_copy(const Tensor& dst, const Tensor& src, SliceCopy s);
void concat(const Tensor& out, const std::vector<Tensor>& xs, ConcatShape s);
void index_select_fwd(const Tensor& out, const Tensor& in, const Tensor& index, IndexShape s);
void index_add(const Tensor& out, const Tensor& src, const Tensor& index, IndexShape s);
void gather_fwd(const Tensor& out, const Tensor& in, const Tensor& index, GatherShape s);
void scatter_add(const Tensor& out, const Tensor& src, const Tensor& index, GatherShape s);
void one_hot(const Tensor& out, const Tensor& index, int64_t num_classes);
void permute(const Tensor& out, const Tensor& in, const std::vector<int64_t>& perm);
}  // namespace cuda

}  // namespace idem
