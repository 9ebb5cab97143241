#pragma once
// Langevin dynamics with the BAOAB splitting (Leimkuhler & Matthews 2013) for any system with
// forces, many independent trajectories advanced together as one batch. BAOAB samples the
// configurational distribution of a harmonic oscillator exactly at any stable time step.
//
//   LangevinSampler sampler(system, {.kT = 0.9936, .time_step = 0.5 / akma_time_fs,
//                                    .masses = standard_atomic_masses(system.species())});
//   LangevinState state = sampler.start(initial_positions);   // [B, N, 3]
//   sampler.run(state);
//   Dataset frames = sampler.dataset(state);

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <vector>

#include "psm/io/dataset.h"
#include "psm/simulate/sample_record.h"
#include "psm/systems/potential.h"

namespace psm {

/// The time unit of (Å, kcal/mol, amu), sqrt(amu Å² / (kcal/mol)), in femtoseconds (AKMA).
inline constexpr double akma_time_fs = 48.88821291;

/// Masses in amu for atomic numbers `species` (psm::element(z).mass); species 0 (identical
/// model particles) get mass 1. [N] float64. Throws psm::Error on an unknown element.
torch::Tensor standard_atomic_masses(const std::vector<int64_t>& species);

struct LangevinOptions {
  double kT = 1.0;  ///< k_B T, energy units of the system
  /// Time units: sqrt(mass length² / energy), i.e. reduced for LJ/DW and AKMA (48.89 fs) for
  /// Å, kcal/mol and amu.
  double time_step = 0.005;
  double friction = 1.0;   ///< collision rate gamma, 1 / time units
  torch::Tensor masses{};  ///< [N] float64 per-atom masses (amu for molecules); undefined = all 1
  int64_t trajectories = 16;   ///< independent trajectories advanced together (the batch)
  int64_t burn_in = 1000;      ///< steps before the first recorded frame
  int64_t record_every = 100;  ///< steps between recorded frames
  int64_t samples = 1000;  ///< recorded frames in all (all trajectories); last round may be partial
  /// Remove the total momentum from the starting and the thermostat velocities, for
  /// translation-invariant energies: the mass-weighted centre of mass then stays where it began.
  bool com_free = true;
  uint64_t seed = 0;
  std::filesystem::path checkpoint{};  ///< state file written during run(); empty = none
  int64_t checkpoint_every = 10000;    ///< recorded frames between state files
  bool progress = false;               ///< progress bar on stderr
  /// The trajectories this process advances (MPI ranks); the state holds only these.
  ChainShare share{};

  /// Throws psm::Error naming the first impossible option.
  void validate() const;
};

/// The trajectories (ChainState: positions, energies, step, which with the seed fixes the
/// thermostat noise, recorded frames with energies and forces), plus their velocities and
/// forces and the kinetic energies of the recorded rounds.
struct LangevinState : ChainState {
  torch::Tensor velocities;  ///< [B, N, D] float64, length / time units
  /// [B, N, D] velocities just after the last step's O update, where the kinetic energy is
  /// measured: BAOAB samples them (like the positions) exactly for a harmonic system, while the
  /// full-step velocities run cold by a factor 1 - (ω dt / 2)² in a mode of frequency ω, a few
  /// per cent for X-H stretches at 0.5 fs.
  torch::Tensor midstep_velocities;
  torch::Tensor forces;                ///< [B, N, D] float64, forces at `positions`
  std::vector<torch::Tensor> kinetic;  ///< per recorded round [B] float64, kinetic energies
};

class LangevinSampler {
 public:
  /// `system` must outlive the sampler. Throws psm::Error on invalid options.
  LangevinSampler(const System& system, LangevinOptions options);

  const LangevinOptions& options() const { return options_; }

  /// A fresh state at `positions` [B, N, D] (B = options.trajectories; the state keeps those of
  /// options.share), velocities drawn from
  /// the Maxwell-Boltzmann distribution at kT. Throws psm::Error on a wrong shape or non-finite
  /// starting energy.
  LangevinState start(const torch::Tensor& positions) const;

  /// Advances `state` until it holds options.samples recorded frames; writes options.checkpoint
  /// every options.checkpoint_every frames and at the end. Continuing a saved state gives the
  /// same frames as one uninterrupted run.
  void run(LangevinState& state) const;

  /// The first options.samples recorded frames (round-major: frame = round * B + trajectory)
  /// with energies, forces, kT, the system spec and the run's provenance.
  Dataset dataset(const LangevinState& state) const;

  /// 2 K / (k_B * degrees of freedom) of each trajectory's recorded rounds, [B, T] float64,
  /// energy units; the degrees of freedom exclude the centre of mass when options.com_free.
  /// [B, 0] before any frame.
  torch::Tensor kinetic_temperatures(const LangevinState& state) const;
  /// Their mean; NaN before any frame.
  double kinetic_temperature(const LangevinState& state) const;

  /// Writes `state` atomically to `path`.
  void save(const std::filesystem::path& path, const LangevinState& state) const;
  /// Reads a state written by save(); throws psm::Error naming the file when it is unreadable
  /// or was made with other options (samples may differ).
  /// Its tensors are put on `device`, wherever the state was saved from.
  LangevinState load(const std::filesystem::path& path, torch::Device device = torch::kCPU) const;

 private:
  /// One BAOAB step for all trajectories.
  void step(LangevinState& state) const;
  /// Removes the total momentum of `velocities` [B, N, D] when options.com_free.
  torch::Tensor remove_momentum(const torch::Tensor& velocities) const;
  /// [B] kinetic energies of `velocities`.
  torch::Tensor kinetic_energy(const torch::Tensor& velocities) const;
  nlohmann::json fingerprint() const;
  nlohmann::json provenance(const LangevinState& state) const;

  const System& system_;
  LangevinOptions options_;
  torch::Tensor masses_;  ///< [1, N, 1] float64
  CounterRandom random_;  ///< starting velocities and thermostat noise
};

}  // namespace psm
