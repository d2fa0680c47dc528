// cuDNN comparison path for convolution (cuda::conv2d_cudnn); the hand-written kernels are in
// cuda/kernels/conv.cu. Built only with IDEM_CUDNN (conv.cu supplies a throwing fallback
// otherwise).
//
// One cudnnHandle_t per device, bound to idem's current stream on every call. Descriptors are
// made per call (cheap). The algorithm of each (direction, shape) is picked once with the
// cudnnGet*_v7 heuristics and cached, so repeated calls spend no host time on heuristics:
// candidates in heuristic order, deterministic ones first for the backward directions, tensor
// core (TF32) math excluded — the descriptor's math type is CUDNN_FMA_MATH, so the comparison
// with the FP32 FFMA kernels is like for like. A candidate that reports
// a NOT_SUPPORTED status is skipped; any other failure throws with the cuDNN status name.
// Workspace comes from idem::empty (the caching allocator): no cudaMalloc in steady state.
#include <cudnn.h>

#include <climits>
#include <map>
#include <mutex>
#include <vector>

#include "core/kernels/conv.h"
#include "core/kernels/runtime.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

const char* op_name(ConvDir dir) {
  switch (dir) {
    case ConvDir::fwd:
      return "conv2d";
    case ConvDir::bwd_data:
      return "conv2d_backward_data";
    case ConvDir::bwd_weight:
      return "conv2d_backward_weight";
  }
  return "conv2d";
}

[[noreturn]] void throw_cudnn(const char* op, const char* call, cudnnStatus_t s) {
  fail(op, "cuDNN error ", cudnnGetErrorString(s), " (status ", static_cast<int>(s), ") in ", call);
}

#define IDEM_CUDNN_CHECK(op, call)                                          \
  do {                                                                      \
    cudnnStatus_t idem_st_ = (call);                                        \
    if (idem_st_ != CUDNN_STATUS_SUCCESS) throw_cudnn(op, #call, idem_st_); \
  } while (0)

// Handles are never destroyed: at static-destruction time the CUDA context may be gone.
cudnnHandle_t handle_for(int device, const char* op) {
  static std::mutex mu;
  static std::vector<cudnnHandle_t> handles;  // indexed by device
  std::lock_guard<std::mutex> lock(mu);
  if (device >= static_cast<int>(handles.size())) handles.resize(device + 1, nullptr);
  if (!handles[device]) {
    cudnnHandle_t h = nullptr;
    IDEM_CUDNN_CHECK(op, cudnnCreate(&h));
    handles[device] = h;
  }
  return handles[device];
}

// ---- RAII descriptors (destructors never throw) ----
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(const char* op, int n, int c, int h, int w) {
    IDEM_CUDNN_CHECK(op, cudnnCreateTensorDescriptor(&d));
    IDEM_CUDNN_CHECK(
        op, cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
  }
  ~TensorDesc() {
    if (d) cudnnDestroyTensorDescriptor(d);
  }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};

struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc(const char* op, int k, int c, int h, int w) {
    IDEM_CUDNN_CHECK(op, cudnnCreateFilterDescriptor(&d));
    IDEM_CUDNN_CHECK(
        op, cudnnSetFilter4dDescriptor(d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, k, c, h, w));
  }
  ~FilterDesc() {
    if (d) cudnnDestroyFilterDescriptor(d);
  }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};

struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc(const char* op, const ConvShape& s) {
    IDEM_CUDNN_CHECK(op, cudnnCreateConvolutionDescriptor(&d));
    IDEM_CUDNN_CHECK(op, cudnnSetConvolution2dDescriptor(
                             d, static_cast<int>(s.p.pad_h), static_cast<int>(s.p.pad_w),
                             static_cast<int>(s.p.stride_h), static_cast<int>(s.p.stride_w),
                             static_cast<int>(s.p.dilation_h), static_cast<int>(s.p.dilation_w),
                             CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    IDEM_CUDNN_CHECK(op, cudnnSetConvolutionGroupCount(d, static_cast<int>(s.p.groups)));
    IDEM_CUDNN_CHECK(op, cudnnSetConvolutionMathType(d, CUDNN_FMA_MATH));  // FP32, no TF32
  }
  ~ConvDesc() {
    if (d) cudnnDestroyConvolutionDescriptor(d);
  }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

struct Descs {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  Descs(const char* op, const ConvShape& s)
      : x(op, static_cast<int>(s.N), static_cast<int>(s.C), static_cast<int>(s.H),
          static_cast<int>(s.W)),
        y(op, static_cast<int>(s.N), static_cast<int>(s.O), static_cast<int>(s.P),
          static_cast<int>(s.Q)),
        w(op, static_cast<int>(s.O), static_cast<int>(s.Cg()), static_cast<int>(s.R),
          static_cast<int>(s.S)),
        conv(op, s) {}
};

// cuDNN 9 groups statuses by thousands: 3000-3999 are the NOT_SUPPORTED family.
bool not_supported(cudnnStatus_t st) {
  const int v = static_cast<int>(st);
  return v >= 3000 && v < 4000;
}

// ---- the algorithm cache: (device, direction, shape) -> algorithm ----
std::vector<int64_t> cache_key(int device, ConvDir dir, const ConvShape& s) {
  return {device,
          static_cast<int64_t>(dir),
          s.N,
          s.C,
          s.H,
          s.W,
          s.O,
          s.R,
          s.S,
          s.P,
          s.Q,
          s.p.stride_h,
          s.p.stride_w,
          s.p.pad_h,
          s.p.pad_w,
          s.p.dilation_h,
          s.p.dilation_w,
          s.p.groups};
}
std::mutex& cache_mu() {
  static std::mutex mu;
  return mu;
}
std::map<std::vector<int64_t>, int>& algo_cache() {
  static std::map<std::vector<int64_t>, int> cache;
  return cache;
}

// Heuristic candidates: successful, not tensor-op math, and deterministic (no run-to-run
// differences; docs/design.md#cuda-rules), in cuDNN's order.
template <typename Perf>
std::vector<int> rank_candidates(const Perf* perf, int count) {
  std::vector<int> det;
  for (int i = 0; i < count; ++i) {
    const Perf& p = perf[i];
    if (p.status != CUDNN_STATUS_SUCCESS) continue;
    if (p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
      continue;
    if (p.determinism == CUDNN_DETERMINISTIC) det.push_back(static_cast<int>(p.algo));
  }
  return det;
}

std::vector<int> candidates(cudnnHandle_t h, ConvDir dir, const Descs& d, const char* op) {
  int returned = 0;
  switch (dir) {
    case ConvDir::fwd: {
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      IDEM_CUDNN_CHECK(op, cudnnGetConvolutionForwardAlgorithm_v7(h, d.x.d, d.w.d, d.conv.d, d.y.d,
                                                                  CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                                  &returned, perf));
      return rank_candidates(perf, returned);
    }
    case ConvDir::bwd_data: {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      IDEM_CUDNN_CHECK(op, cudnnGetConvolutionBackwardDataAlgorithm_v7(
                               h, d.w.d, d.y.d, d.conv.d, d.x.d,
                               CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf));
      return rank_candidates(perf, returned);
    }
    case ConvDir::bwd_weight: {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      IDEM_CUDNN_CHECK(op, cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                               h, d.x.d, d.y.d, d.conv.d, d.w.d,
                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf));
      return rank_candidates(perf, returned);
    }
  }
  return {};
}

// Runs one direction with `algo`; returns the status of the workspace query or of the call
// (a NOT_SUPPORTED status lets the caller try the next candidate).
cudnnStatus_t run_algo(cudnnHandle_t h, ConvDir dir, const Descs& d, int algo, const Tensor& out,
                       const Tensor& a, const Tensor& b) {
  const float one = 1.f, zero = 0.f;
  size_t bytes = 0;
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  switch (dir) {
    case ConvDir::fwd:
      st = cudnnGetConvolutionForwardWorkspaceSize(
          h, d.x.d, d.w.d, d.conv.d, d.y.d, static_cast<cudnnConvolutionFwdAlgo_t>(algo), &bytes);
      break;
    case ConvDir::bwd_data:
      st = cudnnGetConvolutionBackwardDataWorkspaceSize(
          h, d.w.d, d.y.d, d.conv.d, d.x.d, static_cast<cudnnConvolutionBwdDataAlgo_t>(algo),
          &bytes);
      break;
    case ConvDir::bwd_weight:
      st = cudnnGetConvolutionBackwardFilterWorkspaceSize(
          h, d.x.d, d.y.d, d.conv.d, d.w.d, static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo),
          &bytes);
      break;
  }
  if (st != CUDNN_STATUS_SUCCESS) return st;
  Tensor ws;  // released to the cache after the call; later users are ordered on the stream
  if (bytes > 0)
    ws = empty({static_cast<int64_t>((bytes + 3) / 4)}, Options{DType::f32, out.device()});
  void* wsp = bytes > 0 ? ws.raw_data() : nullptr;
  cudnnStatus_t ran = CUDNN_STATUS_BAD_PARAM;
  switch (dir) {
    case ConvDir::fwd:  // out = y, a = x, b = w
      ran = cudnnConvolutionForward(h, &one, d.x.d, a.data<float>(), d.w.d, b.data<float>(),
                                     d.conv.d, static_cast<cudnnConvolutionFwdAlgo_t>(algo), wsp,
                                     bytes, &zero, d.y.d, out.data<float>());
      break;
    case ConvDir::bwd_data:  // out = dx, a = dy, b = w
      ran = cudnnConvolutionBackwardData(h, &one, d.w.d, b.data<float>(), d.y.d, a.data<float>(),
                                          d.conv.d,
                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), wsp,
                                          bytes, &zero, d.x.d, out.data<float>());
      break;
    case ConvDir::bwd_weight:  // out = dw, a = dy, b = x
      ran = cudnnConvolutionBackwardFilter(h, &one, d.x.d, b.data<float>(), d.y.d, a.data<float>(),
                                            d.conv.d,
                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), wsp,
                                            bytes, &zero, d.w.d, out.data<float>());
      break;
  }
  if (ran == CUDNN_STATUS_SUCCESS) count_gpu_ops();  // one cuDNN call (it may launch several)
  return ran;
}

}  // namespace

