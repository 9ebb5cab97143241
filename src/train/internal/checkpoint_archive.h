#pragma once
// Reading and writing the entries of a checkpoint archive (private to train/; the format is
// described in include/psm/train/checkpoint.h).

#include <torch/nn/module.h>
#include <torch/serialize/input-archive.h>

#include <filesystem>
#include <string>

#include "psm/train/checkpoint.h"

namespace psm {

namespace checkpoint_keys {
inline const std::string kMetadata = "metadata";
inline const std::string kModel = "model";
inline const std::string kEma = "ema";
inline const std::string kOptimizer = "optimizer";
inline const std::string kRngState = "rng_state";
}  // namespace checkpoint_keys

/// Opens `path` with its tensors on `device`, wherever they were saved from; throws psm::Error
/// naming it when it is missing or not a LibTorch archive.
torch::serialize::InputArchive open_checkpoint_archive(const std::filesystem::path& path,
                                                       torch::Device device = torch::kCPU);

/// Parses the metadata entry; throws psm::Error naming `path` when it is absent, malformed or
/// of another format version.
CheckpointInfo checkpoint_info_from_archive(torch::serialize::InputArchive& archive,
                                            const std::filesystem::path& path);

/// Loads the parameters and buffers stored under `key` into `module`; throws psm::Error naming
/// `path` when they do not fit (another architecture).
void read_module(torch::serialize::InputArchive& archive, const std::string& key,
                 torch::nn::Module& module, const std::filesystem::path& path);

}  // namespace psm
