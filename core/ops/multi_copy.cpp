// MultiTensorCopy: validation, the byte-range table and its one-time upload; run() dispatches
// to core/cpu/multi_copy.cpp or cuda/kernels/multi_copy.cu.
#include "core/ops/multi_copy.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace idem {

namespace {

constexpr const char* kOp = "MultiTensorCopy";

struct Range {
  uintptr_t begin, end;
  std::string what;  // "copy 3 dst (30x14)" / "zero 1 (64)", for messages
};

std::string entry_name(const char* kind, size_t i, const char* part, const Tensor& t) {
  std::string s = std::string(kind) + " " + std::to_string(i);
  if (part[0] != '\0') s += std::string(" ") + part;
  return s + " " + dtype_name(t.dtype()) + " " + shape_str(t.shape());
}

Range range_of(const Tensor& t, std::string what) {
  const auto b = reinterpret_cast<uintptr_t>(t.raw_data());
  return {b, b + t.nbytes(), std::move(what)};
}

// Widest access (16, 8, 4 or 1 bytes) that divides both addresses and the size.
int32_t access_width(const void* dst, const void* src, int64_t nbytes) {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src) |
                         static_cast<uintptr_t>(nbytes);
  for (int32_t w : {16, 8, 4})
    if (bits % static_cast<uintptr_t>(w) == 0) return w;
  return 1;
}

}  // namespace

MultiTensorCopy::MultiTensorCopy(std::vector<CopyPair> copies, std::vector<Tensor> zero) {
  // 1. every tensor defined, on one device; pairs of one dtype and shape.
  bool have_device = false;
  auto check_device = [&](const Tensor& t, const std::string& what) {
    IDEM_CHECK(t.defined(), kOp, what, " is an undefined tensor");
    if (!have_device) {
      device_ = t.device();
      have_device = true;
    }
    IDEM_CHECK(t.device() == device_, kOp, "expected all tensors on one device: ", what, " is on ",
               t.device().str(), ", the first tensor on ", device_.str());
  };
  for (size_t i = 0; i < copies.size(); ++i) {
    const auto& [dst, src] = copies[i];
    check_device(dst, "copy " + std::to_string(i) + " dst");
    check_device(src, "copy " + std::to_string(i) + " src");
    IDEM_CHECK(dst.dtype() == src.dtype() && dst.shape() == src.shape(), kOp, "copy ", i, ": dst ",
               dtype_name(dst.dtype()), " ", shape_str(dst.shape()), " and src ",
               dtype_name(src.dtype()), " ", shape_str(src.shape()),
               " must have the same dtype and shape");
  }
  for (size_t i = 0; i < zero.size(); ++i) check_device(zero[i], "zero " + std::to_string(i));

  // 2. destinations pairwise disjoint, and disjoint from every source.
  std::vector<Range> dst_ranges, src_ranges;
  for (size_t i = 0; i < copies.size(); ++i) {
    const auto& [dst, src] = copies[i];
    if (dst.numel() == 0) continue;
    dst_ranges.push_back(range_of(dst, entry_name("copy", i, "dst", dst)));
    src_ranges.push_back(range_of(src, entry_name("copy", i, "src", src)));
  }
  for (size_t i = 0; i < zero.size(); ++i)
    if (zero[i].numel() > 0)
      dst_ranges.push_back(range_of(zero[i], entry_name("zero", i, "", zero[i])));
  std::sort(dst_ranges.begin(), dst_ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < dst_ranges.size(); ++i)
    IDEM_CHECK(dst_ranges[i].begin >= dst_ranges[i - 1].end, kOp,
               "destinations overlap in memory: ", dst_ranges[i - 1].what, " and ",
               dst_ranges[i].what);
  for (const Range& s : src_ranges) {
    // The last destination that starts before s ends; destinations are disjoint and sorted, so
    // it reaches furthest among those.
    auto it = std::lower_bound(dst_ranges.begin(), dst_ranges.end(), s.end,
                               [](const Range& d, uintptr_t e) { return d.begin < e; });
    if (it == dst_ranges.begin()) continue;
    --it;
    IDEM_CHECK(it->end <= s.begin, kOp, "a destination overlaps a source in memory: ", it->what,
               " and ", s.what);
  }

  // 3. the table, in the caller's order (copies, then zeroes), empty entries dropped.
  int64_t block = 0;
  auto add = [&](const Tensor& dst, const Tensor* src) {
    keep_.push_back(dst);
    if (src) keep_.push_back(*src);
    if (dst.numel() == 0) return;
    MultiCopyDesc d;
    d.dst = dst.raw_data();
    d.src = src ? src->raw_data() : nullptr;
    d.nbytes = static_cast<int64_t>(dst.nbytes());
    d.block_begin = block;
    d.width = access_width(d.dst, d.src, d.nbytes);
    block += (d.nbytes + kMultiCopyBlockBytes - 1) / kMultiCopyBlockBytes;
    table_.push_back(d);
    (src ? bytes_copied_ : bytes_zeroed_) += d.nbytes;
  };
  for (const auto& [dst, src] : copies) add(dst, &src);
  for (const Tensor& z : zero) add(z, nullptr);
  num_copies_ = copies.size();
  num_zeroed_ = zero.size();
  total_blocks_ = block;
  IDEM_CHECK(total_blocks_ <= 0x7fffffffLL, kOp, "too much data for one launch (",
             bytes_copied_ + bytes_zeroed_, " bytes)");
  if (device_.is_cuda() && !table_.empty()) {
    // Uploaded once (a synchronous copy, here and never in run()); the kernel only reads it.
    const size_t bytes = table_.size() * sizeof(MultiCopyDesc);
    Tensor host = empty({static_cast<int64_t>(bytes)}, {DType::u8});
    std::memcpy(host.raw_data(), table_.data(), bytes);
    device_table_ = host.to(device_);
  }
}

void MultiTensorCopy::run() const {
  if (table_.empty()) return;
  if (device_.is_cpu())
    cpu::multi_copy(table_);
  else
    cuda::multi_copy(device_table_.raw_data(), static_cast<int64_t>(table_.size()), total_blocks_,
                     device_.index);
}

std::vector<MultiTensorCopy::CopyPair> copy_pairs(const std::vector<Tensor>& dst,
                                                  const std::vector<Tensor>& src) {
  IDEM_CHECK(dst.size() == src.size(), kOp, "copy_pairs: ", dst.size(), " destinations but ",
             src.size(), " sources");
  std::vector<MultiTensorCopy::CopyPair> out;
  out.reserve(dst.size());
  for (size_t i = 0; i < dst.size(); ++i) out.emplace_back(dst[i], src[i]);
  return out;
}

}  // namespace idem
