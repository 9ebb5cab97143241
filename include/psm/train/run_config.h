#pragma once
// The configuration of `psm train` (configs/*.toml), read into options structs:
//
//   threads = 2                       # optional; the --threads flag wins when given
//   [data]       train = "runs/lj13_ref.npz", validation_fraction = 0.1
//   [model]      layers, width, activation, noise_features, rbf, rbf_cutoff, cutoff, attention,
//                tanh, coord_range, dtype, chunk_size
//   [diffusion]  sigma_min, sigma_max, distribution, p_mean, p_std, process, crossover,
//                sigma_c (a length or "auto"), crossover_exponent, weighting, com_free
//   [train]      steps, batch_size, optimizer, lr, lr_min, weight_decay, beta1, beta2,
//                warmup_steps, grad_clip, ema_decay, seed, checkpoint_every, validation_every,
//                log_every
//
// Every key is optional (defaults train LJ13) except data.train; unknown keys are errors.

#include <filesystem>
#include <string>

#include "psm/core/config.h"
#include "psm/diffusion/loss.h"
#include "psm/model/network.h"
#include "psm/train/options.h"

namespace psm {

struct RunConfig {
  std::filesystem::path train_data;  ///< [data] train, relative to the working directory
  /// [model]; dim and species are placeholders that the Trainer takes from the dataset, and
  /// seed is set to train.seed.
  NetworkOptions network = EgnnOptions(0, torch::Tensor());
  LossOptions loss;        ///< [diffusion]; sigma_c unset means "auto" (from the forces)
  TrainerOptions trainer;  ///< [train], plus data.validation_fraction
  int threads = 0;         ///< 0: not set in the file
  Config config;           ///< the whole configuration, overrides applied (saved in checkpoints)
};

/// Reads and checks every section of `config`; throws psm::Error naming config.source and the
/// offending key (unknown keys included). Does not open the data file.
RunConfig read_run_config(const Config& config);

}  // namespace psm
