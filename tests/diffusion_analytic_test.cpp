// The closed-form Gaussian mixtures that the loss and sampler tests rely on.

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/diffusion/analytic.h"

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

psm::GaussianMixture two_widths(bool com_free) {
  const torch::Tensor means =
      torch::tensor({2.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, -2.0, 0.0, 0.0}, kF64)
          .view({2, 3, 2});
  return psm::GaussianMixture::isotropic(torch::tensor({0.3, 0.7}, kF64), means,
                                         torch::tensor({0.4, 0.8}, kF64), com_free);
}

TEST(DiffusionAnalytic, ScoreIsGradientOfLogProb) {
  torch::Generator rng = psm::make_generator(11);
  for (const bool com_free : {true, false}) {
    const psm::GaussianMixture mixture = two_widths(com_free);
    const torch::Tensor x = torch::randn({5, 3, 2}, rng, kF64).requires_grad_();
    const torch::Tensor sigma = torch::tensor({0.0, 0.1, 0.7, 2.0, 9.0}, kF64);
    const torch::Tensor gradient =
        torch::autograd::grad({mixture.log_prob(x, sigma).sum()}, {x})[0];
    EXPECT_TRUE(torch::allclose(mixture.score(x.detach(), sigma), psm::project(gradient, com_free),
                                1e-10, 1e-12));
    if (com_free) {
      EXPECT_LT(mixture.score(x.detach(), sigma).sum(1).abs().max().item<double>(), 1e-12);
    }
  }
}

// The normaliser lives in the (N - 1) D dimensional CoM-free space: an isotropic component
// N(0, s² P) has log p(0) = -d_eff / 2 log(2π s²).
TEST(DiffusionAnalytic, CoMFreeDensityIsNormalisedInEffectiveDimension) {
  const psm::GaussianMixture gaussian = psm::GaussianMixture::isotropic(
      torch::ones({1}, kF64), torch::zeros({1, 4, 3}, kF64), torch::tensor({0.5}, kF64), true);
  ASSERT_EQ(gaussian.effective_dim(), 9);
  const double sigma = 0.3;
  const double variance = 0.25 + sigma * sigma;
  const double expected = -4.5 * std::log(2 * std::numbers::pi * variance);
  EXPECT_NEAR(
      gaussian.log_prob(torch::zeros({1, 4, 3}, kF64), torch::tensor({sigma}, kF64)).item<double>(),
      expected, 1e-12);
}

// p_σ(x) = E_{x0 ~ p}[N(x; x0, σ² P)], estimated by Monte Carlo, for a mixture whose components
// differ in width (where a wrong dimension in the normaliser would change the weights).
TEST(DiffusionAnalytic, NoisedDensityIsConvolutionWithProjectedGaussian) {
  torch::Generator rng = psm::make_generator(12);
  const psm::GaussianMixture mixture = two_widths(true);
  const int64_t draws = 400000;
  const torch::Tensor x0 = mixture.sample(draws, rng);
  const torch::Tensor x = mixture.sample(3, rng);
  const double sigma = 1.0;
  const double d_eff = 4;
  for (int64_t i = 0; i < 3; ++i) {
    const torch::Tensor distance2 = (x0 - x[i]).square().sum({1, 2});
    const torch::Tensor kernel = (-distance2 / (2 * sigma * sigma)).exp() /
                                 std::pow(2 * std::numbers::pi * sigma * sigma, d_eff / 2);
    const double estimate = kernel.mean().item<double>();
    const double standard_error = kernel.std().item<double>() / std::sqrt(draws);
    const double exact =
        mixture.log_prob(x[i].unsqueeze(0), torch::tensor({sigma}, kF64)).exp().item<double>();
    EXPECT_NEAR(estimate, exact, 5 * standard_error) << "point " << i;
  }
}

TEST(DiffusionAnalytic, HarmonicCovarianceIsKTTimesPseudoInverse) {
  torch::Generator rng = psm::make_generator(13);
  const torch::Tensor a = torch::randn({6, 6}, rng, kF64);
  const torch::Tensor stiffness = a.matmul(a.t()) + torch::eye(6, kF64);
  const double kT = 0.7;
  const psm::GaussianMixture harmonic =
      psm::GaussianMixture::harmonic(stiffness, torch::zeros({3, 2}, kF64), kT, true);
  const torch::Tensor samples = harmonic.sample(200000, rng).view({-1, 6});
  const torch::Tensor covariance = samples.t().matmul(samples) / samples.size(0);
  const torch::Tensor p =
      torch::eye(6, kF64) - torch::kron(torch::full({3, 3}, 1.0 / 3, kF64), torch::eye(2, kF64));
  const torch::Tensor expected = kT * torch::linalg_pinv(p.matmul(stiffness).matmul(p));
  const double scale = expected.abs().max().item<double>();
  EXPECT_LT((covariance - expected).abs().max().item<double>(), 0.02 * scale);
  EXPECT_LT(samples.view({-1, 3, 2}).sum(1).abs().max().item<double>(), 1e-12);
}

TEST(DiffusionAnalytic, RejectsCovarianceOutsideCoMFreeSpace) {
  EXPECT_THROW(psm::GaussianMixture(torch::ones({1}, kF64), torch::zeros({1, 3, 2}, kF64),
                                    torch::eye(6, kF64).unsqueeze(0), true),
               psm::Error);
  EXPECT_THROW(psm::GaussianMixture(torch::ones({1}, kF64), torch::zeros({1, 3, 2}, kF64),
                                    -torch::eye(6, kF64).unsqueeze(0), false),
               psm::Error);
}

}  // namespace
