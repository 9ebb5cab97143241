#pragma once
// Where tensor work runs. Every stage takes its device from its input tensors; the command line
// chooses it once (`psm --device cuda ...`) and this file turns that choice into a checked
// torch::Device.

#include <torch/types.h>

#include <string>

namespace psm {

/// "cpu", "cuda" or "cuda:N" as a torch::Device. Throws psm::Error on an unknown name, and on a
/// CUDA device that this LibTorch build or this machine does not have.
torch::Device parse_device(const std::string& name);

}  // namespace psm
