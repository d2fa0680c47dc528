// Built instead of cuda/*.cu when IDEM_CUDA=OFF: every CUDA entry point exists, so the library
// links, and fails with a clear idem::Error when called. Queries (compiled, available,
// device_count) answer "no" instead of throwing.
#include <string>

#include "core/error.h"
#include "core/kernels/conv.h"
#include "core/kernels/csr_aggregate.h"
#include "core/kernels/cuda_graph.h"
#include "core/kernels/elementwise.h"
#include "core/kernels/fused.h"
#include "core/kernels/fused_mlp_adapt.h"
#include "core/kernels/index.h"
#include "core/kernels/it3_head.h"
#include "core/kernels/matmul.h"
#include "core/kernels/multi_copy.h"
#include "core/kernels/norm.h"
#include "core/kernels/optim.h"
#include "core/kernels/pool.h"
#include "core/kernels/reduce.h"
#include "core/kernels/runtime.h"
#include "core/kernels/sage_conv.h"
#include "core/kernels/segment.h"
#include "core/kernels/softmax.h"

namespace idem::cuda {

namespace {
[[noreturn]] void no_cuda(const char* op) {
  fail(op, "idem was built without CUDA (IDEM_CUDA=OFF); rebuild with nvcc available and "
           "-DIDEM_CUDA=ON to use cuda devices");
}
}  // namespace

// ---- runtime ----
bool compiled() { return false; }
bool available() { return false; }
int device_count() { return 0; }
void* alloc(size_t, int) { no_cuda("cuda alloc"); }
void release(void*, size_t, int) noexcept {}
void memcpy(void*, const void*, size_t, int, int) { no_cuda("cuda memcpy"); }
void synchronize(int) { no_cuda("cuda synchronize"); }
DeviceProperties device_properties(int) { no_cuda("cuda device_properties"); }
std::string device_summary() {
  return "CUDA unavailable: idem was built without CUDA (IDEM_CUDA=OFF)";
}
AllocatorStats allocator_stats(int) { return {}; }
void empty_cache(int) {}  // nothing is ever cached without CUDA
void set_poison_allocations(bool) {}
bool poison_allocations() { return false; }
uint64_t launch_count() { return 0; }
void launch_noop(int, int, bool) { no_cuda("cuda launch_noop"); }
void* event_record(int) { no_cuda("cuda event_record"); }
double event_elapsed_us(void*, void*) { no_cuda("cuda event_elapsed_us"); }
void event_destroy(void*) noexcept {}  // nothing is ever launched without CUDA

// ---- CUDA graphs ----
CaptureStream::CaptureStream(int) { no_cuda("cuda CaptureStream"); }
CaptureStream::~CaptureStream() {}
Graph::~Graph() {}
Graph::Graph(Graph&&) noexcept {}
Graph& Graph::operator=(Graph&&) noexcept { return *this; }
void Graph::reset() noexcept {}
Graph Graph::capture(const std::function<void()>&, int) { no_cuda("cuda graph capture"); }
Graph Graph::capture(const std::function<void()>&, const CaptureStream&) {
  no_cuda("cuda graph capture");
}
void Graph::replay() { no_cuda("cuda graph replay"); }

// ---- elementwise ----
void unary_fwd(const Tensor&, const Tensor&, UnaryOp, UnaryParams) { no_cuda("unary"); }
void unary_bwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, UnaryOp, UnaryParams) {
  no_cuda("unary_backward");
}
void binary_fwd(const Tensor&, const Tensor&, const Tensor&, BinaryOp) { no_cuda("binary"); }
void where_fwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { no_cuda("where"); }
void expand_fwd(const Tensor&, const Tensor&) { no_cuda("expand"); }
void cast(const Tensor&, const Tensor&) { no_cuda("cast"); }
void fill(const Tensor&, double) { no_cuda("fill"); }
void arange_fill(const Tensor&, double, double) { no_cuda("arange"); }
void random_fill(const Tensor&, RandomDist, double, double, uint64_t, uint64_t) {
  no_cuda("random");
}

