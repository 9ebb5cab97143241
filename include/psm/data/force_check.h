#pragma once
// Whether a dataset's force labels belong to the distribution its frames were sampled from.
// PSM learns the Boltzmann distribution of the forces' potential; when the frames come from
// another potential (rMD17: frames of PBE+vdW-TS MD, forces recomputed at PBE/def2-SVP), PSM
// is right about the forces and wrong about the frames, and no metric against those frames can
// tell the model from the data. This check needs no potential, only frames and forces.

#include <cstdint>
#include <string>

#include "psm/io/dataset.h"

namespace psm {

/// The temperature the forces imply for the frames, by Stein's identity with the centred
/// positions as test function (the virial theorem): for frames x ~ exp(-U/kT) of a
/// translation-invariant potential, <sum_i (x_i - x̄) . F_i> = -kT d (N - 1). The standard error
/// comes from the spread of the chains' means when the frames' chains are known (correlated
/// frames of one chain count once), else it assumes independent frames.
struct VirialTemperature {
  double kT = 0;              ///< energy units
  double standard_error = 0;  ///< energy units
  int64_t frames = 0;
  int64_t chains = 0;  ///< independent chains the standard error comes from; 0: from the frames

  /// |kT - expected| in standard errors.
  double deviation(double expected_kT) const;
};

/// Chain of each frame, [F] int64, for frames as psm's samplers write them (provenance
/// "frame_order" round-major over "chains" or "trajectories"); an undefined tensor for any other
/// dataset, subsets of sampler output included.
torch::Tensor frame_chains(const Dataset& data);

/// With the frames' chains when frame_chains knows them. Throws psm::Error when the dataset has
/// no forces or fewer than two frames.
VirialTemperature virial_temperature(const Dataset& data);

/// The same for positions [F, N, D] and forces (or kT times a score) of that shape, both in
/// any floating dtype; throws psm::Error on mismatched shapes or fewer than two frames.
/// @param chains [F] int64 chain of each frame, or undefined: the frames are independent. Fewer
/// than four chains are too few for a spread, and the frames are then taken as independent.
VirialTemperature virial_temperature(const torch::Tensor& positions, const torch::Tensor& forces,
                                     const torch::Tensor& chains = {});

/// The temperature the forces imply along a set of bonds, by Stein's identity with the test
/// function (r - r̄) ∇r of each bond length r = |x_i - x_j|, r̄ its mean over the frames:
/// <(r - r̄) (F_j - F_i) . u> = kT <2 + 4 (r - r̄) / r> in 3-D, u = (x_i - x_j) / r, summed over
/// the bonds. It tests the stiff stretches that the whole-frame virial averages away: MD whose
/// thermostat leaves them hotter or colder than its stated temperature shows here, and PSM,
/// which follows the forces, then makes bonds narrower or wider than the frames'. The standard
/// error is virial_temperature's, from `chains` as there.
/// @param positions, forces [F, N, 3], F >= 2; @param bonds [K, 2] int64 atom pairs, K >= 1
VirialTemperature bond_virial_temperature(const torch::Tensor& positions,
                                          const torch::Tensor& forces, const torch::Tensor& bonds,
                                          const torch::Tensor& chains = {});

/// Forces are called inconsistent with the frames beyond this many standard errors.
inline constexpr double kForceCheckSigmas = 4.0;

/// One line for reports and logs: "kT from forces (virial) 0.99 ± 0.03 (spread of 8 chains),
/// frames' kT 0.9936: consistent" or, beyond kForceCheckSigmas, a warning that PSM would learn
/// another distribution. `frames_kT`: the temperature the frames were drawn at (sampled_kT, else
/// kT).
std::string describe_force_check(const VirialTemperature& virial, double frames_kT);

}  // namespace psm
