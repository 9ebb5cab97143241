#pragma once
// Helpers shared by the systems tests.

#include <torch/torch.h>

#include "psm/systems/potential.h"

namespace psm::testing {

/// Central finite-difference gradient of the energy: every coordinate of every frame is moved by
/// +-step, all displaced copies evaluated in one energy-only batch.
/// @param positions [B, N, D] float64
/// @return [B, N, D] float64, dE/dx
inline torch::Tensor finite_difference_gradient(const Potential& potential,
                                                const torch::Tensor& positions, double step) {
  const int64_t b = positions.size(0), n = positions.size(1), d = positions.size(2);
  const int64_t k = n * d;
  const auto unit = torch::eye(k, positions.options()).view({1, k, 1, n, d});
  const auto sign = torch::tensor({1.0, -1.0}, positions.options()).view({1, 1, 2, 1, 1});
  const auto displaced = positions.view({b, 1, 1, n, d}) + step * sign * unit;  // [B,K,2,N,D]
  const auto energy =
      potential.evaluate(displaced.reshape({b * k * 2, n, d}), {.forces = false}).energy;
  const auto e = energy.view({b, k, 2});
  return ((e.select(2, 0) - e.select(2, 1)) / (2.0 * step)).view({b, n, d});
}

/// max |forces + gradient| / max |gradient|: 0 when forces are exactly -dE/dx.
inline double force_gradient_mismatch(const torch::Tensor& forces, const torch::Tensor& gradient) {
  return ((forces + gradient).abs().max() / gradient.abs().max()).item<double>();
}

}  // namespace psm::testing