// ---- reduce ----
void reduce_fwd(const Tensor&, const Tensor&, ReduceShape, ReduceOp) { no_cuda("reduce"); }

// ---- matmul ----
void matmul_fwd(const Tensor&, const Tensor&, const Tensor&, const MatmulParams&) {
  no_cuda("matmul");
}
void matmul_hand(const Tensor&, const Tensor&, const Tensor&, const MatmulParams&) {
  no_cuda("matmul");
}
void matmul_cublas(const Tensor&, const Tensor&, const Tensor&, const MatmulParams&) {
  no_cuda("matmul");
}
void matmul_hand_epilogue(const Tensor&, const Tensor&, const Tensor&, const MatmulParams&,
                          const Tensor&, FusedAct, double) {
  no_cuda("matmul");
}

// ---- softmax ----
void softmax_fwd(const Tensor&, const Tensor&, ReduceShape, bool) { no_cuda("softmax"); }
void softmax_bwd(const Tensor&, const Tensor&, const Tensor&, ReduceShape, bool) {
  no_cuda("softmax_backward");
}

// ---- index ----
void slice_copy(const Tensor&, const Tensor&, SliceCopy) { no_cuda("slice_copy"); }
void concat(const Tensor&, const std::vector<Tensor>&, ConcatShape) { no_cuda("concat"); }
void index_select_fwd(const Tensor&, const Tensor&, const Tensor&, IndexShape) {
  no_cuda("index_select");
}
void index_add(const Tensor&, const Tensor&, const Tensor&, IndexShape) { no_cuda("index_add"); }
void gather_fwd(const Tensor&, const Tensor&, const Tensor&, GatherShape) { no_cuda("gather"); }
void scatter_add(const Tensor&, const Tensor&, const Tensor&, GatherShape) {
  no_cuda("scatter_add");
}
void one_hot(const Tensor&, const Tensor&, int64_t) { no_cuda("one_hot"); }
void permute(const Tensor&, const Tensor&, const std::vector<int64_t>&) { no_cuda("permute"); }

// ---- graph ----
void build_csr(const Tensor&, const Tensor&, const Tensor&, SegmentShape) { no_cuda("build_csr"); }
void segment_reduce_fwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                        SegmentShape, SegmentOp op) {
  no_cuda(segment_op_name(op));
}
void segment_expand(const Tensor&, const Tensor&, const Tensor&, const Tensor&, SegmentShape,
                    bool) {
  no_cuda("segment_expand");
}
void segment_max_bwd(const Tensor&, const Tensor&, const Tensor&, SegmentShape) {
  no_cuda("segment_max_backward");
}

// ---- csr_aggregate ----
void csr_mean_aggregate_fwd(const Tensor&, const Tensor&, const CsrAggregateIndex&,
                            CsrAggregateShape) {
  no_cuda("csr_mean_aggregate");
}
void csr_mean_aggregate_bwd(const Tensor&, const Tensor&, const CsrAggregateIndex&,
                            CsrAggregateShape, const Tensor&) {
  no_cuda("csr_mean_aggregate_backward");
}

// ---- sage_conv ----
void sage_conv_fwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                   int64_t, const Tensor&, const Tensor&, const Tensor&, const LinearActParams&) {
  no_cuda("sage_conv");
}

// ---- optim ----
void optim_step(const std::vector<OptimTensorDesc>&, const void*, const std::vector<const void*>&,
                const OptimStepParams&, int) {
  no_cuda("optim_step");
}

// ---- conv ----
void conv2d_fwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const ConvShape&) {
  no_cuda("conv2d");
}
void conv2d_bwd_data(const Tensor&, const Tensor&, const Tensor&, const ConvShape&) {
  no_cuda("conv2d_backward_data");
}
void conv2d_bwd_weight(const Tensor&, const Tensor&, const Tensor&, const ConvShape&) {
  no_cuda("conv2d_backward_weight");
}
void conv2d_hand(ConvDir, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                 const ConvShape&) {
  no_cuda("conv2d");
}
void conv2d_cudnn(ConvDir, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                  const ConvShape&) {
  no_cuda("conv2d");
}
const char* conv2d_hand_kernel_name(ConvDir, const ConvShape&) {
  no_cuda("conv2d");
}

