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

const char* first_signal_name(FirstSignal f) {
  switch (f) {
    case FirstSignal::neutral: return "neutral";
    case FirstSignal::target_or_wrong: return "target-or-wrong";
    case FirstSignal::target_or_neutral: return "target-or-neutral";
  }
  return "?";
}
FirstSignal parse_first_signal(const std::string& n) {
  if (n == "neutral") return FirstSignal::neutral;
  if (n == "target-or-wrong" || n == "target_or_wrong") return FirstSignal::target_or_wrong;
  if (n == "target-or-neutral" || n == "target_or_neutral") return FirstSignal::target_or_neutral;
  fail("it3 training", "unknown first-pass signal '", n,
       "' (expected neutral, target-or-wrong or target-or-neutral)");
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
  IDEM_CHECK(p_first_target >= 0.0 && p_first_target <= 1.0, "it3 training",
             "p_first_target must be in [0, 1], got ", p_first_target);
  if (first == FirstSignal::target_or_wrong && task != TaskKind::classification)
    fail("it3 training", "wrong-label feeding (first signal target-or-wrong) needs a classification "
         "task: a regression target has no 'wrong label'; use neutral or target-or-neutral");
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
     << signal_noise << ",\"seed\":" << seed << ",\"first_signal\":\"" << first_signal_name(first)
     << "\",\"p_first_target\":" << p_first_target << ",\"trains_neutral\":"
     << (trains_neutral() ? "true" : "false") << ",\"recipe\":\"" << recipe << "\"}";
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

// A random wrong label per sample: (y + 1 + ⌊u·(C − 1)⌋) mod C is uniform over the C − 1
// classes other than y. On the host (one small read-back per such batch), then to y's device.
Tensor wrong_labels(const Tensor& y, int64_t classes, uint64_t seed, int64_t step) {
  const std::vector<int64_t> lab = y.to(Device::cpu()).to_vector<int64_t>();
  const int64_t b = int64_t(lab.size());
  const std::vector<float> u =
      rand({b}, seed ^ 0x3B0A6ull, {}, uint64_t(step) * uint64_t(b + 4)).to_vector<float>();
  std::vector<int64_t> out(lab.size());
  for (size_t i = 0; i < lab.size(); ++i) {
    int64_t shift = 1 + int64_t(double(u[i]) * double(classes - 1));
    if (shift > classes - 1) shift = classes - 1;  // u < 1, but rounding to float may reach 1
    out[i] = (lab[i] + shift) % classes;
  }
  return from_vector<int64_t>(out, {b}, y.device());
}
}  // namespace

TrainStep it3_objective(RecursiveModel& model, const Input& x, const Tensor& y,
                        const TrainOptions& opt, int64_t step) {
  opt.validate(model.task());
  TrainStep out;
  Tensor s0;
  if (opt.first == FirstSignal::neutral) {
    s0 = model.neutral(x.batch_size(), x.x.device(), x.x.dtype());
  } else {
    // Its own draw stream (seed ^ constant), so p_feed's schedule is unchanged by this knob.
    const bool target = opt.p_first_target >= 1.0 ||
                        (opt.p_first_target > 0.0 && draw(opt.seed ^ 0xF1257ull, step) < opt.p_first_target);
    if (target) {
      s0 = model.target_signal(y), out.first = TrainStep::First::target;
    } else if (opt.first == FirstSignal::target_or_wrong) {
      s0 = model.target_signal(wrong_labels(y, model.signal_dim(), opt.seed, step));
      out.first = TrainStep::First::wrong;
    } else {
      s0 = model.neutral(x.batch_size(), x.x.device(), x.x.dtype());
    }
    if (s0.device() != x.x.device()) s0 = s0.to(x.x.device());
  }
  out.first_signal = s0;
  Tensor y0 = model.forward(x, s0);
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
