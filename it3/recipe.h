// Level L4: the authors' IT³ recipes as presets (docs/it3.md, "Recipes").
//
//   it3::TrainOptions t = ...;  it3::AdaptOptions a = it3::AdaptOptions::for_method(Method::it3);
//   it3::apply_recipe("paper-mnist", t, a);   // sets exactly the recipe's knobs, nothing else
//
// paper-mnist   nikitadurasov/ittt exps/mnist/mnist_ittt.ipynb
// paper-cifar   nikitadurasov/ittt exps/cifar/cifar_ittt.ipynb
// torch-ttt     nikitadurasov/torch-ttt torch_ttt/engine/it3_engine.py (+ engine/base_engine.py)
//
// A recipe changes TrainOptions and the AdaptOptions of the IT³ rows (it3, random-step); the
// command line applies it first and then every flag the user gave explicitly, so flags win.
// What a recipe asks of the task rather than of the options (the model, batch sizes, the
// training lr) is in Recipe, for the command line to apply where the user did not choose.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "it3/adapt.h"
#include "it3/training.h"

namespace idem::it3 {

struct Recipe {
  std::string name;
  std::string model;         // task model ("" = the task's default), e.g. "small-cnn"
  int64_t train_batch = 0;   // 0 = the task's default
  double train_lr = 0;       // 0 = the task's default
  int64_t adapt_batch = 0;   // test batch size, 0 = the task's default
};

// "paper-mnist", "paper-cifar", "torch-ttt".
const std::vector<std::string>& recipe_names();
// Throws idem::Error listing the valid names for an unknown one.
Recipe find_recipe(const std::string& name);
// Sets the recipe's training and adaptation knobs (and the `recipe` field of both).
void apply_recipe(const std::string& name, TrainOptions& train, AdaptOptions& adapt);
void apply_train_recipe(const std::string& name, TrainOptions& train);
void apply_adapt_recipe(const std::string& name, AdaptOptions& adapt);

}  // namespace idem::it3
