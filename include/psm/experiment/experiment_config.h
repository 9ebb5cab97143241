#pragma once
// The configuration of `psm run` (configs/*.toml): one system, its reference samples, the
// training sets made from them, the diffusion variants trained on each set, and how to sample
// and evaluate. The [model], [diffusion] and [train] tables are those of `psm train` and are
// passed through to read_run_config for every (training set, variant) pair.
//
//   name = "lj13"                          # run directory: runs/<name>
//   threads = 2
//   seed = 0
//   variants = ["dsm", "psm", "hybrid"]    # diffusion.crossover of each trained model
//   [system]     name = "lj13", kT = 1.0, plus the system's own options
//   [reference]  samples = 20000           # MCMC pool that training sets are drawn from
//                pool = "lj13_pool.npz"    # or read the pool (and/or the test set) from files
//                test_samples = 10000      # independent evaluation set
//                test_seed = 1             # another value gives a validation set for tuning
//                sampler overrides: chains, burn_in, thin
//   [[sets]]     name = "limited", kind = "limited", frames = 1000
//   [[sets]]     name = "hot", kind = "temperature", kT_data = 1.5, frames = 1000
//   [[sets]]     name = "basin", kind = "basin", frames = 1000
//   [[sets]]     name = "cold_tail", kind = "energy", quantile = 0.3, frames = 1000
//   [sample]     n = 10000, steps = 100, solver = "heun", grid = "edm", batch = 1000,
//                corrector_steps = 0, snr = 0.16
//   [eval]       equivariant_samples = 0
//   [model] [diffusion] [train]            # as in `psm train`
//
// Every key is optional except system.name; unknown keys are errors.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "psm/core/config.h"
#include "psm/diffusion/sampler.h"
#include "psm/eval/metrics.h"

namespace psm {

/// How the reference samples are made (by the system's preset sampler, MCMC or Langevin).
struct ReferenceSpec {
  int64_t samples = 20000;       ///< pool at the target kT that training sets are drawn from
  int64_t test_samples = 10000;  ///< independent set the models are evaluated against
  uint64_t test_seed = 1;        ///< stream of the evaluation set; tune with another value
  std::optional<int64_t> chains{};
  std::optional<int64_t> burn_in{};
  std::optional<int64_t> thin{};
  std::string pool_file{};  ///< read the pool from this dataset instead of sampling it
  std::string test_file{};  ///< read the evaluation set from this dataset
};

/// One training set, made from the reference pool (or sampled at kT_data).
struct TrainingSetSpec {
  std::string name;  ///< file and directory name, [A-Za-z0-9_-]
  /// limited: `frames` frames of the pool; temperature: `frames` frames sampled at kT_data and
  /// labelled for the target kT; basin: short trajectories from one minimum; energy: the lowest
  /// `quantile` of the pool by energy, then `frames` of those.
  std::string kind;
  int64_t frames = 1000;
  std::optional<double> kT_data{};   ///< temperature (required) and basin (default: target)
  std::optional<double> quantile{};  ///< energy (required), in (0, 1]
};

struct ExperimentConfig {
  std::string name;
  int threads = 0;  ///< 0: all cores (or the --threads flag)
  uint64_t seed = 0;
  nlohmann::json system;  ///< spec for make_system, without kT
  double kT = 1.0;
  ReferenceSpec reference;
  std::vector<TrainingSetSpec> sets;
  std::vector<std::string> variants;  ///< crossover names (dsm, psm, hybrid)
  SamplerOptions sampler;             ///< sigma_min/max and com_free come from each checkpoint
  int64_t sample_count = 10000;
  MetricsOptions metrics;
  /// {"model": ..., "diffusion": ..., "train": ...} as given; read by read_run_config.
  nlohmann::json training = nlohmann::json::object();
  Config config;  ///< the whole configuration, overrides applied
};

/// Reads and checks `config`; throws psm::Error naming config.source and the offending key.
/// The training tables are checked too (by building the first run's configuration).
ExperimentConfig read_experiment_config(const Config& config);

/// The `psm train` configuration of one model: the experiment's training tables, with
/// data.train = `train_file` and diffusion.crossover = `variant`.
Config training_config(const ExperimentConfig& experiment, const std::string& train_file,
                       const std::string& variant);

/// The default job of `psm run` (configs/lj13_quick.toml, compiled in).
Config default_experiment_config();

}  // namespace psm
