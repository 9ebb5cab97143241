#pragma once
// Lennard-Jones cluster LJ-n with a harmonic restraint on the centre of mass, in the convention
// of the equivariant-flow-matching / DEM benchmark data (Klein et al. 2023):
//
//   E(x) = epsilon * sum over ORDERED pairs i != j of [(rm/d_ij)^12 - 2 (rm/d_ij)^6]
//          + oscillator_scale * 0.5 * sum_i |x_i - mean(x)|^2
//
// The pair sum counts every pair twice, so E is twice the textbook cluster energy plus the
// restraint; the LJ13 global minimum is 2 * (-44.326801) = -88.6536 without the restraint.

#include <cstdint>

#include "psm/systems/potential.h"

namespace psm {

struct LennardJonesOptions {
  int64_t n = 13;                 ///< number of particles
  double epsilon = 1.0;           ///< well depth per ordered pair, energy units
  double rm = 1.0;                ///< pair distance of the minimum, length units
  double oscillator_scale = 1.0;  ///< stiffness of the centre-of-mass restraint, energy/length^2
  int64_t dim = 3;                ///< spatial dimension (2 or 3)
};

class LennardJones final : public Potential {
 public:
  /// Throws psm::Error on n < 2, dim not 2 or 3, epsilon <= 0, rm <= 0 or oscillator_scale < 0.
  explicit LennardJones(LennardJonesOptions options);

  /// @param positions [B, n, dim], reduced length (any floating dtype; computed in float64)
  /// @return energy [B] float64, reduced energy; forces [B, n, dim] float64 = -dE/dx, analytic,
  ///         present iff request.forces
  Evaluation evaluate(const torch::Tensor& positions, EvalRequest request = {}) const override;

  const LennardJonesOptions& options() const { return options_; }

 private:
  LennardJonesOptions options_;
};

}  // namespace psm
