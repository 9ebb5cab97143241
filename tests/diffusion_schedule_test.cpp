// Noise levels: training distributions, sampling grids, process scales.

#include <gtest/gtest.h>

#include <cmath>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/diffusion/schedule.h"

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

TEST(DiffusionSchedule, GeometricGridHasConstantRatio) {
  const torch::Tensor grid = psm::sigma_grid(psm::SigmaGrid::geometric, 10.0, 0.01, 6);
  ASSERT_EQ(grid.size(0), 7);
  EXPECT_EQ(grid[0].item<double>(), 10.0);
  EXPECT_EQ(grid[6].item<double>(), 0.01);
  const torch::Tensor ratio = grid.slice(0, 1) / grid.slice(0, 0, -1);
  EXPECT_TRUE(torch::allclose(ratio, torch::full({6}, std::pow(1e-3, 1.0 / 6), kF64)));
}

TEST(DiffusionSchedule, EdmGridFollowsRhoFormula) {
  const int64_t steps = 18;
  const double rho = 7;
  const torch::Tensor grid = psm::sigma_grid(psm::SigmaGrid::edm, 80.0, 0.002, steps, rho);
  ASSERT_EQ(grid.size(0), steps + 1);
  EXPECT_EQ(grid[0].item<double>(), 80.0);
  EXPECT_EQ(grid[steps].item<double>(), 0.002);
  const double i = 5;
  const double expected = std::pow(
      std::pow(80.0, 1 / rho) + i / steps * (std::pow(0.002, 1 / rho) - std::pow(80.0, 1 / rho)),
      rho);
  EXPECT_NEAR(grid[5].item<double>(), expected, 1e-12 * expected);
  EXPECT_TRUE((grid.slice(0, 1) < grid.slice(0, 0, -1)).all().item<bool>());
  EXPECT_THROW(psm::sigma_grid(psm::SigmaGrid::edm, 1.0, 2.0, 10), psm::Error);
}

TEST(DiffusionSchedule, TrainingSigmasFollowTheirDistributions) {
  torch::Generator rng = psm::make_generator(41);
  const int64_t n = 100000;
  const psm::NoiseSchedule uniform{.sigma_min = 0.01, .sigma_max = 100.0};
  const torch::Tensor log_uniform = psm::sample_training_sigmas(uniform, n, rng).log();
  EXPECT_GE(log_uniform.min().item<double>(), std::log(0.01));
  EXPECT_LE(log_uniform.max().item<double>(), std::log(100.0));
  // ln σ uniform on [ln 0.01, ln 100]: mean 0, variance (ln 10⁴)² / 12.
  const double width = std::log(1e4);
  EXPECT_NEAR(log_uniform.mean().item<double>(), 0.0, 5 * width / std::sqrt(12.0 * n));
  EXPECT_NEAR(log_uniform.var().item<double>() / (width * width / 12), 1.0, 0.02);

  const psm::NoiseSchedule normal{.sigma_min = 0.1,
                                  .sigma_max = 10.0,
                                  .distribution = psm::SigmaDistribution::log_normal,
                                  .p_mean = -0.5,
                                  .p_std = 1.0};
  const torch::Tensor log_normal = psm::sample_training_sigmas(normal, n, rng).log();
  EXPECT_NEAR(log_normal.min().item<double>(), std::log(0.1), 1e-12);
  EXPECT_LE(log_normal.max().item<double>(), std::log(10.0) + 1e-12);
  // Clipping piles the tails onto the bounds: P(ln σ <= ln 0.1) = Φ((ln 0.1 + 0.5) / 1).
  const double at_min =
      log_normal.le(std::log(0.1) + 1e-12).to(torch::kFloat64).mean().item<double>();
  const double expected = 0.5 * std::erfc(-(std::log(0.1) + 0.5) / std::sqrt(2.0));
  EXPECT_NEAR(at_min, expected, 5 * std::sqrt(expected * (1 - expected) / n));
  // Clipping keeps the median, which lies inside [σ_min, σ_max].
  EXPECT_NEAR(torch::median(log_normal).item<double>(), -0.5, 0.02);
}

TEST(DiffusionSchedule, ProcessScales) {
  const torch::Tensor sigma = torch::tensor({0.01, 1.0, 50.0}, kF64);
  const psm::ProcessScales ve = psm::process_scales(psm::NoiseProcess::variance_exploding, sigma);
  EXPECT_TRUE(ve.alpha.eq(1).all().item<bool>());
  EXPECT_TRUE(ve.s.equal(sigma));
  const psm::ProcessScales vp = psm::process_scales(psm::NoiseProcess::variance_preserving, sigma);
  EXPECT_TRUE(torch::allclose(vp.alpha.square() + vp.s.square(), torch::ones({3}, kF64)));
  EXPECT_TRUE(torch::allclose(vp.s / vp.alpha, sigma));
}

TEST(DiffusionSchedule, SuggestedSigmaMaxIsLargestFrameDistance) {
  // Three 2-atom frames in 1-D; CoM-free they are (-d/2, d/2) with d = 1, 3, -2.
  const torch::Tensor positions =
      torch::tensor({0.0, 1.0, 5.0, 8.0, 2.0, 0.0}, kF64).view({3, 2, 1});
  // Largest CoM-free distance: frames d = 3 and d = -2, ||(-1.5, 1.5) - (1, -1)|| = 2.5 sqrt 2.
  EXPECT_NEAR(psm::suggest_sigma_max(positions, true), 2.5 * std::sqrt(2.0), 1e-12);
  // Without the projection the translation counts: frames 1 and 2 are sqrt(25 + 49) apart,
  // and frame 2 is sqrt(89) from the origin.
  EXPECT_NEAR(psm::suggest_sigma_max(positions, false), std::sqrt(89.0), 1e-12);
  // A single frame: its distance to the prior's centre.
  EXPECT_NEAR(psm::suggest_sigma_max(positions.slice(0, 1, 2), true), 1.5 * std::sqrt(2.0), 1e-12);
}

TEST(DiffusionSchedule, ParsesOptionNames) {
  EXPECT_EQ(psm::sigma_grid_from_string("edm"), psm::SigmaGrid::edm);
  EXPECT_EQ(psm::sigma_distribution_from_string("log_normal"), psm::SigmaDistribution::log_normal);
  EXPECT_EQ(psm::noise_process_from_string("vp"), psm::NoiseProcess::variance_preserving);
  EXPECT_EQ(psm::to_string(psm::SigmaGrid::geometric), "geometric");
  EXPECT_THROW(psm::sigma_grid_from_string("linear"), psm::Error);
  EXPECT_THROW(psm::NoiseSchedule({.sigma_min = 0}).validate("train.schedule"), psm::Error);
}

}  // namespace
