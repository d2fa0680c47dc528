// CUDA graphs: record a step (a forward, an IT³ adaptation step, a training step) once and replay
// it with one launch. A small step is bound by kernel-launch overhead (~12 µs of host
// time per eager op against ~1.2 µs per kernel inside a graph), so this is where its speed is.
// Implemented in cuda/cuda_graph.cu; without CUDA (cuda/no_cuda.cpp) every entry point throws.
//
// How to use it:
//
//   cuda::CaptureStream stream(0);   // idem's current stream is now a private side stream
//   Tensor x = ...;                  // static input: created before, refilled before each replay
//   auto step = [&] { y = model.forward(x); };
//   step(); step();                  // warm-up on the same stream: fills the allocator's cache,
//                                    // creates cuBLAS handles, uploads tables... (twice: the
//                                    // capture allocates a new y while the old one is alive)
//   cuda::Graph g = cuda::Graph::capture(step, stream);
//   for (...) {
//     x.copy_(next_batch);           // new values into the same storage
//     g.replay();                    // one launch; y is rewritten in place
//     use(y);                        // reading y on the host synchronizes, as usual
//   }
//
// Rules (the allocator's side is written out in cuda/allocator.h, rule 4):
// - Everything fn issues through idem goes to current_stream(), which during capture() is the
//   capture stream. Raw CUDA calls inside fn must use that stream too.
// - Warm up before capturing, on the capture stream (PyTorch's lesson: a warm-up on
//   another stream leaves state tied to that stream). Inside a capture the allocator never calls
//   cudaMalloc: a request that finds no cached block throws "allocation of N bytes during CUDA
//   graph capture missed the cache; ...". Eager runs of the same step fill the cache: two when
//   the step's outputs are kept between runs (y = step()), since the capture then needs a block
//   for the new y while the old y still holds one. (Blocks cached by any stream of the device
//   serve a capture, so a warm-up on the default stream also fills it; the capture stream is
//   still the recommended place.)
// - No host synchronization inside fn: synchronize(), Tensor::item(), to_vector(), to(cpu),
//   building tensors from host data and empty_cache() throw idem::Error naming the operation
//   (the capture fails; capture() reports it prefixed with "[cuda graph capture]"). Lazy
//   one-time set-up that synchronizes (cuBLAS handle creation, cuDNN algorithm search) must have
//   happened in the warm-up.
// - Shapes, pointers and scalars are frozen at capture: a replay reads the same input tensors
//   and writes the same output tensors. Copy new inputs into the inputs (copy_), never replace
//   them, and keep every tensor the graph touches alive as long as the graph. Host-side values
//   baked into kernel arguments (a learning rate, Adam's bias correction of step t, a random
//   seed or offset) are replayed as captured: capture a step whose arguments do not change, or
//   capture again when they do.
// - Tensors allocated inside fn that outlive it (outputs, new gradients) keep their memory, and
//   every replay rewrites them: that is how a caller reads the graph's results. Temporaries
//   freed inside fn stay in the graph's private memory pool until the Graph is destroyed.
// - One capture per device at a time, and no other idem work on that device during it.
// - Replays run in order on current_stream(); do not replay one graph on two streams at once.
// - launch_count() (core/kernels/runtime.h) counts a replay as one operation; num_nodes() says
//   what runs inside it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

namespace idem::cuda {

// A private side stream that is idem's current stream (for its device) while this object lives.
// Create it before the warm-up, run the warm-up and the capture inside its lifetime. Objects
// must end in reverse order of creation (they nest like scopes).
class CaptureStream {
 public:
  // Creates a non-blocking stream on `device`, makes it wait for the work already queued on the
  // current stream (so it sees the inputs written there), and makes it current.
  // requires: 0 <= device < device_count(); throws idem::Error otherwise.
  explicit CaptureStream(int device = 0);
  // Waits for the stream, hands the memory cached under it to the previous stream, makes the
  // previous stream current again and destroys the stream. Never throws.
  ~CaptureStream();
  CaptureStream(const CaptureStream&) = delete;
  CaptureStream& operator=(const CaptureStream&) = delete;

  int device() const { return device_; }
  // The cudaStream_t, as an opaque pointer (this header does not include the CUDA runtime).
  void* handle() const { return stream_; }

 private:
  int device_ = 0;
  void* stream_ = nullptr;
  void* previous_ = nullptr;
};

// An instantiated CUDA graph and the private memory pool its kernels use. Move-only.
class Graph {
 public:
  // An empty graph: replay() throws until a captured graph is moved in.
  Graph() = default;
  // Waits for the device (a replay may still be running), destroys the graph and returns its
  // pool to the allocator's cache. Never throws.
  ~Graph();
  Graph(Graph&& other) noexcept;
  Graph& operator=(Graph&& other) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Runs fn once under stream capture on a private side stream (made idem's current stream for
  // the duration and restored after, also on exceptions) and instantiates the graph. For a step
  // that allocates, prefer the overload below, with a warm-up on the same stream first.
  // Throws idem::Error "[cuda graph capture] ..." when fn throws (its message is kept), when fn
  // does something a capture forbids, or when the instantiation fails; the stream and the
  // allocator remain usable after any of these.
  static Graph capture(const std::function<void()>& fn, int device = 0);
  // The same on `stream`, which must be idem's current stream (the innermost live
  // CaptureStream). Warm up inside the stream's lifetime before calling this.
  static Graph capture(const std::function<void()>& fn, const CaptureStream& stream);

  // Launches the graph on current_stream() of its device; never waits for the GPU.
  void replay();

  bool valid() const { return exec_ != nullptr; }
  int device() const { return device_; }
  // Kernel, memcpy and memset nodes (child graphs included): the GPU operations of one replay.
  size_t num_nodes() const { return num_nodes_; }
  // Kernel nodes alone: exactly the kernels one replay runs (cuBLAS/CUB kernels included).
  size_t num_kernel_nodes() const { return num_kernel_nodes_; }

 private:
  void reset() noexcept;

  int device_ = -1;
  void* exec_ = nullptr;  // cudaGraphExec_t
  uint64_t pool_ = 0;     // the allocator's private pool of this graph
  size_t num_nodes_ = 0;
  size_t num_kernel_nodes_ = 0;
};

}  // namespace idem::cuda
