// L1: MultiTensorCopy — many tensor copies and zero fills in ONE kernel launch.
//
// IT³ resets the working model from the frozen anchor and zeroes the optimizer moments for every
// test batch (docs/it3.md): one copy_ per parameter and buffer plus a fill is a dozen or more
// launches for a small MLP, and a small step is bound by launches. A MultiTensorCopy is built
// once from the (dst, src) pairs and the tensors to zero; it validates them, builds a table of
// byte ranges and, on a GPU, uploads that table once. After that:
//   - run() on a GPU issues ONE kernel that performs every copy and every zeroing, allocates
//     nothing and never waits for the GPU, so it can be captured in a CUDA graph;
//   - on the CPU, run() is a memcpy/memset per entry.
// The tensors are held (their storage stays alive), and their storage must not be replaced
// while the MultiTensorCopy is used (Module::copy_from, load_state_dict and the optimizers keep
// storage in place; Module::to(device) does not — rebuild after moving a model).
//
//   MultiTensorCopy reset(copy_pairs(working.parameters(), anchor.parameters()),
//                         {optimizer.state_buffer()});
//   ... per test batch: reset.run(); optimizer.reset_step_counts();
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "core/kernels/multi_copy.h"
#include "core/tensor.h"

namespace idem {

class MultiTensorCopy {
 public:
  using CopyPair = std::pair<Tensor, Tensor>;  // (dst, src)

  // Empty: run() does nothing.
  MultiTensorCopy() = default;
  // requires: every tensor defined, all on one device; each pair of one dtype and one shape;
  // no destination (dst of a pair, or a tensor to zero) overlaps another destination or any
  // source in memory. Empty tensors are allowed (nothing to do). Throws idem::Error
  // "[MultiTensorCopy] ..." naming the offending entry otherwise.
  MultiTensorCopy(std::vector<CopyPair> copies, std::vector<Tensor> zero = {});

  // Performs every copy and zeroing: one kernel launch on a GPU (none when there is nothing to
  // do), no allocation, no synchronization.
  void run() const;

  Device device() const { return device_; }
  size_t num_copies() const { return num_copies_; }
  size_t num_zeroed() const { return num_zeroed_; }
  int64_t bytes_copied() const { return bytes_copied_; }  // per run()
  int64_t bytes_zeroed() const { return bytes_zeroed_; }  // per run()
  // Kernel launches per run(): 1 on a GPU with work to do, else 0.
  int launches_per_run() const { return device_.is_cuda() && total_blocks_ > 0 ? 1 : 0; }

 private:
  std::vector<Tensor> keep_;  // every tensor of the table: the raw pointers stay valid
  std::vector<MultiCopyDesc> table_;
  Tensor device_table_;  // table_ as bytes on the GPU (CUDA only)
  Device device_;
  int64_t total_blocks_ = 0;
  size_t num_copies_ = 0, num_zeroed_ = 0;
  int64_t bytes_copied_ = 0, bytes_zeroed_ = 0;
};

// Zips two equally long lists into (dst, src) pairs: copy_pairs(working.parameters(),
// anchor.parameters()). Throws idem::Error when the lengths differ.
std::vector<MultiTensorCopy::CopyPair> copy_pairs(const std::vector<Tensor>& dst,
                                                  const std::vector<Tensor>& src);

}  // namespace idem
