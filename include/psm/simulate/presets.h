#pragma once
// Per-system sampler settings for `psm simulate` and `psm validate`, and starting
// configurations for chains.

#include <torch/types.h>

#include <cstdint>
#include <string>

#include "psm/systems/potential.h"

namespace psm {

/// Settings that suit a system at its usual temperature; thin is chosen so that kept frames
/// are nearly decorrelated in energy (BENCHMARKS.md gives the measured tau).
struct SamplerPreset {
  std::string sampler = "mcmc";  ///< "mcmc", "hmc" or "langevin"
  int64_t chains = 128;          ///< chains (MCMC) or trajectories (Langevin)
  int64_t burn_in = 2000;        ///< steps before the first kept frame
  int64_t thin = 20;             ///< steps between kept frames
  double step_size = 0.1;        ///< initial MCMC proposal standard deviation, length units
  double time_step = 0.005;      ///< Langevin and HMC time step, time units of the system
  int64_t leapfrog_steps = 10;   ///< HMC: force evaluations per trajectory
  double friction = 1.0;         ///< Langevin collision rate, 1 / time units
  double spacing = 1.0;          ///< lattice spacing of starting configurations, length units
};

/// The preset for `system` by its name (lj13, lj55, dw4; other LJ and DW systems get the
/// settings of their family), Langevin for molecules (kcal/mol and Å), generic MCMC otherwise.
SamplerPreset sampler_preset(const System& system);

/// Settings for Hamiltonian Monte Carlo on `system`, the sampler a user or an experiment can pick
/// instead of the preset's (burn-in and thin count trajectories). Measured on LJ13 and LJ55 at
/// kT 1: energy tau of 17 and 21 trajectories of 10 force evaluations (BENCHMARKS.md).
SamplerPreset hamiltonian_preset(const System& system);

/// `count` starting configurations [count, N, D] float64: each places the N atoms on N distinct
/// random sites of a simple cubic (square in 2-D) lattice of spacing `spacing`, jitters them by
/// 5% of the spacing and moves the centroid to the origin.
torch::Tensor lattice_configurations(const System& system, int64_t count, double spacing,
                                     torch::Generator& generator);

}  // namespace psm
