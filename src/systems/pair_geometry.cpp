#include "systems/internal/pair_geometry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "psm/core/error.h"

namespace psm::detail {

torch::Tensor checked_positions(const torch::Tensor& positions, int64_t n, int64_t dim,
                                std::string_view who) {
  check(positions.defined() && positions.dim() == 3 && positions.size(1) == n &&
            positions.size(2) == dim,
        fmt::format("{}: positions must have shape [B, {}, {}], got [{}]", who, n, dim,
                    positions.defined() ? fmt::format("{}", fmt::join(positions.sizes(), ", "))
                                        : "undefined"));
  check(torch::isFloatingType(positions.scalar_type()),
        fmt::format("{}: positions must be floating point, got {}", who,
                    c10::toString(positions.scalar_type())));
  return positions.to(torch::kFloat64);
}

PairGeometry pair_geometry(const torch::Tensor& positions) {
  const int64_t n = positions.size(1);
  const auto eye = torch::eye(n, positions.options());
  auto centred = positions - positions.mean(1, /*keepdim=*/true);
  const auto norm_squared = centred.square().sum(-1);  // [B, N]
  auto distance_squared =
      torch::baddbmm(norm_squared.unsqueeze(2) + norm_squared.unsqueeze(1), centred,
                     centred.transpose(1, 2), /*beta=*/1.0, /*alpha=*/-2.0);
  distance_squared.clamp_min_(0.0).add_(eye);  // rounding can make coincident pairs negative
  return {std::move(centred), std::move(distance_squared), 1.0 - eye};
}

torch::Tensor pair_forces(const torch::Tensor& coefficient, const torch::Tensor& positions) {
  return positions * coefficient.sum(-1, /*keepdim=*/true) - torch::bmm(coefficient, positions);
}

}  // namespace psm::detail
