// The configurational-temperature identity <|F|^2> = kT <laplacian U>, which holds for any
// Boltzmann distribution (integration by parts), checked on psm's own LJ13 MCMC samples: a
// joint test of the potential's forces and the sampler's stationary distribution.

#include <gtest/gtest.h>

#include "psm/simulate/simulation.h"
#include "psm/systems/potential.h"

namespace {

/// Laplacian of U at each configuration [B, N, D] by central differences of the forces:
/// lap U = -sum_k dF_k/dx_k. Returns [B].
torch::Tensor laplacian_from_forces(const psm::System& system, const torch::Tensor& x, double h) {
  const int64_t batch = x.size(0), coordinates = x.size(1) * x.size(2);
  // All 2 * coordinates displaced copies of every configuration in one batched call.
  const torch::Tensor basis =
      torch::eye(coordinates, x.options()).reshape({coordinates, x.size(1), x.size(2)});
  const torch::Tensor displaced =
      torch::cat({x.unsqueeze(1) + h * basis, x.unsqueeze(1) - h * basis}, 1)
          .reshape({-1, x.size(1), x.size(2)});
  const torch::Tensor forces =
      system.evaluate(displaced).forces.reshape({batch, 2, coordinates, coordinates});
  const torch::Tensor diagonal =
      forces.select(1, 0).diagonal(0, 1, 2) - forces.select(1, 1).diagonal(0, 1, 2);
  return -diagonal.sum(1) / (2 * h);
}

TEST(ConfigurationalTemperature, HoldsOnLj13MetropolisSamples) {
  const auto system = psm::make_system({{"name", "lj13"}});
  psm::SimulationSettings settings;
  settings.kT = 1.0;
  settings.samples = 2048;
  settings.sampler = "mcmc";
  settings.chains = 64;
  settings.burn_in = 2000;
  settings.thin = 20;
  settings.seed = 3;
  const psm::Dataset data = psm::simulate(*system, settings).dataset;
  const torch::Tensor force_squared = data.forces.square().sum({1, 2});  // [F]
  const torch::Tensor laplacian = laplacian_from_forces(*system, data.positions, 1e-4);
  // The per-frame difference has mean zero; compare it with its standard error.
  const torch::Tensor difference = force_squared - settings.kT * laplacian;
  const double mean = difference.mean().item<double>();
  const double error = difference.std().item<double>() / std::sqrt(difference.size(0));
  const double ratio =
      force_squared.mean().item<double>() / (settings.kT * laplacian.mean().item<double>());
  EXPECT_LT(std::abs(mean), 4 * error) << "ratio <|F|^2> / kT<lap U> = " << ratio;
  EXPECT_NEAR(ratio, 1.0, 0.05);
  // A wrong temperature must fail the same check: the test has the power to see it.
  const torch::Tensor wrong = force_squared - 1.2 * settings.kT * laplacian;
  EXPECT_GT(std::abs(wrong.mean().item<double>()), 4 * error);
}

}  // namespace
