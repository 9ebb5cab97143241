#include "psm/systems/double_well.h"

#include <fmt/format.h>

#include "systems/internal/pair_geometry.h"
#include "psm/core/error.h"

namespace psm {

DoubleWell::DoubleWell(DoubleWellOptions options) : options_(options) {
  check(options_.n >= 2, fmt::format("DoubleWell: n must be at least 2, got {}", options_.n));
  check(options_.dim == 2 || options_.dim == 3,
        fmt::format("DoubleWell: dim must be 2 or 3, got {}", options_.dim));
  check(options_.c > 0, fmt::format("DoubleWell: c must be positive, got {}", options_.c));
}

Evaluation DoubleWell::evaluate(const torch::Tensor& positions, EvalRequest request) const {
  const auto x = detail::checked_positions(positions, options_.n, options_.dim, "DoubleWell");
  const auto [centred, distance_squared, off_diagonal] = detail::pair_geometry(x);
  const auto distance = distance_squared.sqrt();
  const auto s = distance - options_.d0;
  const auto s2 = s * s;
  const double a = options_.a, b = options_.b, c = options_.c;

  Evaluation out;
  out.energy = 0.5 * ((a * s + b * s2 + c * s2 * s2) * off_diagonal).sum({1, 2});
  if (request.forces) {
    // dE/dx_i = sum_j g'(d_ij) (x_i - x_j) / d_ij: the 0.5 cancels the double count.
    const auto coefficient = -(a + 2.0 * b * s + 4.0 * c * s2 * s) / distance * off_diagonal;
    out.forces = detail::pair_forces(coefficient, centred);
  }
  return out;
}

}  // namespace psm