// ---- pool ----
void max_pool2d_fwd(const Tensor&, const Tensor&, const Tensor&, const PoolShape&, FusedAct,
                    double) {
  no_cuda("max_pool2d");
}
void max_pool2d_bwd(const Tensor&, const Tensor&, const Tensor&, const PoolShape&, const Tensor&,
                    FusedAct, double) {
  no_cuda("max_pool2d_backward");
}
void avg_pool2d_fwd(const Tensor&, const Tensor&, const PoolShape&) { no_cuda("avg_pool2d"); }
void avg_pool2d_bwd(const Tensor&, const Tensor&, const PoolShape&) {
  no_cuda("avg_pool2d_backward");
}
void adaptive_avg_pool2d_fwd(const Tensor&, const Tensor&, const PoolShape&) {
  no_cuda("adaptive_avg_pool2d");
}
void adaptive_avg_pool2d_bwd(const Tensor&, const Tensor&, const PoolShape&) {
  no_cuda("adaptive_avg_pool2d_backward");
}
void upsample2d_fwd(const Tensor&, const Tensor&, const PoolShape&, UpsampleMode, bool) {
  no_cuda("upsample2d");
}
void upsample2d_bwd(const Tensor&, const Tensor&, const PoolShape&, UpsampleMode, bool) {
  no_cuda("upsample2d_backward");
}

// ---- norm ----
void norm_fwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
              const Tensor&, const Tensor&, const Tensor&, const NormShape&, const NormParams&) {
  no_cuda("norm");
}
void norm_fwd_stats(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                    const Tensor&, const Tensor&, const Tensor&, const NormShape&,
                    const NormParams&) {
  no_cuda("norm");
}
void norm_bwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
              const Tensor&, const Tensor&, const Tensor&, const NormShape&, bool) {
  no_cuda("norm_backward");
}
void dropout_apply(const Tensor&, const Tensor&, const DropoutParams&) { no_cuda("dropout"); }

// ---- fused (linear_act, distances) and multi_copy ----
void linear_act_fwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                    const LinearActParams&) {
  no_cuda("linear_act");
}
void linear_act_bwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                    const Tensor&, const Tensor&, const LinearActParams&) {
  no_cuda("linear_act_backward");
}
void sage_linear_fwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                     const Tensor&, const LinearActParams&) {
  no_cuda("sage_linear");
}
void bias_act(const Tensor&, const Tensor&, const LinearActParams&) { no_cuda("sage_linear"); }
void act_bias_grad(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                   const LinearActParams&) {
  no_cuda("sage_linear_backward");
}
void distance_fwd(const Tensor&, const Tensor&, const Tensor&, DistanceKind k) {
  no_cuda(distance_name(k));
}
void distance_bwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                  DistanceKind k) {
  no_cuda(distance_name(k));
}
void it3_head_fwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                  const std::vector<Tensor>&,
                  const std::vector<Tensor>&, const It3HeadParams&) {
  no_cuda("it3_head_loss");
}
void it3_head_bwd(const std::vector<Tensor>&, const Tensor&, const Tensor&, const Tensor&,
                  const Tensor&, const Tensor&, const Tensor&, const std::vector<Tensor>&,
                  const std::vector<Tensor>&, const It3HeadParams&) {
  no_cuda("it3_head_loss_backward");
}
bool it3_head_staged(const It3HeadParams&, int, bool) { no_cuda("it3_head_loss"); }
void multi_copy(const void*, int64_t, int64_t, int) { no_cuda("multi_copy"); }
FusedMlpLaunch fused_mlp_adapt(const FusedMlpAdaptParams&, int) { no_cuda("fused_mlp_adapt"); }
int fused_mlp_adapt_grid(const FusedMlpAdaptParams&, int) { no_cuda("fused_mlp_adapt"); }
int fused_mlp_cluster_blocks(const FusedMlpAdaptParams&, int) { no_cuda("fused_mlp_adapt"); }

}  // namespace idem::cuda
