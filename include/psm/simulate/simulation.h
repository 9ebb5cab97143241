#pragma once
// One call that runs the sampler a system calls for (MCMC or Langevin, with its preset filled in
// where the caller leaves a setting open), resumably, and reports what it cost. Used by
// `psm simulate` and `psm validate`.

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "psm/core/communicator.h"
#include "psm/io/dataset.h"
#include "psm/systems/potential.h"

namespace psm {

/// The samplers a simulation can run: Metropolis MCMC (metropolis.h), Hamiltonian Monte Carlo
/// (hamiltonian.h) or Langevin dynamics (langevin.h).
enum class SimulationSampler { mcmc, hmc, langevin };

/// "mcmc", "hmc" or "langevin"; throws psm::Error "unknown sampler 'x' (known: ...)".
SimulationSampler simulation_sampler_from_string(const std::string& name);
std::string to_string(SimulationSampler sampler);

struct SimulationSettings {
  double kT = 1.0;                          ///< k_B T, energy units of the system
  int64_t samples = 1000;                   ///< frames to keep, all chains together
  std::optional<std::string> sampler{};     ///< "mcmc", "hmc" or "langevin"; default: the preset
  std::optional<int64_t> chains{};          ///< chains or trajectories
  std::optional<int64_t> burn_in{};         ///< steps before the first kept frame
  std::optional<int64_t> thin{};            ///< steps between kept frames (Langevin: record_every)
  std::optional<double> step_size{};        ///< MCMC initial proposal std, length units
  std::optional<double> time_step{};        ///< Langevin and HMC, time units of the system
  std::optional<int64_t> leapfrog_steps{};  ///< HMC: force evaluations per trajectory
  std::optional<double> friction{};         ///< Langevin, 1 / time units
  /// MCMC (default 0.5) and HMC (default 0.8): burn-in adapts step sizes toward it
  std::optional<double> target_acceptance{};
  bool forces = true;  ///< label kept frames with forces
  uint64_t seed = 0;
  std::filesystem::path checkpoint{};  ///< state file; empty = none
  int64_t checkpoint_every = 10000;    ///< kept frames between state files
  bool resume = false;                 ///< continue from `checkpoint` (which must exist)
  /// Starting configurations [F, N, D]; chain i starts at frame i mod F. Undefined: random
  /// lattice placements (preset spacing), centred at the origin.
  torch::Tensor initial_positions{};
  bool progress = false;
  /// Where the chains run; the returned dataset is on the CPU either way.
  torch::Device device = torch::kCPU;
};

struct SimulationOutcome {
  Dataset dataset;              ///< settings.samples frames, with provenance
  torch::Tensor energy_series;  ///< [C, T] float64, energies of all kept frames per chain
  std::string sampler;          ///< "mcmc", "hmc" or "langevin"
  int64_t chains = 0;
  int64_t thin = 0;                  ///< steps between kept frames
  double acceptance = 0.0;           ///< MCMC / HMC acceptance after burn-in; NaN for Langevin
  double kinetic_temperature = 0.0;  ///< Langevin, energy units; NaN for MCMC and HMC
  /// Langevin: [C, T] float64 kinetic temperature of each chain's recorded rounds (energy
  /// units); undefined for MCMC
  torch::Tensor kinetic_series;
  double sampling_cpu_seconds = 0.0;  ///< process CPU time (all threads) of burn-in + sampling
  double sampling_wall_seconds = 0.0;
  double labelling_cpu_seconds = 0.0;  ///< CPU time of force labels computed after sampling
};

/// Runs the sampler for `system` with `settings` (presets from sampler_preset() where unset).
/// Under several ranks of `ranks` (each calls it with the same settings) the chains are shared
/// out in contiguous blocks and gathered on rank 0, whose outcome equals that of one process
/// frame for frame; the others get an outcome without a dataset (timings only).
/// Throws psm::Error on impossible settings or an unusable state file.
SimulationOutcome simulate(const System& system, const SimulationSettings& settings,
                           const Communicator& ranks = Communicator());

/// Sets settings.time_step and settings.friction (those given) from the units users give them
/// in: fs and 1/ps for molecules (Units::kcal_mol_angstrom), whose samplers work in AKMA time
/// units; the system's reduced time and 1/time otherwise.
void set_langevin_time_from_user(SimulationSettings& settings, Units units,
                                 std::optional<double> time_step_user,
                                 std::optional<double> friction_user);

}  // namespace psm
