// Level L4: the fused head of IT³ on a feature-injection model — the loss of one adaptation
// step from the body's features on (θ's head f and the frozen anchor's head F, two softmaxes
// and the distance, forward and backward) as ONE op, one launch each way on a GPU, and the
// prediction's head as one more (autograd/it3_head_function.h, core/kernels/it3_head.h). The
// body (the convolutions) stays op by op.
//
// The Adapter builds a FusedHead when fused_head_ineligible_reason() is empty and calls it in
// it3_passes() and for the prediction, for every batch that batch_reason() accepts.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/it3_head_function.h"
#include "it3/recursive_model.h"

namespace idem::it3 {

struct AdaptOptions;
enum class FusedMode : uint8_t;  // it3/adapt.h

// Where FusedMode::automatic stops: one block of the kernel walks every row, so past some batch
// the composed ops' grid-wide launches win. Measured on an H100 with the staged kernels
// (docs/it3.md, "The fused head"; µs per eager cnn adaptation, the fused head against the
// composed one): 202 against 252 at batch 8, 244 against 254 at 32, 305 against 272 at 64.
// So 32 is the last batch measured where it wins.
constexpr int64_t kFusedHeadAutoMaxBatch = 32;
// Whether FusedMode::automatic takes the fused head inside a CUDA graph too: no, since there,
// where only the kernels count, it was slower at every batch measured (staged: 171 against
// 166 µs at batch 8, 275 against 198 at 64; docs/it3.md).
constexpr bool kFusedHeadAutoInGraphs = false;
// The fused-head mode for an adaptation that will be captured in a CUDA graph: automatic
// becomes off unless kFusedHeadAutoInGraphs; on and off stay. Decided when the Adapter is
// built, never per call: the warm-ups before a capture must run the kernels the capture does
// (they fill the allocator's cache for it).
FusedMode fused_head_in_graph(FusedMode mode);

// Why the IT³ loss of `model` against `anchor` cannot run through the fused head ("" when it
// can, batch aside): an IT³ method (it3, it3-online, random-step) with a separate frozen anchor
// (not --anchor shared), a classification FeatureModel whose embed is one Linear with bias
// and whose head is 1 to kIt3HeadMaxLayers Linears with bias, each built by push_linear with
// identity, ReLU or LeakyReLU (one slope), widths ≤ kIt3HeadMaxWidth, the l1 or mse distance,
// options.fused_head not off (automatic: on a GPU only), f32 (or f64 on the CPU).
std::string fused_head_ineligible_reason(RecursiveModel& model, RecursiveModel* anchor,
                                         const AdaptOptions& options);

class FusedHead {
 public:
  // requires: fused_head_ineligible_reason(model, &anchor, options) empty.
  FusedHead(RecursiveModel& model, RecursiveModel& anchor, const AdaptOptions& options);

  // "" when a batch of x runs through the fused head: 1 ≤ B ≤ kIt3HeadMaxBatch, and with
  // FusedMode::automatic B ≤ kFusedHeadAutoMaxBatch.
  std::string batch_reason(const Input& x) const;
  // Whether the op takes the body's features h: (B, n_0) rows. A body that ends in a feature
  // map (B, C, H, W) takes the composed head (FeatureModel::from_features broadcasts the
  // embedding over the map).
  static bool takes(const Tensor& h) { return h.dim() == 2; }
  // The step's loss (differentiable in h_f, h_F and θ's head), y0 and y1 (it3/adapt.cpp's
  // it3_passes; s0 = ∅).
  It3HeadLoss loss(const Tensor& h_f, const Tensor& h_F, const Tensor& s0) const;
  // θ's head on the features, y = f(h, s): the prediction (no history).
  Tensor predict(const Tensor& h, const Tensor& s) const;

 private:
  std::vector<std::shared_ptr<Linear>> f_, F_;  // embed, then the head's layers
  It3HeadSpec spec_;
  bool automatic_ = true;
};

}  // namespace idem::it3
