// Fit a small MLP by plain gradient descent on a synthetic regression, y = sinh(x0) + x1²/2,
// and print the loss as it falls. The smallest end-to-end use of idem's tensors and autograd.
//
//   fit_mlp [--device cpu|cuda[:N]] [--steps N] [--lr LR]
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "autograd/functions.h"
#include "core/kernels/runtime.h"

using namespace idem;

int main(int argc, char** argv) {
  try {
    Device device = cuda::available() ? Device::cuda(0) : Device::cpu();
    int steps = 1500;
    double lr = 0.1;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--device" && i + 1 < argc) device = Device::parse(argv[++i]);
      else if (a == "--steps" && i + 1 < argc) steps = std::atoi(argv[++i]);
      else if (a == "--lr" && i + 1 < argc) lr = std::atof(argv[++i]);
      else {
        std::cerr << "usage: fit_mlp [--device cpu|cuda[:N]] [--steps N] [--lr LR]\n";
        return a == "--help" || a == "-h" ? 0 : 2;
      }
    }
    const int64_t n = 512, d = 2, h = 32;
    const Options opt{DType::f32, device};

    // Data: x ~ U[-1.5, 1.5]², y = sinh(x0) + x1²/2 (no gradient needed).
    Tensor x = uniform({n, d}, -1.5, 1.5, /*seed=*/1, opt);
    Tensor y;
    {
      NoGradGuard no_grad;
      Tensor x0 = narrow(x, 1, 0, 1), x1 = narrow(x, 1, 1, 1);
      y = (exp(x0) - exp(-x0)) * 0.5 + square(x1) * 0.5;
    }

    // Parameters: leaves that require grad.
    Tensor w1 = (randn({d, h}, 2, opt) * 0.7).detach(), b1 = zeros({h}, opt);
    Tensor w2 = (randn({h, 1}, 3, opt) * 0.2).detach(), b2 = zeros({1}, opt);
    for (const Tensor& p : {w1, b1, w2, b2}) p.requires_grad_();

    std::cout << "fitting a 2->" << h << "->1 tanh MLP on " << n << " samples, device "
              << device.str() << "\n";
    for (int step = 0; step <= steps; ++step) {
      Tensor pred = matmul(tanh(matmul(x, w1) + b1), w2) + b2;
      Tensor loss = mean(square(pred - y));
      for (const Tensor& p : {w1, b1, w2, b2}) p.zero_grad();
      loss.backward();
      if (step % 100 == 0) std::cout << "step " << step << "  mse " << loss.item() << "\n";
      NoGradGuard no_grad;  // the update itself is not part of the graph
      for (const Tensor& p : {w1, b1, w2, b2}) p.copy_(p - p.grad() * lr);
    }
    return 0;
  } catch (const Error& e) {
    std::cerr << "fit_mlp: " << e.what() << "\n";
    return 1;
  }
}
