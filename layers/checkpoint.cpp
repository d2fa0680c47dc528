#include "layers/checkpoint.h"

namespace idem {

void save_checkpoint(const Module& module, const std::string& path, const StringPairs& metadata) {
  NamedTensors tensors;
  for (const auto& [name, t] : module.state_dict()) tensors.emplace_back(name, t);
  save_safetensors(path, tensors, metadata);
}

void load_checkpoint(Module& module, const std::string& path, bool strict) {
  StateDict state;
  for (auto& [name, t] : load_safetensors(path)) state.emplace(name, std::move(t));
  module.load_state_dict(state, strict);
}

}  // namespace idem
