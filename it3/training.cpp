#include "it3/training.h"

#include <cmath>
#include <sstream>

#include "autograd/anomaly.h"
#include "autograd/nn_functions.h"
#include "core/error.h"
#include "core/philox.h"

namespace idem::it3 {

const char* train_loss_name(TrainLoss l) {
  switch (l) {
    case TrainLoss::mse: return "mse";
    case TrainLoss::l1: return "l1";
    case TrainLoss::cross_entropy: return "cross_entropy";
  }
  return "?";
}
TrainLoss parse_train_loss(const std::string& n) {
  if (n == "mse") return TrainLoss::mse;
  if (n == "l1") return TrainLoss::l1;
  if (n == "cross_entropy" || n == "ce") return TrainLoss::cross_entropy;
  fail("it3 training", "unknown loss '", n, "' (expected mse, l1 or cross_entropy)");
}
const char* signal_source_name(SignalSource s) {
  switch (s) {
    case SignalSource::target: return "target";
    case SignalSource::self: return "self";
    case SignalSource::self_detached: return "self_detached";
  }
  return "?";
}
SignalSource parse_signal_source(const std::string& n) {
  if (n == "target") return SignalSource::target;
  if (n == "self") return SignalSource::self;
  if (n == "self_detached") return SignalSource::self_detached;
  fail("it3 training", "unknown signal source '", n, "' (expected target, self or self_detached)");
}

TrainOptions TrainOptions::for_task(TaskKind task) {
  TrainOptions o;
  if (task == TaskKind::classification) {
    o.loss = TrainLoss::cross_entropy;
    o.p_feed = 0.5;
  }
  return o;
}

void TrainOptions::validate(TaskKind task) const {
  IDEM_CHECK(p_feed >= 0.0 && p_feed <= 1.0, "it3 training", "p_feed must be in [0, 1], got ", p_feed);
  IDEM_CHECK(signal_noise >= 0.0 && std::isfinite(signal_noise), "it3 training",
             "signal_noise must be finite and >= 0, got ", signal_noise);
  const bool ce = loss == TrainLoss::cross_entropy;
  if (task == TaskKind::classification && !ce)
    fail("it3 training", "a classification model trains with cross_entropy, not ", train_loss_name(loss));
  if (task == TaskKind::regression && ce)
    fail("it3 training", "cross_entropy needs a classification model; this one is regression");
}

std::string TrainOptions::to_json() const {
  std::ostringstream os;
  os << "{\"loss\":\"" << train_loss_name(loss) << "\",\"p_feed\":" << p_feed
     << ",\"signal_source\":\"" << signal_source_name(source) << "\",\"signal_noise\":"
     << signal_noise << ",\"seed\":" << seed << "}";
  return os.str();
}

Tensor task_loss(const Tensor& prediction, const Tensor& y, TrainLoss loss) {
  switch (loss) {
    case TrainLoss::mse: return mse_loss(prediction, y);
    case TrainLoss::l1: return l1_loss(prediction, y);
    case TrainLoss::cross_entropy: return cross_entropy(prediction, y);
  }
  fail("it3 training", "unknown loss");
}

namespace {
// A uniform draw in [0, 1) from (seed, step): the same schedule on every device and run.
double draw(uint64_t seed, int64_t step) {
  Tensor u = rand({1}, seed, {}, uint64_t(step) * 4);
  return u.to_vector<float>()[0];
}
}  // namespace

TrainStep it3_objective(RecursiveModel& model, const Input& x, const Tensor& y,
                        const TrainOptions& opt, int64_t step) {
  opt.validate(model.task());
  TrainStep out;
  Tensor y0 = model.forward_neutral(x);
  out.prediction = y0;
  out.loss = task_loss(y0, y, opt.loss);
  out.fed = opt.p_feed >= 1.0 || (opt.p_feed > 0.0 && draw(opt.seed, step) < opt.p_feed);
  if (!out.fed) return out;
  Tensor s;
  switch (opt.source) {
    case SignalSource::target: s = model.target_signal(y); break;
    case SignalSource::self: s = model.to_signal(y0); break;
    case SignalSource::self_detached: s = model.to_signal(y0).detach(); break;
  }
  if (s.device() != x.x.device()) s = s.to(x.x.device());
  if (opt.signal_noise > 0.0)
    s = s + randn(s.shape(), opt.seed ^ 0x5157A1ull, Options{s.dtype(), s.device()},
                  uint64_t(step) * uint64_t(s.numel() + 4)) * opt.signal_noise;
  out.loss = out.loss + task_loss(model.forward(x, s), y, opt.loss);
  return out;
}

double train_step(RecursiveModel& model, Optimizer& optim, const Input& x, const Tensor& y,
                  const TrainOptions& opt, int64_t step) {
  optim.zero_grad();
  TrainStep t = it3_objective(model, x, y, opt, step);
  check_finite_loss(t.loss, step, "it3 training");  // before backward: no NaN reaches the weights
  const double value = t.loss.item();
  t.loss.backward();
  optim.step();
  return value;
}

}  // namespace idem::it3
