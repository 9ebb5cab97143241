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
//   [system]     name = "xtb", molecule = "ethanol.xyz", temperature = 500   # K, molecules only
//   [reference]  samples = 20000           # MCMC pool that training sets are drawn from
//                pool = "lj13_pool.npz"    # or read the pool (and/or the test set) from files
//                test_samples = 10000      # independent evaluation set
//                test_seed = 1             # another value gives a validation set for tuning
//                sampler = "hmc"           # or mcmc, langevin (default: the system's preset)
//                sampler overrides: chains, burn_in, thin, leapfrog_steps, time_step
//   [reference]  pool = ["a.npz", "b.npz"], test = [...]   # lists of files are concatenated
//                directory = "data/rmd17"  # relative file names are in this directory
//   [[sets]]     name = "limited", kind = "limited", frames = 1000
//   [[sets]]     name = "hot", kind = "temperature", kT_data = 1.5, frames = 1000
//   [[sets]]     name = "cold300", kind = "temperature", temperature_data = 300, frames = 1000
//   [[sets]]     name = "basin", kind = "basin", frames = 1000
//   [[sets]]     name = "cold_tail", kind = "energy", quantile = 0.3, frames = 1000
//                sigma_c = 0.3             # any set: diffusion.sigma_c of its models
//   [sample]     n = 10000, steps = 100, solver = "heun", grid = "edm", batch = 1000,
//                solver: heun, sde, edm (churn = 0, churn_sigma_min = 0, churn_sigma_max = inf,
//                churn_noise = 1), dpm2, adaptive (tolerance = 0.02)
//                corrector_steps = 0, snr = 0.16, corrector_sigma_min = 0,
//                corrector_max_step = inf   # largest corrector step in units of σ²
//                likelihood = false         # log q and importance weights of every sample (heun
//                                           # without corrector); reweighted rows in the report
//                likelihood_steps = 100, divergence = "exact" | "hutchinson", probes = 1
//   [eval]       equivariant_samples = 0, xtb_frames = 100 (molecules without [system]),
//                min_ess = 0.05            # ESS fraction below which weights are degenerate
//   [model] [diffusion] [train]            # as in `psm train`
//
// A [system] with `molecule = FILE` (relative to the current directory; any format psm reads,
// e.g. .xyz) takes its species from the file, and the file's frames start every simulation
// (reference pool, test set, temperature sets) instead of the sampler's lattice placements. A
// molecular system's temperature is `temperature` in K or `kT` in kcal/mol (default 500 K), a
// set's `temperature_data` in K or `kT_data`. Its energy metrics are the system's own energies
// (GFN2-xTB for xtb) of every frame, so eval.xtb_frames does not apply.
//
// Without [system], reference.pool and reference.test must be files, and their frames define the
// system (species, units, kT; MD17 files are at 500 K): a molecule whose reference potential
// (DFT) psm cannot evaluate, so the sets are limited or energy ones, and generated samples have
// no energies (the molecular metrics, and GFN2-xTB energies of eval.xtb_frames frames, compare
// them instead). Frames that repeat an rMD17 `old_indices` entry are read once, and test frames
// that are in the pool files are dropped.
//
// Every key is optional except system.name (or, without [system], reference.pool and
// reference.test); unknown keys are errors.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "psm/core/config.h"
#include "psm/core/units.h"
#include "psm/data/subsets.h"
#include "psm/diffusion/likelihood.h"
#include "psm/diffusion/sampler.h"
#include "psm/eval/metrics.h"
#include "psm/eval/weighted_metrics.h"
#include "psm/io/dataset.h"

namespace psm {

/// How the reference samples are made (by the system's preset sampler, MCMC or Langevin).
struct ReferenceSpec {
  /// Pool at the target kT that training sets are drawn from: frames sampled (default 20000),
  /// or the first frames kept of pool_files (default all).
  std::optional<int64_t> samples{};
  /// Independent set the models are evaluated against: frames sampled (default 10000), or the
  /// first frames kept of test_files (default all).
  std::optional<int64_t> test_samples{};
  uint64_t test_seed = 1;  ///< stream of the evaluation set; tune with another value
  /// "mcmc", "hmc" or "langevin" (default: the system's preset, simulate/presets.h); chains,
  /// burn_in and thin count that sampler's steps (HMC: trajectories).
  std::optional<std::string> sampler{};
  std::optional<int64_t> chains{};
  std::optional<int64_t> burn_in{};
  std::optional<int64_t> thin{};
  std::optional<int64_t> leapfrog_steps{};  ///< HMC: force evaluations per trajectory
  /// HMC's initial or Langevin's time step: fs for molecules, the system's time unit otherwise
  std::optional<double> time_step{};
  /// Datasets read (and concatenated) as the pool instead of sampling it. Relative names are
  /// joined to reference.directory (default: none, so relative to the current directory).
  std::vector<std::string> pool_files{};
  std::vector<std::string> test_files{};  ///< datasets read as the evaluation set
  /// Energies and forces read from rMD17 files: the recomputed ones or MD17's original ones.
  Rmd17Labels labels = Rmd17Labels::recomputed;

