#pragma once
// Small in-memory training data for the train/ tests: a triangle of three particles in 2-D held
// by springs, U = k/2 sum_{i<j} (r_ij - r0)^2, with analytic forces. Frames are the equilateral
// triangle at a random angle plus small Gaussian displacements: a ring-shaped, non-Gaussian
// distribution that a diffusion model must learn (the untrained EDM model is the Gaussian one).

#include <torch/torch.h>

#include <cmath>
#include <numbers>

#include "psm/core/random.h"
#include "psm/diffusion/loss.h"
#include "psm/io/dataset.h"
#include "psm/model/egnn.h"

namespace psm::test {

inline constexpr double kSpringStiffness = 100.0;  // energy / length^2
inline constexpr double kRestLength = 1.0;         // length

/// Forces [F, 3, 2] float64 of the spring triangle at positions [F, 3, 2].
inline torch::Tensor spring_forces(const torch::Tensor& x) {
  const torch::Tensor diff = x.unsqueeze(2) - x.unsqueeze(1);  // [F, N, N, D] x_i - x_j
  const torch::Tensor r = (diff.square().sum(-1) + torch::eye(x.size(1), x.options())).sqrt();
  const torch::Tensor off_diagonal = 1 - torch::eye(x.size(1), x.options());
  const torch::Tensor magnitude = kSpringStiffness * (r - kRestLength) / r * off_diagonal;
  return -(magnitude.unsqueeze(-1) * diff).sum(2);
}

/// `frames` frames of the spring triangle at kT = 1 (thermal displacement about 0.1).
inline Dataset spring_triangle(int64_t frames, uint64_t seed) {
  torch::Generator rng = make_generator(seed, 77);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const double side = kRestLength;
  const torch::Tensor triangle =
      torch::tensor({0.0, 0.0, side, 0.0, side / 2, side * std::sqrt(3.0) / 2}, f64).view({3, 2});
  const torch::Tensor angle = torch::rand({frames}, rng, f64) * (2 * std::numbers::pi);
  const torch::Tensor c = angle.cos(), s = angle.sin();
  const torch::Tensor rotation = torch::stack({c, -s, s, c}, 1).view({frames, 2, 2});
  torch::Tensor x = torch::matmul(triangle - triangle.mean(0), rotation.transpose(1, 2));
  x = x + 0.1 / std::sqrt(2.0) * torch::randn({frames, 3, 2}, rng, f64);
  x = x - x.mean(1, true);
  Dataset data;
  data.positions = x;
  data.forces = spring_forces(x);
  data.species = {0, 0, 0};
  data.kT = 1.0;
  data.system = nullptr;
  data.provenance = {{"generator", "spring triangle (test)"}, {"seed", seed}};
  return data;
}

/// A small EGNN for the spring triangle: 2 layers, 16 wide.
inline EgnnOptions small_network() {
  return EgnnOptions(0, torch::Tensor()).layers(2).hidden(16).noise_features(8);
}

/// Noise levels from below the thermal displacement (0.1) to above the triangle's size.
inline LossOptions triangle_loss() {
  LossOptions loss;
  loss.schedule.sigma_min = 0.01;
  loss.schedule.sigma_max = 3.0;
  return loss;
}

}  // namespace psm::test