void conv2d_cudnn(ConvDir dir, const Tensor& out, const Tensor& a, const Tensor& b,
                  const Tensor& bias, const ConvShape& s) {
  const char* op = op_name(dir);
  if (out.numel() == 0) return;
  for (int64_t v : {s.N, s.C, s.H, s.W, s.O, s.R, s.S, s.P, s.Q})
    IDEM_CHECK(v <= INT_MAX, op, "extent ", v, " exceeds cuDNN's 32-bit descriptor range");
  const int device = out.device().index;
  set_device(device);
  cudnnHandle_t h = handle_for(device, op);
  IDEM_CUDNN_CHECK(op, cudnnSetStream(h, current_stream()));
  Descs d(op, s);

  // conv_transpose2d with output_padding >= stride hands us a P (or Q) below the conv formula;
  // cuDNN insists on its own output extent, so that rare geometry runs on the hand kernels.
  int on = 0, oc = 0, oh = 0, ow = 0;
  IDEM_CUDNN_CHECK(
      op, cudnnGetConvolution2dForwardOutputDim(d.conv.d, d.x.d, d.w.d, &on, &oc, &oh, &ow));
  if (on != s.N || oc != s.O || oh != s.P || ow != s.Q) {
    conv2d_hand(dir, out, a, b, bias, s);
    return;
  }

  const std::vector<int64_t> key = cache_key(device, dir, s);
  int algo = -1;
  {
    std::lock_guard<std::mutex> lock(cache_mu());
    auto it = algo_cache().find(key);
    if (it != algo_cache().end()) algo = it->second;
  }
  if (algo >= 0) {
    const cudnnStatus_t st = run_algo(h, dir, d, algo, out, a, b);
    if (st != CUDNN_STATUS_SUCCESS) throw_cudnn(op, "the cached convolution algorithm", st);
  } else {
    const std::vector<int> cands = candidates(h, dir, d, op);
    cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
    for (int c : cands) {
      last = run_algo(h, dir, d, c, out, a, b);
      if (last == CUDNN_STATUS_SUCCESS) {
        algo = c;
        break;
      }
      if (!not_supported(last)) throw_cudnn(op, "cudnnConvolution (heuristic candidate)", last);
    }
    if (algo < 0)
      fail(op, "cuDNN offers no deterministic FP32 (non-tensor-op) algorithm for x (", s.N, "x", s.C, "x", s.H,
           "x", s.W, "), w (", s.O, "x", s.Cg(), "x", s.R, "x", s.S, "): ", cands.size(),
           " candidates, last status ", cudnnGetErrorString(last));
    std::lock_guard<std::mutex> lock(cache_mu());
    algo_cache()[key] = algo;
  }

  if (dir == ConvDir::fwd && bias.defined()) {
    // y += bias broadcast over (N, ·, P, Q)
    TensorDesc bd(op, 1, static_cast<int>(s.O), 1, 1);
    const float one = 1.f;
    IDEM_CUDNN_CHECK(
        op, cudnnAddTensor(h, &one, bd.d, bias.data<float>(), &one, d.y.d, out.data<float>()));
    count_gpu_ops();
  }
}

}  // namespace idem::cuda