  static constexpr int64_t default_samples = 20000;
  static constexpr int64_t default_test_samples = 10000;
};

/// One training set, made from the reference pool (or sampled at kT_data).
struct TrainingSetSpec {
  std::string name;  ///< file and directory name, [A-Za-z0-9_-]
  /// limited: `frames` frames of the pool; temperature: `frames` frames sampled at kT_data and
  /// labelled for the target kT; basin: short trajectories from one minimum; energy: the lowest
  /// `quantile` of the pool by energy (quantile = 0.3: the lowest 30 %), then `frames` of those
  /// (all of them when there are fewer).
  SubsetKind kind = SubsetKind::limited;
  int64_t frames = 1000;
  /// Sampling kT: temperature (required) and basin (default: target); given as kT_data, or for
  /// molecules as temperature_data in K.
  std::optional<double> kT_data{};
  std::optional<double> quantile{};  ///< energy (required), in (0, 1]
  /// The hybrid's crossover for this set's models, in place of diffusion.sigma_c: data from
  /// another temperature need a larger one than the training forces suggest.
  std::optional<double> sigma_c{};
};

struct ExperimentConfig {
  std::string name;
  int threads = 0;  ///< 0: all cores (or the --threads flag)
  uint64_t seed = 0;
  /// The system's canonical spec (make_system rebuilds it; a molecule file's species are in it);
  /// null without [system] (the pool files define the system).
  nlohmann::json system;
  /// [F, N, 3] the frames of system.molecule, which start every simulation; undefined without
  /// one (the sampler's default starts).
  torch::Tensor start;
  /// system.kT or system.temperature (default: 1 in reduced units, 500 K for molecules); absent:
  /// the pool files' temperature.
  std::optional<Temperature> temperature{};
  ReferenceSpec reference;
  std::vector<TrainingSetSpec> sets;
  std::vector<std::string> variants;  ///< crossover names (dsm, psm, hybrid)
  SamplerOptions sampler;             ///< sigma_min/max and com_free come from each checkpoint
  int64_t sample_count = 10000;
  /// sample.likelihood: each model's samples get log q and log importance weights, and the
  /// report their reweighted metrics; none: off. The noise range, batch and seed come from
  /// each checkpoint and the sampler.
  std::optional<LikelihoodOptions> likelihood{};
  double min_ess = kDefaultMinEssFraction;  ///< eval.min_ess: degenerate weights below it
  MetricsOptions metrics;
  /// Molecules read from files (no [system]): frames per set whose GFN2-xTB energies are
  /// compared (eval.xtb_frames; 0 skips).
  int64_t xtb_frames = 100;
  /// {"model": ..., "diffusion": ..., "train": ...} as given; read by read_run_config.
  nlohmann::json training = nlohmann::json::object();
  Config config;  ///< the whole configuration, overrides applied
};

/// The kind of a [[sets]] table: limited, temperature, basin or energy (a torsion window is
/// specific to one molecule, so it is a `psm data subset` kind only). Throws psm::Error
/// "unknown training-set kind 'x' (known: ...)".
SubsetKind training_set_kind_from_string(const std::string& name);

/// Reads and checks `config`; throws psm::Error naming config.source and the offending key.
/// The [system] table is checked by building the system (which reads its molecule file), and the
/// training tables by building each variant's run configuration.
ExperimentConfig read_experiment_config(const Config& config);

/// The `psm train` configuration of one model: the experiment's training tables, with
/// data.train = `train_file`, diffusion.crossover = `variant` and the set's sigma_c if it has one.
Config training_config(const ExperimentConfig& experiment, const TrainingSetSpec& set,
                       const std::string& train_file, const std::string& variant);

/// The default job of `psm run` (configs/lj13_quick.toml, compiled in).
Config default_experiment_config();

}  // namespace psm
