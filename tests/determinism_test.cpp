// Deterministic mode (core/determinism.h, docs/reliability.md): two training runs with the same
// seed on the same machine give bit-identical losses and weights, on the CPU (in one process
// and across two processes) and on the GPU (hand-written kernels, and cuBLAS/cuDNN where
// built). And the CUDA sources use no float atomics unless guarded by deterministic().
#include "core/determinism.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/nn_functions.h"
#include "core/kernels/conv.h"
#include "core/kernels/matmul.h"
#include "core/kernels/runtime.h"
#include "layers/activation.h"
#include "layers/checkpoint.h"
#include "layers/containers.h"
#include "layers/conv.h"
#include "layers/flatten.h"
#include "layers/gnn.h"
#include "layers/linear.h"
#include "layers/norm.h"
#include "layers/optim.h"
#include "layers/pool.h"
#include "tests/test_util.h"

namespace idem {
namespace {

namespace fs = std::filesystem;
using testing::read_bytes;
using testing::TempDir;

// What a run leaves behind: every step's loss as raw bytes, and the final checkpoint's bytes.
struct RunResult {
  std::string losses;
  std::string checkpoint;
};

// A small CNN (conv, batch norm, pooling, linear; cross-entropy, Adam) and a GCN (segment sums;
// MSE, SGD with momentum) trained for a few steps from `seed`. Everything random is drawn from
// the seed: weights, data, dropout masks.
RunResult train_run(uint64_t seed, Device dev, const std::string& ckpt_path) {
  DeterministicGuard det;
  RunResult r;
  auto log_loss = [&](const Tensor& loss) {
    const float v = static_cast<float>(loss.item());
    r.losses.append(reinterpret_cast<const char*>(&v), sizeof v);
  };

  Sequential cnn;
  cnn.emplace<Conv2d>(3, 8, 3, Conv2dOptions{1, 1}, Options{}, seed + 1);
  cnn.emplace<BatchNorm2d>(8);
  cnn.emplace<ReLU>();
  cnn.emplace<MaxPool2d>(2);
  cnn.emplace<Conv2d>(8, 8, 3, Conv2dOptions{1, 1}, Options{}, seed + 2);
  cnn.emplace<ReLU>();
  cnn.emplace<Flatten>();
  cnn.emplace<Linear>(8 * 4 * 4, 5, true, Options{}, seed + 3);
  cnn.to(dev);
  Adam adam(cnn.parameters(), AdamOptions{});

  GCNConv gcn1(6, 16, true, true, {}, seed + 4), gcn2(16, 2, true, true, {}, seed + 5);
  gcn1.to(dev);
  gcn2.to(dev);
  std::vector<Tensor> gparams = gcn1.parameters();
  for (const Tensor& p : gcn2.parameters()) gparams.push_back(p);
  SGDOptions so;
  so.lr = 0.05;
  so.momentum = 0.9;
  SGD sgd(gparams, so);
  // A ring with chords: every node has several in-edges, so the segment sums really sum.
  std::vector<int64_t> src, dst;
  const int64_t V = 40;
  for (int64_t v = 0; v < V; ++v)
    for (int64_t d : {1, 3, 7}) {
      src.push_back(v);
      dst.push_back((v + d) % V);
    }
  const Graph g = Graph::from_edges(V, src, dst, dev);

  for (int step = 0; step < 6; ++step) {
    const uint64_t s = seed * 1000 + static_cast<uint64_t>(step);
    Tensor x = randn({16, 3, 8, 8}, s, {DType::f32, dev});
    Tensor y = ops::cast(mul(rand({16}, s + 7, {DType::f32, dev}), 5.0), DType::i64);
    adam.zero_grad();
    Tensor loss = cross_entropy(cnn.forward(dropout(x, 0.1, true, s + 9)), y);
    loss.backward();
    adam.step();
    log_loss(loss);

    Tensor nx = randn({V, 6}, s + 11, {DType::f32, dev});
    Tensor ny = randn({V, 2}, s + 13, {DType::f32, dev});
    sgd.zero_grad();
    Tensor gl = mse_loss(gcn2.forward(relu(gcn1.forward(nx, g)), g), ny);
    gl.backward();
    sgd.step();
    log_loss(gl);
  }
  NamedTensors all;
  for (const auto& [n, t] : cnn.state_dict()) all.emplace_back("cnn." + n, t);
  for (const auto& [n, t] : gcn1.state_dict()) all.emplace_back("gcn1." + n, t);
  for (const auto& [n, t] : gcn2.state_dict()) all.emplace_back("gcn2." + n, t);
  save_safetensors(ckpt_path, all);
  r.checkpoint = read_bytes(ckpt_path);
  return r;
}

// The first differing loss, for a readable failure.
std::string first_difference(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return "different lengths";
  for (size_t i = 0; i + 4 <= a.size(); i += 4)
    if (std::memcmp(a.data() + i, b.data() + i, 4) != 0) {
      float x, y;
      std::memcpy(&x, a.data() + i, 4);
      std::memcpy(&y, b.data() + i, 4);
      std::ostringstream os;
      os << "loss " << i / 4 << ": " << x << " vs " << y;
      return os.str();
    }
  return "identical";
}

void expect_identical_runs(Device dev, const std::string& what) {
  TempDir dir("idem_determinism");
  const RunResult a = train_run(42, dev, dir.file("a.safetensors"));
  const RunResult b = train_run(42, dev, dir.file("b.safetensors"));
  EXPECT_EQ(a.losses.size(), 12 * sizeof(float)) << what;
  EXPECT_TRUE(a.losses == b.losses) << what << ": " << first_difference(a.losses, b.losses);
  EXPECT_TRUE(a.checkpoint == b.checkpoint) << what << ": the final weights differ";
  // A different seed really gives a different run (the comparison is not vacuous).
  const RunResult c = train_run(43, dev, dir.file("c.safetensors"));
  EXPECT_FALSE(a.losses == c.losses) << what;
}

TEST(Determinism, SwitchAndGuard) {
  const bool initial = deterministic();
  {
    DeterministicGuard on;
    EXPECT_TRUE(deterministic());
    {
      DeterministicGuard off(false);
      EXPECT_FALSE(deterministic());
    }
    EXPECT_TRUE(deterministic());
  }
  EXPECT_EQ(deterministic(), initial);
}

TEST(Determinism, CpuTwoRunsInOneProcessAreBitIdentical) {
  expect_identical_runs(Device::cpu(), "cpu");
}

// The second run in a fresh process (fork before anything of it ran): no state carried over in
// caches or allocators can make the runs agree by accident.
TEST(Determinism, CpuRunsInTwoProcessesAreBitIdentical) {
  TempDir dir("idem_determinism");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    int code = 0;
    try {
      const RunResult r = train_run(42, Device::cpu(), dir.file("child.safetensors"));
      std::ofstream(dir.file("child.losses"), std::ios::binary) << r.losses;
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  const RunResult mine = train_run(42, Device::cpu(), dir.file("parent.safetensors"));
  const std::string child_losses = read_bytes(dir.file("child.losses"));
  EXPECT_TRUE(mine.losses == child_losses) << first_difference(mine.losses, child_losses);
  EXPECT_TRUE(mine.checkpoint == read_bytes(dir.file("child.safetensors")));
}

TEST(Determinism, CudaTwoRunsAreBitIdenticalWithEveryBackend) {
  IDEM_REQUIRE_GPU();
  const GemmBackend gemm = gemm_backend();
  const ConvBackend conv = conv_backend();
  set_gemm_backend(GemmBackend::hand);
  set_conv_backend(ConvBackend::hand);
  expect_identical_runs(Device::cuda(0), "cuda, hand-written kernels");
#if defined(IDEM_WITH_CUBLAS)
  set_gemm_backend(GemmBackend::cublas);
  expect_identical_runs(Device::cuda(0), "cuda, cuBLAS matmul");
#endif
#if defined(IDEM_WITH_CUDNN)
  set_conv_backend(ConvBackend::cudnn);
  expect_identical_runs(Device::cuda(0), "cuda, cuDNN conv (+ cuBLAS when built)");
#endif
  set_gemm_backend(gemm);
  set_conv_backend(conv);
}

// No float atomics (docs/design.md#cuda-rules). Any CUDA atomic (atomicAdd, atomicCAS, ...) in
// cuda/ must sit in a file that consults deterministic() (so a faster non-deterministic variant
// runs only when the switch is off), or carry the marker "deterministic: integer" on its line
// (an integer counter, whose result does not depend on the order).
TEST(Determinism, CudaSourcesUseNoUnguardedAtomics) {
  const fs::path root = fs::path(__FILE__).parent_path().parent_path();
  const fs::path cuda_dir = root / "cuda";
  if (!fs::is_directory(cuda_dir)) GTEST_SKIP() << "no source tree at " << cuda_dir;
  const std::regex atomic_call(R"(\batomic(Add|Sub|Max|Min|Exch|CAS|Inc|Dec|And|Or|Xor)\w*\s*\()");
  int files = 0;
  std::vector<std::string> offenders;
  for (const auto& e : fs::recursive_directory_iterator(cuda_dir)) {
    const std::string ext = e.path().extension().string();
    if (ext != ".cu" && ext != ".cuh" && ext != ".cpp" && ext != ".h") continue;
    ++files;
    const std::string text = read_bytes(e.path().string());
    if (text.find("deterministic()") != std::string::npos) continue;  // a guarded variant
    std::istringstream lines(text);
    std::string line;
    for (int n = 1; std::getline(lines, line); ++n)
      if (std::regex_search(line, atomic_call) &&
          line.find("deterministic: integer") == std::string::npos)
        offenders.push_back(e.path().string() + ":" + std::to_string(n) + ": " + line);
  }
  EXPECT_GT(files, 0);
  for (const std::string& o : offenders)
    ADD_FAILURE() << "CUDA atomic without a deterministic() guard: " << o;
}

}  // namespace
}  // namespace idem
