// CUDA graph capture and replay (core/kernels/cuda_graph.h). The allocator's part — no
// cudaMalloc inside a capture, a private pool per graph — is in cuda/allocator.cu; its rules
// are written out in cuda/allocator.h.
#include <cuda_runtime.h>

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "core/kernels/cuda_graph.h"
#include "core/kernels/runtime.h"
#include "cuda/allocator.h"
#include "cuda/common.cuh"

namespace idem::cuda {

namespace {

constexpr const char* kCapture = "cuda graph capture";

cudaStream_t as_stream(void* p) {
  return static_cast<cudaStream_t>(p);
}

struct NodeCounts {
  size_t all = 0;
  size_t kernels = 0;
};

// Kernel, memcpy and memset nodes of g, descending into child graphs (a library may capture
// its work as one).
void count_nodes(cudaGraph_t g, NodeCounts& n) {
  size_t count = 0;
  IDEM_CUDA_CHECK(kCapture, cudaGraphGetNodes(g, nullptr, &count));
  std::vector<cudaGraphNode_t> nodes(count);
  if (count > 0) IDEM_CUDA_CHECK(kCapture, cudaGraphGetNodes(g, nodes.data(), &count));
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType type;
    IDEM_CUDA_CHECK(kCapture, cudaGraphNodeGetType(node, &type));
    switch (type) {
      case cudaGraphNodeTypeKernel:
        n.kernels += 1;
        n.all += 1;
        break;
      case cudaGraphNodeTypeMemcpy:
      case cudaGraphNodeTypeMemset:
        n.all += 1;
        break;
      case cudaGraphNodeTypeGraph: {
        cudaGraph_t child = nullptr;
        IDEM_CUDA_CHECK(kCapture, cudaGraphChildGraphNodeGetGraph(node, &child));
        count_nodes(child, n);
        break;
      }
      default:
        break;  // events, empty nodes...: no work of their own
    }
  }
}

// Ends a capture that will not be used and drops what it recorded. Never throws.
void abandon_capture(cudaStream_t s) noexcept {
  cudaGraph_t g = nullptr;
  (void)cudaStreamEndCapture(s, &g);
  if (g) (void)cudaGraphDestroy(g);
  (void)cudaGetLastError();
}

// Stops the allocator's routing to the pool of a failed capture on stream s and returns the
// pool to s's cache. Nothing recorded ever ran, and the capture began after a device
// synchronization, so every block is idle.
void drop_pool(int device, uint64_t pool, cudaStream_t s) noexcept {
  detail::end_capture(device, s);
  detail::destroy_pool(device, pool);
}

}  // namespace

// ---- CaptureStream ----

CaptureStream::CaptureStream(int device) : device_(device) {
  detail::require_device(device, "cuda CaptureStream");
  IDEM_CHECK(!detail::capture_active(device), "cuda CaptureStream",
             "cannot create a stream during a CUDA graph capture on cuda:", device);
  set_device(device);
  cudaStream_t prev = current_stream();
  cudaStream_t s = nullptr;
  IDEM_CUDA_CHECK("cuda CaptureStream", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  // The new stream must see what the current stream has queued (inputs, parameters): make it
  // wait for an event there instead of synchronizing the host.
  cudaEvent_t ev = nullptr;
  cudaError_t err = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
  if (err == cudaSuccess) err = cudaEventRecord(ev, prev);
  if (err == cudaSuccess) err = cudaStreamWaitEvent(s, ev, 0);
  if (ev) (void)cudaEventDestroy(ev);  // safe: the wait is already queued
  if (err != cudaSuccess) {
    (void)cudaStreamDestroy(s);
    throw_cuda_error("cuda CaptureStream", err, __FILE__, __LINE__);
  }
  set_current_stream(s);
  stream_ = s;
  previous_ = prev;
}

CaptureStream::~CaptureStream() {
  cudaStream_t s = as_stream(stream_);
  if (cudaSetDevice(device_) != cudaSuccess) (void)cudaGetLastError();
  // Everything queued on s must finish before its cached blocks go to the previous stream's
  // lists (rule 1 of cuda/allocator.h) and before s is destroyed.
  if (cudaStreamSynchronize(s) != cudaSuccess) (void)cudaGetLastError();
  detail::retarget_stream(device_, s, as_stream(previous_));
  try {
    set_current_stream(as_stream(previous_));
  } catch (...) {
    // cudaGetDevice failed: the process's CUDA state is broken; nothing sensible is left to do.
  }
  if (cudaStreamDestroy(s) != cudaSuccess) (void)cudaGetLastError();
}

// ---- Graph ----

Graph::~Graph() {
  reset();
}

Graph::Graph(Graph&& other) noexcept
    : device_(other.device_),
      exec_(std::exchange(other.exec_, nullptr)),
      pool_(std::exchange(other.pool_, 0)),
      num_nodes_(other.num_nodes_),
      num_kernel_nodes_(other.num_kernel_nodes_) {}

Graph& Graph::operator=(Graph&& other) noexcept {
  if (this != &other) {
    reset();
    device_ = other.device_;
    exec_ = std::exchange(other.exec_, nullptr);
    pool_ = std::exchange(other.pool_, 0);
    num_nodes_ = other.num_nodes_;
    num_kernel_nodes_ = other.num_kernel_nodes_;
  }
  return *this;
}

void Graph::reset() noexcept {
  if (!exec_) return;
  if (cudaSetDevice(device_) != cudaSuccess) (void)cudaGetLastError();
  // A replay may still be writing the pool's blocks. During another capture on this device a
  // wait is illegal, and not needed: that capture began with a device synchronization, so
  // every replay launched before it is done.
  if (!detail::capture_active(device_) && cudaDeviceSynchronize() != cudaSuccess)
    (void)cudaGetLastError();
  if (cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_)) != cudaSuccess)
    (void)cudaGetLastError();
  detail::destroy_pool(device_, pool_);
  exec_ = nullptr;
  pool_ = 0;
  num_nodes_ = num_kernel_nodes_ = 0;
}

