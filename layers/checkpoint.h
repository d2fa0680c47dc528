// Checkpoints: a Module's state_dict (parameters and buffers, PyTorch-style names such as
// "layers.0.weight", "bn.running_mean", "bn.num_batches_tracked") in a safetensors file, so
// weights move between idem and PyTorch (torch.load_state_dict(safetensors.torch.load_file)).
#pragma once
#include <string>

#include "io/safetensors.h"
#include "layers/module.h"

namespace idem {

// Writes every parameter and buffer of `module` (temporary file + rename: never half-written).
void save_checkpoint(const Module& module, const std::string& path,
                     const StringPairs& metadata = {});
// Loads a checkpoint into `module` (values copied into its existing tensors, on its device).
// strict: every name must match both ways; errors list every missing/unexpected/mismatched name.
void load_checkpoint(Module& module, const std::string& path, bool strict = true);

}  // namespace idem
