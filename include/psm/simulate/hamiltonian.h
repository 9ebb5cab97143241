#pragma once
// Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011) with many chains advanced together:
// every step draws Gaussian momenta, follows the forces for a few leapfrog steps and accepts the
// end point with the Metropolis test on the total energy, so the chains sample exp(-U/kT)
// exactly, while a step moves all atoms coherently along the forces. On Lennard-Jones clusters
// that decorrelates the energy in far fewer energy evaluations than Gaussian random-walk moves
// (BENCHMARKS.md, "MCMC cost per independent sample").
//
//   HamiltonianSampler sampler(system, {.kT = 1.0, .chains = 128, .samples = 10000});
//   HamiltonianState state = sampler.start(initial_positions);   // [128, N, D]
//   sampler.run(state);                                          // burn-in, then production
//   Dataset reference = sampler.dataset(state);

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>

#include "psm/io/dataset.h"
#include "psm/simulate/sample_record.h"
#include "psm/systems/potential.h"

namespace psm {

struct HamiltonianOptions {
  double kT = 1.0;        ///< k_B T, energy units of the system
  int64_t chains = 128;   ///< independent chains advanced together (the batch)
  int64_t burn_in = 200;  ///< trajectories per chain, with step-size adaptation, before any is kept
  int64_t thin = 5;       ///< trajectories per chain between kept frames
  int64_t samples = 1000;       ///< kept frames in all (all chains); the last round may be partial
  int64_t leapfrog_steps = 10;  ///< force evaluations per trajectory
  /// Leapfrog time step, time units with unit masses (length sqrt(mass / energy)). Each
  /// trajectory scales it by a factor uniform in [0.8, 1.2], which breaks the periodic orbits a
  /// fixed trajectory length can lock into.
  double initial_step = 0.01;
  double target_acceptance = 0.8;    ///< burn-in adapts each chain's time step toward this
  double adaptation_exponent = 0.6;  ///< Robbins-Monro gain (t + 1)^-exponent, in (0.5, 1]
  /// Draw momenta in the centre-of-mass-free subspace; right for translation-invariant energies,
  /// whose forces sum to zero, so that the chains keep their starting centres of mass.
  bool com_free = true;
  bool forces = true;  ///< keep the forces of kept frames (PSM training needs them)
  uint64_t seed = 0;
  std::filesystem::path checkpoint{};  ///< state file written during run(); empty = none
  int64_t checkpoint_every = 10000;    ///< kept frames between state files (rounded to rounds)
  bool progress = false;               ///< progress bar on stderr
  /// The chains this process advances (MPI ranks); the state holds only these.
  ChainShare share{};

  /// Throws psm::Error naming the first impossible option.
  void validate() const;
};

/// The chains (ChainState: positions, energies, step, which with the seed fixes momenta, time-step
/// factors and acceptance tests; kept frames), the forces at the positions, frozen or adapting
/// time steps and acceptance counts.
struct HamiltonianState : ChainState {
  torch::Tensor forces;    ///< [C, N, D] float64, forces at `positions`
  torch::Tensor log_step;  ///< [C] float64, log leapfrog time step per chain
  torch::Tensor accepted;  ///< [C] int64, accepted trajectories since burn-in ended
};

class HamiltonianSampler {
 public:
  /// `system` must outlive the sampler and have forces. Throws psm::Error on invalid options.
  HamiltonianSampler(const System& system, HamiltonianOptions options);

  const HamiltonianOptions& options() const { return options_; }

  /// A fresh state at `positions` [C, N, D] (C = options.chains; the state keeps the chains of
  /// options.share). Throws psm::Error on a wrong shape or a non-finite starting energy.
  HamiltonianState start(const torch::Tensor& positions) const;

  /// Advances `state` until it holds options.samples kept frames: burn-in first (adapting time
  /// steps), then production with frozen time steps. Writes options.checkpoint every
  /// options.checkpoint_every kept frames and at the end. Continuing a saved state gives the same
  /// frames as one uninterrupted run.
  void run(HamiltonianState& state) const;

  /// The first options.samples kept frames (round-major: frame = round * C + chain), with
  /// energies, forces when options.forces, kT, the system spec and the run's provenance.
  Dataset dataset(const HamiltonianState& state) const;

  /// Fraction of trajectories accepted since burn-in ended (NaN before).
  double acceptance(const HamiltonianState& state) const;

  /// Writes `state` atomically to `path`.
  void save(const std::filesystem::path& path, const HamiltonianState& state) const;
  /// Reads a state written by save(); throws psm::Error naming the file when it is unreadable or
  /// was made with other options (kT, chains, leapfrog steps, seed, ...; samples may differ).
  HamiltonianState load(const std::filesystem::path& path,
                        torch::Device device = torch::kCPU) const;

 private:
  /// One trajectory for all chains; adapts time steps while state.step < burn_in. Returns the
  /// fraction of chains that moved.
  double step(HamiltonianState& state) const;
  nlohmann::json fingerprint() const;
  nlohmann::json provenance(const HamiltonianState& state) const;

  const System& system_;
  HamiltonianOptions options_;
  CounterRandom random_;  ///< momenta, time-step factors and acceptance tests
};

}  // namespace psm