Graph Graph::capture(const std::function<void()>& fn, int device) {
  CaptureStream stream(device);  // restores the current stream when it goes, on any path
  return capture(fn, stream);
}

Graph Graph::capture(const std::function<void()>& fn, const CaptureStream& stream) {
  const int device = stream.device();
  set_device(device);
  cudaStream_t s = as_stream(stream.handle());
  IDEM_CHECK(current_stream() == s, kCapture,
             "the CaptureStream given is not idem's current stream on cuda:", device,
             " (a CaptureStream created after it is still alive)");
  // The warm-up's work must be finished, and every cached block idle, before the allocator
  // may hand cached blocks of any stream to the capture (cuda/allocator.h rule 4a).
  IDEM_CUDA_CHECK(kCapture, cudaDeviceSynchronize());
  const uint64_t pool = detail::begin_capture(device, s);
  // Global mode: a forbidden call from any thread (a cudaMalloc, a synchronization) fails
  // instead of silently running outside the graph.
  cudaError_t err = cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    drop_pool(device, pool, s);
    throw_cuda_error(kCapture, err, __FILE__, __LINE__);
  }
  try {
    fn();
  } catch (const Error& e) {
    abandon_capture(s);
    drop_pool(device, pool, s);
    fail(kCapture,
         "the captured function threw, so nothing was captured (the stream and the "
         "allocator remain usable): ",
         e.what());
  } catch (...) {
    abandon_capture(s);
    drop_pool(device, pool, s);
    throw;
  }
  cudaGraph_t g = nullptr;
  err = cudaStreamEndCapture(s, &g);
  if (err != cudaSuccess || g == nullptr) {
    (void)cudaGetLastError();
    if (g) (void)cudaGraphDestroy(g);
    drop_pool(device, pool, s);
    fail(kCapture, "the capture on cuda:", device, " failed: ", cudaGetErrorName(err), " (",
         cudaGetErrorString(err),
         "): something inside the captured function is not capturable: a host synchronization, "
         "work on the legacy default stream or on a stream that never joined the capture "
         "stream, or a cudaMalloc/cudaFree outside idem's allocator");
  }
  Graph out;
  out.device_ = device;
  out.pool_ = pool;
  detail::end_capture(device, s);  // from here on `out` owns the pool
  try {
    NodeCounts n;
    count_nodes(g, n);
    out.num_nodes_ = n.all;
    out.num_kernel_nodes_ = n.kernels;
    cudaGraphExec_t exec = nullptr;
    IDEM_CUDA_CHECK(kCapture, cudaGraphInstantiate(&exec, g, 0));
    out.exec_ = exec;
    // Upload now, so that the first replay is not also the graph's upload (which made a
    // command's first batch, and so its mean µs per batch, much slower than the later ones).
    IDEM_CUDA_CHECK(kCapture, cudaGraphUpload(exec, current_stream()));
  } catch (...) {
    (void)cudaGraphDestroy(g);
    detail::destroy_pool(device, pool);  // out.exec_ is null, so out's destructor leaves it
    out.pool_ = 0;
    throw;
  }
  (void)cudaGraphDestroy(g);  // the executable graph keeps what it needs
  return out;
}

void Graph::replay() {
  IDEM_CHECK(exec_ != nullptr, "cuda graph replay",
             "empty Graph (default-constructed or moved from): capture one first");
  set_device(device_);
  IDEM_CUDA_CHECK("cuda graph replay",
                  cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), current_stream()));
  count_gpu_ops();
}

}  // namespace idem::cuda
