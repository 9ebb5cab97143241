#pragma once
// Analytic potentials with known Boltzmann moments, for sampler tests.

#include <torch/torch.h>

#include <cmath>
#include <memory>

#include "psm/simulate/autocorrelation.h"
#include "psm/systems/potential.h"

namespace psm::testing {

/// U = k/2 sum_i |x_i - a_i|^2 with a_i = 0 (anchored: not translation invariant) or a_i = the
/// centroid of x (centred: translation invariant, like LJ's restraint). Boltzmann moments:
/// anchored: Var x = kT/k per coordinate, <U> = N D kT / 2; centred: <U> = (N - 1) D kT / 2.
class Harmonic final : public Potential {
 public:
  Harmonic(double stiffness, bool centred) : stiffness_(stiffness), centred_(centred) {}
  Evaluation evaluate(const torch::Tensor& positions, EvalRequest request = {}) const override {
    const auto displacement =
        centred_ ? positions - positions.mean(1, /*keepdim=*/true) : positions;
    Evaluation result;
    result.energy = 0.5 * stiffness_ * displacement.square().sum({1, 2});
    // For the centred well the centroid term drops out: sum_i (x_i - mean) = 0.
    if (request.forces) result.forces = -stiffness_ * displacement;
    return result;
  }

 private:
  double stiffness_;
  bool centred_;
};

/// |mean(series) - expected| in standard errors, the error from the integrated autocorrelation
/// time of `series` [C, T].
inline double standard_errors_off(const torch::Tensor& series, double expected) {
  const double tau = integrated_autocorrelation_time(series).tau;
  const double error =
      series.std().item<double>() * std::sqrt(tau / static_cast<double>(series.numel()));
  return std::abs(series.mean().item<double>() - expected) / error;
}

inline std::unique_ptr<System> harmonic_system(int64_t atoms, int64_t dim, double stiffness,
                                               bool centred) {
  return std::make_unique<System>(
      "harmonic", std::vector<int64_t>(atoms, 0), dim, Units::reduced,
      std::make_shared<const Harmonic>(stiffness, centred),
      nlohmann::json{{"name", "harmonic"}, {"k", stiffness}, {"centred", centred}});
}

}  // namespace psm::testing
