#include "it3/recipe.h"

#include "core/error.h"

namespace idem::it3 {

const std::vector<std::string>& recipe_names() {
  static const std::vector<std::string> n{"paper-mnist", "paper-cifar", "torch-ttt"};
  return n;
}

Recipe find_recipe(const std::string& name) {
  Recipe r;
  r.name = name;
  if (name == "paper-mnist") {
    // The notebook's LeNet (make_small_cnn), Adam 1e-3 at batch 64 in training and at test.
    r.model = "small-cnn", r.train_batch = 64, r.train_lr = 1e-3, r.adapt_batch = 64;
  } else if (name == "paper-cifar") {
    r.adapt_batch = 64;
  } else if (name != "torch-ttt") {
    std::string valid;
    for (const auto& n : recipe_names()) valid += (valid.empty() ? "" : ", ") + n;
    fail("it3 recipe", "unknown recipe '", name, "' (valid: ", valid, ")");
  }
  return r;
}

void apply_train_recipe(const std::string& name, TrainOptions& t) {
  find_recipe(name);  // validates the name
  t.recipe = name;
  if (name == "paper-mnist") {
    // First pass: y with probability 0.75, else a random wrong label (∅ never trained); second
    // pass: the model's own softmax, with gradient, every batch; CE + CE.
    t.first = FirstSignal::target_or_wrong, t.p_first_target = 0.75;
    t.p_feed = 1.0, t.source = SignalSource::self;
  } else if (name == "paper-cifar") {
    // First pass: y with probability 0.2, else the uniform ∅; second pass as above.
    t.first = FirstSignal::target_or_neutral, t.p_first_target = 0.2;
    t.p_feed = 1.0, t.source = SignalSource::self;
  } else {  // torch-ttt: ℓ(f(x, ∅), y) + ℓ(f(x, y), y) on every batch
    t.first = FirstSignal::neutral;
    t.p_feed = 1.0, t.source = SignalSource::target;
  }
}

void apply_adapt_recipe(const std::string& name, AdaptOptions& a) {
  find_recipe(name);
  a.recipe = name;
  a.optimizer = OptimizerKind::adam, a.lr = 1e-3;
  if (name == "paper-mnist") {
    // The notebook loops n_steps + 1 = 11 times and reports the last loop's first pass, taken
    // before its update: the prediction has seen 10 updates, the carried moments 11.
    a.steps = 11, a.readout_before_update = true, a.prediction = Prediction::adapted;
    a.distance = Distance::js_authors, a.anchor = Anchor::head;
    a.neutral = NeutralSignal::random_one_hot, a.persistent_moments = true;
  } else if (name == "paper-cifar") {
    // One step with the model in train mode (batch statistics), F = f_θ, the accuracy read from
    // the second pass computed before the update.
    a.steps = 1, a.readout_before_update = true, a.prediction = Prediction::anchor;
    a.distance = Distance::js_authors, a.anchor = Anchor::shared;
    a.bn_mode = BnMode::batch, a.persistent_moments = true;
  } else {  // torch-ttt: F = f, the engine's default MSE distance, one step, a fresh optimizer
    a.steps = 1, a.anchor = Anchor::shared, a.distance = Distance::mse;
  }
}

void apply_recipe(const std::string& name, TrainOptions& t, AdaptOptions& a) {
  apply_train_recipe(name, t);
  apply_adapt_recipe(name, a);
}

}  // namespace idem::it3
