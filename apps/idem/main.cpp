// idem — the command line (README.md#the-command-line, docs/tutorial.md section 4).
//
//   idem demo   [--quick|--full] [--task fmnist|tabular|airfoil] [--device cpu|cuda[:N]] [--out DIR]
//   idem train  --task fmnist|tabular|airfoil [--data PATH] [--epochs N] [--batch B] [--out RUN]
//   idem adapt  --run RUN [--method LIST] [--shift LIST] [--steps K] [--adapt-lr LR] ...
//   idem bench  it3|train|ops [--model mlp_tab|mlp_256|cnn|sage] [--batch B] [--steps K] [--json]
//   idem report --results RUN|results.csv [--out DIR] [--task T]
//   idem info
#include <cstring>
#include <iostream>
#include <sstream>

#include "apps/idem/cli.h"
#include "core/determinism.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/kernels/runtime.h"
#include "io/json.h"

#ifndef IDEM_GIT_COMMIT
#define IDEM_GIT_COMMIT "unknown"
#endif

namespace idem::cli {

std::string versions_json() {
  json::Value v = json::Value::object();
  v.set("idem", "0.1.0");
  v.set("git_commit", IDEM_GIT_COMMIT);
#if defined(__clang__)
  v.set("compiler", std::string("clang ") + __clang_version__);
#elif defined(__GNUC__)
  v.set("compiler", std::string("g++ ") + __VERSION__);
#endif
  v.set("cuda_compiled", cuda::compiled());
#if defined(IDEM_WITH_CUDNN)
  v.set("cudnn_compiled", true);
#else
  v.set("cudnn_compiled", false);
#endif
  v.set("deterministic", deterministic());
  v.set("cpu_threads", num_threads());
  if (cuda::available()) {
    const auto p = cuda::device_properties(0);
    v.set("gpu", p.name);
    v.set("cuda_runtime", std::to_string(p.runtime_version / 1000) + "." + std::to_string(p.runtime_version % 1000 / 10));
    v.set("cuda_driver", std::to_string(p.driver_version / 1000) + "." + std::to_string(p.driver_version % 1000 / 10));
  } else {
    v.set("gpu", "none");
  }
  return json::dump(v);
}

int cmd_info(int argc, char** argv) {
  Args a("info", {{"json", false, "", "print the facts as one JSON object"}}, argc, argv, 2);
  if (a.help()) {
    std::cout << "idem info: build, devices and versions.\n\n" << a.usage();
    return 0;
  }
  if (a.flag("json")) {
    std::cout << versions_json() << "\n";
    return 0;
  }
  const json::Value v = json::parse(versions_json());
  std::cout << "idem " << v.at("idem").as_string() << " (commit " << v.at("git_commit").as_string() << ")\n"
            << "compiler: " << v.at("compiler").as_string() << "\n"
            << "CUDA backend: " << (cuda::compiled() ? "compiled" : "not compiled")
            << ", cuDNN path: " << (v.at("cudnn_compiled").as_bool() ? "compiled" : "not compiled") << "\n"
            << "devices:\n  cpu\n";
  std::istringstream gpus(cuda::device_summary());
  for (std::string line; std::getline(gpus, line);) std::cout << "  " << line << "\n";
  return 0;
}

namespace {
const char* kUsage =
    "idem — IT³ (idempotent test-time training) on a from-scratch C++/CUDA framework\n\n"
    "usage: idem <command> [options]   (idem <command> --help for its options)\n\n"
    "  demo    train on a task, then compare none, bn, tent, actmad, it3, it3-online, random-step, eata, deyo, memo (+ ttt, ttt++ with --aux rotation, masked-ttt with --aux masked) on shifted data\n"
    "  train   train a recursive-input model with the IT³ objective; writes a run directory\n"
    "  adapt   reload a run and evaluate test-time adaptation methods on shifts\n"
    "  bench   time one IT³ adaptation (it3), a training step (train) or core ops (ops)\n"
    "  report  render a run's tables and plots (results.md, pareto.svg, ...) again from its results.csv\n"
    "  info    build, devices and versions\n";
}  // namespace

}  // namespace idem::cli

int main(int argc, char** argv) {
  using namespace idem::cli;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "demo") return cmd_demo(argc, argv);
    if (cmd == "train") return cmd_train(argc, argv);
    if (cmd == "adapt") return cmd_adapt(argc, argv);
    if (cmd == "bench") return cmd_bench(argc, argv);
    if (cmd == "info") return cmd_info(argc, argv);
    if (cmd == "report") return cmd_report(argc, argv);
    std::cerr << "idem: unknown command '" << cmd << "'\n\n" << kUsage;
    return 2;
  } catch (const idem::Error& e) {
    std::cerr << "idem " << cmd << ": error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "idem " << cmd << ": unexpected error: " << e.what() << "\n";
    return 1;
  }
}
