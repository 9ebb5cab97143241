#pragma once
// Multi-particle double well (DW4 of Köhler et al. 2020, as in the DEM benchmark data):
//
//   E(x) = 0.5 * sum over ORDERED pairs i != j of [a s + b s^2 + c s^4],   s = d_ij - d0
//
// DW4 is n = 4 particles in 2-D with a = 0, b = -4, c = 0.9, d0 = 4, at kT = 1.

#include <cstdint>

#include "psm/systems/potential.h"

namespace psm {

struct DoubleWellOptions {
  int64_t n = 4;    ///< number of particles
  int64_t dim = 2;  ///< spatial dimension (2 or 3)
  double a = 0.0;   ///< linear coefficient, energy/length
  double b = -4.0;  ///< quadratic coefficient, energy/length^2
  double c = 0.9;   ///< quartic coefficient, energy/length^4 (> 0 keeps E bounded below)
  double d0 = 4.0;  ///< distance offset, length units
};

class DoubleWell final : public Potential {
 public:
  /// Throws psm::Error on n < 2, dim not 2 or 3 or c <= 0.
  explicit DoubleWell(DoubleWellOptions options);

  /// @param positions [B, n, dim], reduced length (any floating dtype; computed in float64)
  /// @return energy [B] float64, reduced energy; forces [B, n, dim] float64 = -dE/dx, analytic,
  ///         present iff request.forces
  Evaluation evaluate(const torch::Tensor& positions, EvalRequest request = {}) const override;

  const DoubleWellOptions& options() const { return options_; }

 private:
  DoubleWellOptions options_;
};

}  // namespace psm
