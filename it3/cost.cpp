#include "it3/cost.h"

#include <sstream>

#include "core/kernels/runtime.h"

namespace idem::it3 {

Cost& Cost::operator+=(const Cost& o) {
  batches += o.batches;
  samples += o.samples;
  forwards += o.forwards;
  backwards += o.backwards;
  optimizer_steps += o.optimizer_steps;
  reset_bytes += o.reset_bytes;
  gpu_launches += o.gpu_launches;
  wall_us += o.wall_us;
  return *this;
}

std::string Cost::to_json() const {
  std::ostringstream os;
  os << "{\"batches\":" << batches << ",\"samples\":" << samples << ",\"forwards\":" << forwards
     << ",\"backwards\":" << backwards << ",\"optimizer_steps\":" << optimizer_steps
     << ",\"reset_bytes\":" << reset_bytes << ",\"gpu_launches\":" << gpu_launches
     << ",\"wall_us\":" << wall_us << ",\"us_per_batch\":" << us_per_batch()
     << ",\"us_per_sample\":" << us_per_sample() << "}";
  return os.str();
}

CostMeter::CostMeter(Device device) : device_(device) {
  if (device_.is_cuda()) {
    cuda::synchronize(device_.index);
    launches0_ = cuda::launch_count();
  }
  t0_ = std::chrono::steady_clock::now();
}

void CostMeter::stop(Cost& c) {
  if (device_.is_cuda()) {
    cuda::synchronize(device_.index);
    c.gpu_launches += cuda::launch_count() - launches0_;
  }
  c.wall_us += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0_).count();
}

}  // namespace idem::it3
