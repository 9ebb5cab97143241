#pragma once
// Shared pieces of the dense pair potentials (Lennard-Jones, double well): input checks,
// all-pairs geometry and forces from a pair coefficient. Private to src/systems.

#include <torch/torch.h>

#include <cstdint>
#include <string_view>

namespace psm::detail {

/// Checks that positions is [B, n, dim] with a floating dtype and returns it as float64.
/// Throws psm::Error naming `who` otherwise.
torch::Tensor checked_positions(const torch::Tensor& positions, int64_t n, int64_t dim,
                                std::string_view who);

struct PairGeometry {
  torch::Tensor centred;           ///< [B, N, D] float64, x_i - mean(x) per frame
  torch::Tensor distance_squared;  ///< [B, N, N] float64, |x_i - x_j|^2; 1 on the diagonal
  torch::Tensor off_diagonal;      ///< [N, N] float64, 1 for i != j and 0 on the diagonal
};

/// All ordered pairs of a batch. Distances come from the Gram matrix of the centred coordinates,
/// |a|^2 + |b|^2 - 2 a.b, which needs no [B, N, N, D] tensor; centring keeps the cancellation
/// error at ~1e-16 of the cluster size squared. The diagonal is padded with 1 so that 1/d and
/// sqrt stay finite there; multiply by off_diagonal before summing. The caller owns the tensors
/// and may overwrite them in place.
/// @param positions [B, N, D] float64
PairGeometry pair_geometry(const torch::Tensor& positions);

/// F_i = sum_j coefficient_ij (x_i - x_j), as x_i * sum_j c_ij - (C x)_i without a
/// [B, N, N, D] tensor.
/// @param coefficient [B, N, N] float64, symmetric, zero on the diagonal
/// @param positions [B, N, D] float64
/// @return [B, N, D] float64
torch::Tensor pair_forces(const torch::Tensor& coefficient, const torch::Tensor& positions);

}  // namespace psm::detail
