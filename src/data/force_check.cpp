#include "psm/data/force_check.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "psm/core/error.h"

namespace psm {

namespace {

/// Fewer chains than this give too rough a spread of chain means to quote as an error.
constexpr int64_t kMinChainsForSpread = 4;

/// sum(numerator) / sum(denominator) over frames [F], with the delta-method standard error of a
/// ratio of means: from the spread of the chains' means of the residual when `chains` [F] names
/// at least kMinChainsForSpread chains, else from the frames as independent.
VirialTemperature ratio_of_means(const torch::Tensor& numerator, const torch::Tensor& denominator,
                                 const torch::Tensor& chains) {
  const int64_t frames = numerator.size(0);
  const double scale = denominator.mean().item<double>();
  const double kT = numerator.mean().item<double>() / scale;
  const torch::Tensor residual = numerator - kT * denominator;
  if (chains.defined()) {
    check(
        chains.dim() == 1 && chains.size(0) == frames && (chains >= 0).all().item<bool>(),
        fmt::format("virial temperature: chains must be [{}] non-negative chain indices", frames));
    const torch::Tensor index = chains.to(torch::kInt64).to(residual.device());
    const int64_t slots = index.max().item<int64_t>() + 1;
    const torch::Tensor sums =
        torch::zeros({slots}, residual.options()).index_add_(0, index, residual);
    const torch::Tensor counts =
        torch::zeros({slots}, residual.options()).index_add_(0, index, torch::ones_like(residual));
    const torch::Tensor present = counts > 0;
    const int64_t num_chains = present.sum().item<int64_t>();
    if (num_chains >= kMinChainsForSpread) {
      const torch::Tensor means = sums.index({present}) / counts.index({present});
      return {.kT = kT,
              .standard_error =
                  (means.std() / scale).item<double>() / std::sqrt(static_cast<double>(num_chains)),
              .frames = frames,
              .chains = num_chains};
    }
  }
  return {.kT = kT,
          .standard_error =
              (residual.std() / scale).item<double>() / std::sqrt(static_cast<double>(frames)),
          .frames = frames};
}

}  // namespace

double VirialTemperature::deviation(double expected_kT) const {
  const double difference = std::abs(kT - expected_kT);
  if (standard_error == 0) return difference == 0 ? 0 : std::numeric_limits<double>::infinity();
  return difference / standard_error;
}

torch::Tensor frame_chains(const Dataset& data) {
  const nlohmann::json& record = data.provenance;
  if (!record.is_object() || !record.contains("frame_order")) return {};
  for (const char* key : {"chains", "trajectories"}) {
    if (record.contains(key) && record[key].is_number_integer() && record[key].get<int64_t>() > 0) {
      return torch::arange(data.num_frames(), torch::kInt64) % record[key].get<int64_t>();
    }
  }
  return {};
}

VirialTemperature virial_temperature(const Dataset& data) {
  check(data.has_forces(), "virial temperature: the dataset has no forces");
  return virial_temperature(data.positions, data.forces, frame_chains(data));
}

VirialTemperature virial_temperature(const torch::Tensor& positions, const torch::Tensor& forces,
                                     const torch::Tensor& chains) {
  check(positions.dim() == 3 && forces.sizes() == positions.sizes(),
        "virial temperature: forces must have the shape [F, N, D] of the positions");
  const int64_t frames = positions.size(0);
  check(frames >= 2, fmt::format("virial temperature: needs >= 2 frames, got {}", frames));
  const torch::Tensor x = positions.to(torch::kFloat64);
  const torch::Tensor centred = x - x.mean(1, /*keepdim=*/true);
  const double dof = static_cast<double>(positions.size(2) * (positions.size(1) - 1));
  const torch::Tensor per_frame = -(centred * forces.to(torch::kFloat64)).sum({1, 2}) / dof;  // [F]
  return ratio_of_means(per_frame, torch::ones_like(per_frame), chains);
}

VirialTemperature bond_virial_temperature(const torch::Tensor& positions,
                                          const torch::Tensor& forces, const torch::Tensor& bonds,
                                          const torch::Tensor& chains) {
  check(positions.dim() == 3 && positions.size(2) == 3 && forces.sizes() == positions.sizes(),
        "bond virial temperature: positions and forces must have the shape [F, N, 3]");
  const int64_t frames = positions.size(0), atoms = positions.size(1);
  check(frames >= 2, fmt::format("bond virial temperature: needs >= 2 frames, got {}", frames));
  check(bonds.dim() == 2 && bonds.size(1) == 2 && bonds.size(0) >= 1,
        "bond virial temperature: bonds must have the shape [K, 2], K >= 1");
  const torch::Tensor pairs = bonds.to(torch::kInt64).to(positions.device());
  check((pairs >= 0).all().item<bool>() && (pairs < atoms).all().item<bool>() &&
            (pairs.select(1, 0) != pairs.select(1, 1)).all().item<bool>(),
        fmt::format("bond virial temperature: a bond is out of range for {} atoms", atoms));
  const torch::Tensor x = positions.to(torch::kFloat64), f = forces.to(torch::kFloat64);
  const torch::Tensor i = pairs.select(1, 0), j = pairs.select(1, 1);
  const torch::Tensor separation = x.index_select(1, i) - x.index_select(1, j);  // [F, K, 3]
  const torch::Tensor r = separation.norm(2, -1);                                // [F, K]
  check((r > 0).all().item<bool>(), "bond virial temperature: bonded atoms coincide in a frame");
  const torch::Tensor stretch_force =  // (F_j - F_i) . u: the force pulling the bond shorter
      ((f.index_select(1, j) - f.index_select(1, i)) * separation / r.unsqueeze(-1)).sum(-1);
  const torch::Tensor dr = r - r.mean(0);
  const torch::Tensor lhs = (dr * stretch_force).sum(1), rhs = (2 + 4 * dr / r).sum(1);  // [F]
  return ratio_of_means(lhs, rhs, chains);
}

std::string describe_force_check(const VirialTemperature& virial, double frames_kT) {
  // An infinite error makes any value "consistent"; NaN compares as neither.
  if (!std::isfinite(virial.kT) || !std::isfinite(virial.standard_error)) {
    return "kT from forces (virial) cannot be estimated: its value or error is not finite (a "
           "frame with huge coordinates or forces, or too few atoms)";
  }
  const double sigmas = virial.deviation(frames_kT);
  const std::string spread =
      virial.chains > 0 ? fmt::format(" (spread of {} chains)", virial.chains) : "";
  const std::string numbers =
      fmt::format("kT from forces (virial) {:.4g} ± {:.2g}{}, frames' kT {:.5g}", virial.kT,
                  virial.standard_error, spread, frames_kT);
  if (sigmas <= kForceCheckSigmas) return numbers + ": consistent";
  return fmt::format(
      "{}: {:.0f} standard errors apart. Either the forces come from another potential, level "
      "of theory or units than the frames (then PSM learns the forces' distribution, not the "
      "frames'), or the frames are not at this kT (generated samples whose close contacts run "
      "hot or cold)",
      numbers, sigmas);
}

}  // namespace psm
