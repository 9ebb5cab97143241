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
/// assumes independent frames (correlated MD frames make it larger than stated).
struct VirialTemperature {
  double kT = 0;              ///< energy units
  double standard_error = 0;  ///< energy units
  int64_t frames = 0;

  /// |kT - expected| in standard errors.
  double deviation(double expected_kT) const;
};

/// Throws psm::Error when the dataset has no forces or fewer than two frames.
VirialTemperature virial_temperature(const Dataset& data);

/// The same for positions [F, N, D] and forces (or kT times a score) of that shape, both in
/// any floating dtype; throws psm::Error on mismatched shapes or fewer than two frames.
VirialTemperature virial_temperature(const torch::Tensor& positions, const torch::Tensor& forces);

/// Forces are called inconsistent with the frames beyond this many standard errors.
inline constexpr double kForceCheckSigmas = 4.0;

/// One line for reports and logs: "kT from forces (virial) 0.99 ± 0.03, frames' kT 0.9936:
/// consistent" or, beyond kForceCheckSigmas, a warning that PSM would learn another
/// distribution. `frames_kT`: the temperature the frames were drawn at (sampled_kT, else kT).
std::string describe_force_check(const VirialTemperature& virial, double frames_kT);

}  // namespace psm
