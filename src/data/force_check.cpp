#include "psm/data/force_check.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "psm/core/error.h"

namespace psm {

double VirialTemperature::deviation(double expected_kT) const {
  const double difference = std::abs(kT - expected_kT);
  if (standard_error == 0) return difference == 0 ? 0 : std::numeric_limits<double>::infinity();
  return difference / standard_error;
}

VirialTemperature virial_temperature(const Dataset& data) {
  check(data.has_forces(), "virial temperature: the dataset has no forces");
  return virial_temperature(data.positions, data.forces);
}

VirialTemperature virial_temperature(const torch::Tensor& positions, const torch::Tensor& forces) {
  check(positions.dim() == 3 && forces.sizes() == positions.sizes(),
        "virial temperature: forces must have the shape [F, N, D] of the positions");
  const int64_t frames = positions.size(0);
  check(frames >= 2, fmt::format("virial temperature: needs >= 2 frames, got {}", frames));
  const torch::Tensor x = positions.to(torch::kFloat64);
  const torch::Tensor centred = x - x.mean(1, /*keepdim=*/true);
  const double dof = static_cast<double>(positions.size(2) * (positions.size(1) - 1));
  const torch::Tensor per_frame = -(centred * forces.to(torch::kFloat64)).sum({1, 2}) / dof;  // [F]
  return {.kT = per_frame.mean().item<double>(),
          .standard_error = per_frame.std().item<double>() / std::sqrt(static_cast<double>(frames)),
          .frames = frames};
}

std::string describe_force_check(const VirialTemperature& virial, double frames_kT) {
  const double sigmas = virial.deviation(frames_kT);
  const std::string numbers =
      fmt::format("kT from forces (virial) {:.4g} ± {:.2g}, frames' kT {:.5g}", virial.kT,
                  virial.standard_error, frames_kT);
  if (sigmas <= kForceCheckSigmas) return numbers + ": consistent";
  return fmt::format(
      "{}: {:.0f} standard errors apart. The forces are not those of a Boltzmann distribution "
      "of these frames at this kT (other potential, level of theory or units): PSM learns the "
      "forces' distribution, not the frames'",
      numbers, sigmas);
}

}  // namespace psm
