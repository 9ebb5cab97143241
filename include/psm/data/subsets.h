#pragma once
// Training sets that reproduce the situations PSM is meant for (METHOD.md, "Why this removes
// bias"): few frames, frames from the wrong temperature, frames stuck in one basin, frames
// selected by a criterion. Each returns a new Dataset whose provenance records the step and
// nests the source's provenance, so every file says how it was made.

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "psm/io/dataset.h"
#include "psm/systems/potential.h"

namespace psm {

/// The ways of making a training set from a larger dataset, one function below each.
enum class SubsetKind { limited, temperature, basin, energy, torsion };

/// "limited", "temperature", "basin", "energy" or "torsion"; throws psm::Error
/// "unknown training-set kind 'x' (known: ...)".
SubsetKind subset_kind_from_string(const std::string& name);
std::string to_string(SubsetKind kind);
std::vector<std::string> subset_kind_names();

/// `frames` frames drawn without replacement from `source`. Throws psm::Error when `frames`
/// is not in [1, source.num_frames()].
Dataset limited_subset(const Dataset& source, int64_t frames, uint64_t seed);

/// Frames sampled at source.kT, relabelled as training data for `target_kT`: forces do not
/// depend on the temperature, so only the metadata changes (kT = target_kT, sampled_kT = the
/// source's). `frames` > 0 also draws that many frames (as limited_subset).
Dataset temperature_biased_subset(const Dataset& source, double target_kT,
                                  std::optional<int64_t> frames, uint64_t seed);

struct EnergySelection {
  std::optional<double> energy_max{};  ///< keep frames with energy <= this (energy units)
  std::optional<double> quantile{};    ///< keep the lowest `quantile` fraction, in (0, 1]
};

/// Frames selected by an energy threshold (a "too cold" set when it keeps the low tail).
/// Exactly one of the two criteria must be set; the source needs energies.
Dataset energy_selected_subset(const Dataset& source, const EnergySelection& selection);

/// Dihedral angle of atoms (a, b, c, d) for each frame: positions [F, N, 3] -> [F] degrees in
/// (-180, 180], IUPAC sign convention (positive when, looking along b -> c, the bond b-a turns
/// clockwise to eclipse c-d).
torch::Tensor dihedral_angles(const torch::Tensor& positions, const std::array<int64_t, 4>& atoms);

/// Many dihedrals at once: quadruples [T, 4] int64 rows (a, b, c, d) -> [F, T] degrees, as above.
torch::Tensor dihedral_angles(const torch::Tensor& positions, const torch::Tensor& quadruples);

/// Frames whose dihedral (a, b, c, d) lies in [low, high] degrees (low > high wraps through 180).
Dataset torsion_selected_subset(const Dataset& source, const std::array<int64_t, 4>& atoms,
                                double low_degrees, double high_degrees);

struct BasinOptions {
  int64_t frames = 1000;     ///< frames to keep in all
  int64_t trajectories = 8;  ///< short trajectories (chains), all started in the minimum
  int64_t burn_in = 200;     ///< steps before recording (MCMC step-size adaptation)
  int64_t thin = 10;         ///< steps between recorded frames
  std::optional<int64_t> start_frame{};  ///< frame to minimise; default: lowest energy
  std::optional<double> kT{};            ///< sampling k_B T; default: source.kT
  uint64_t seed = 0;
};

/// Frames from short trajectories that all start in the minimum reached by minimising one frame
/// of `source`: the data of a simulation that never left its first basin. Needs `system` to
/// minimise and to sample; the result's kT is source.kT (the target).
Dataset basin_biased_subset(const System& system, const Dataset& source,
                            const BasinOptions& options);

}  // namespace psm
