#pragma once
// Metropolis Monte Carlo with many chains advanced together: every step proposes a Gaussian
// move for all chains and evaluates their energies in one batched call.
//
//   MetropolisSampler sampler(system, {.kT = 1.0, .chains = 128, .samples = 10000});
//   MetropolisState state = sampler.start(initial_positions);   // [128, N, D]
//   sampler.run(state);                                          // burn-in, then production
//   Dataset reference = sampler.dataset(state);

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>

#include "psm/io/dataset.h"
#include "psm/simulate/sample_record.h"
#include "psm/systems/potential.h"

namespace psm {

struct MetropolisOptions {
  double kT = 1.0;            ///< k_B T, energy units of the system
  int64_t chains = 128;       ///< independent chains advanced together (the batch)
  int64_t burn_in = 2000;     ///< steps per chain, with step-size adaptation, before any is kept
  int64_t thin = 10;          ///< steps per chain between kept frames
  int64_t samples = 1000;     ///< kept frames in all (all chains); the last round may be partial
  double initial_step = 0.1;  ///< proposal standard deviation per coordinate, length units
  double target_acceptance = 0.5;    ///< burn-in adapts each chain's step size toward this
  double adaptation_exponent = 0.6;  ///< Robbins-Monro gain (t + 1)^-exponent, in (0.5, 1]
  /// Project proposals onto the centre-of-mass-free subspace (subtract the mean displacement
  /// over atoms). Right for translation-invariant energies (LJ in psm's convention, DW); the
  /// chains then keep the centre of mass of their starting configurations.
  bool com_free = true;
  bool forces = true;  ///< label kept frames with forces (PSM training needs them)
  uint64_t seed = 0;
  std::filesystem::path checkpoint{};  ///< state file written during run(); empty = none
  int64_t checkpoint_every = 10000;    ///< kept frames between state files (rounded to rounds)
  bool progress = false;               ///< progress bar on stderr
  /// The chains this process advances (MPI ranks); the state holds only these.
  ChainShare share{};

  /// Throws psm::Error naming the first impossible option.
  void validate() const;
};

/// Everything a run needs to continue exactly: the chains (ChainState: positions, energies,
/// step, which with the seed fixes the proposals and acceptance tests, kept frames), plus frozen
/// or adapting step sizes and acceptance counts.
struct MetropolisState : ChainState {
  torch::Tensor log_step;  ///< [C] float64, log proposal standard deviation per chain
  torch::Tensor accepted;  ///< [C] int64, accepted moves since burn-in ended
};

class MetropolisSampler {
 public:
  /// `system` must outlive the sampler. Throws psm::Error on invalid options.
  MetropolisSampler(const System& system, MetropolisOptions options);

  const MetropolisOptions& options() const { return options_; }

  /// A fresh state at `positions` [C, N, D] (C = options.chains; the state keeps the chains of
  /// options.share), seeded from options.seed.
  /// Throws psm::Error on a wrong shape or a non-finite starting energy.
  MetropolisState start(const torch::Tensor& positions) const;

  /// Advances `state` until it holds options.samples kept frames: burn-in first (adapting
  /// step sizes), then production with frozen step sizes. Writes options.checkpoint every
  /// options.checkpoint_every kept frames and at the end. Continuing a saved state gives the
  /// same frames as one uninterrupted run.
  void run(MetropolisState& state) const;

  /// The first options.samples kept frames (round-major: frame = round * C + chain), with
  /// energies, forces when options.forces, kT, the system spec and the run's provenance.
  Dataset dataset(const MetropolisState& state) const;

  /// Fraction of proposals accepted since burn-in ended (NaN before).
  double acceptance(const MetropolisState& state) const;

  /// Writes `state` atomically to `path`.
  void save(const std::filesystem::path& path, const MetropolisState& state) const;
  /// Reads a state written by save(); throws psm::Error naming the file when it is unreadable
  /// or was made with other options (kT, chains, burn_in, thin, seed, ...; samples may differ).
  /// Its tensors are put on `device`, wherever the state was saved from.
  MetropolisState load(const std::filesystem::path& path, torch::Device device = torch::kCPU) const;

 private:
  /// One Metropolis step for all chains; adapts step sizes while state.step < burn_in.
  /// Returns the fraction of chains that moved.
  double step(MetropolisState& state) const;
  /// Options and system shape a saved state must match.
  nlohmann::json fingerprint() const;
  nlohmann::json provenance(const MetropolisState& state) const;

  const System& system_;
  MetropolisOptions options_;
  CounterRandom random_;  ///< proposals and acceptance tests
};

/// Forces of `positions` [F, N, D] evaluated in chunks of `chunk` frames: [F, N, D] float64.
torch::Tensor evaluate_forces(const System& system, const torch::Tensor& positions,
                              int64_t chunk = 1024, bool progress = false);

}  // namespace psm
