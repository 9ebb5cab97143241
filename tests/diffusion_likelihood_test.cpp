// The probability-flow log-density: exact on distributions with analytic scores, invariant under
// the symmetries of an equivariant network, and Hutchinson's divergence unbiased.

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/diffusion/analytic.h"
#include "psm/diffusion/likelihood.h"
#include "psm/model/egnn.h"
#include "psm/model/score_model.h"
#include "test_util.h"

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// Two CoM-free components of different widths, 3 atoms in 2-D (d = 4).
psm::GaussianMixture two_component_mixture() {
  const torch::Tensor means =
      torch::tensor({2.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, -2.0, 0.0, 0.0}, kF64)
          .view({2, 3, 2});
  return psm::GaussianMixture::isotropic(torch::tensor({0.3, 0.7}, kF64), means,
                                         torch::tensor({0.4, 0.8}, kF64), true);
}

// σ_max far above the data's extent: the prior N(0, σ_max² P) differs from p_σmax by about
// ||μ|| / σ_max in log-density at the prior's typical points (y · μ / σ_max²), 3e-4 here, where
// σ_max = 100 leaves 0.05. Over these 7 decades Heun's error is 0.10 at 100 EDM steps and 0.009
// at 400 (O(h²)).
psm::LikelihoodOptions options_for(int64_t steps) {
  return {.steps = steps, .sigma_min = 1e-3, .sigma_max = 1e4, .batch_size = 64};
}

TEST(DiffusionLikelihood, ExactDivergenceOfAGaussianScore) {
  // N(0, v P): score -P x / (v + σ²), divergence -d / (v + σ²) everywhere.
  const psm::GaussianMixture gaussian = psm::GaussianMixture::isotropic(
      torch::ones({1}, kF64), torch::zeros({1, 4, 3}, kF64), torch::full({1}, 0.5, kF64), true);
  torch::Generator rng = psm::make_generator(1);
  const torch::Tensor x = torch::randn({5, 4, 3}, rng, kF64);
  const torch::Tensor sigma = torch::full({5}, 0.3, kF64);
  const psm::ScoreAndDivergence out =
      psm::score_and_divergence(gaussian.score_fn(), x, sigma, true);
  EXPECT_TRUE(
      torch::allclose(out.divergence, torch::full({5}, -9.0 / (0.25 + 0.09), kF64), 1e-10, 1e-12));
  EXPECT_TRUE(torch::allclose(out.score, gaussian.score(x, sigma), 1e-12, 1e-12));
  EXPECT_FALSE(out.score.requires_grad());
}

TEST(DiffusionLikelihood, MixtureLogDensityToOdeTolerance) {
  const psm::GaussianMixture mixture = two_component_mixture();
  torch::Generator rng = psm::make_generator(2);
  const torch::Tensor x = mixture.sample(40, rng);
  const double sigma_min = 1e-3;
  const torch::Tensor exact = mixture.log_prob(x, torch::full({40}, sigma_min, kF64));
  const psm::LogDensity density = psm::log_density(mixture.score_fn(), x, options_for(400));
  ASSERT_EQ(density.log_q.sizes(), (std::vector<int64_t>{40}));
  const double worst = (density.log_q - exact).abs().max().item<double>();
  EXPECT_LT(worst, 0.02);
  ASSERT_TRUE(density.error.defined());
  EXPECT_LT(density.error.max().item<double>(), 0.02);
  // A quarter of the steps: 16 times the error, which Richardson's estimate gives per sample.
  const psm::LogDensity coarse = psm::log_density(mixture.score_fn(), x, options_for(100));
  const torch::Tensor coarse_error = (coarse.log_q - exact).abs();
  EXPECT_GT(coarse_error.mean().item<double>(), 5 * worst);
  EXPECT_LT((coarse.error - coarse_error).abs().max().item<double>(),
            0.2 * coarse_error.max().item<double>());
}

TEST(DiffusionLikelihood, WithoutCentreOfMassRemoval) {
  const psm::GaussianMixture gaussian =
      psm::GaussianMixture::isotropic(torch::ones({1}, kF64), torch::full({1, 2, 2}, 0.5, kF64),
                                      torch::full({1}, 0.7, kF64), false);
  torch::Generator rng = psm::make_generator(3);
  const torch::Tensor x = gaussian.sample(10, rng);
  psm::LikelihoodOptions options = options_for(400);
  options.com_free = false;
  const psm::LogDensity density = psm::log_density(gaussian.score_fn(), x, options);
  const torch::Tensor exact = gaussian.log_prob(x, torch::full({10}, 1e-3, kF64));
  EXPECT_LT((density.log_q - exact).abs().max().item<double>(), 0.02);
}

TEST(DiffusionLikelihood, HutchinsonAgreesWithExactInExpectation) {
  const psm::GaussianMixture mixture = two_component_mixture();
  torch::Generator rng = psm::make_generator(4);
  const torch::Tensor x = mixture.sample(6, rng) * 1.5;
  const torch::Tensor sigma = torch::full({6}, 0.5, kF64);
  const psm::ScoreAndDivergence exact =
      psm::score_and_divergence(mixture.score_fn(), x, sigma, true);
  // One probe per draw, 2000 draws: the mean and its standard error per configuration.
  const int64_t draws = 2000;
  torch::Tensor probes = torch::randint(0, 2, {draws, 6, 3, 2}, rng, kF64).mul_(2).sub_(1);
  probes = (probes - probes.mean(2, true));
  std::vector<torch::Tensor> estimates;
  for (int64_t k = 0; k < draws; ++k) {
    estimates.push_back(
        psm::score_and_divergence(mixture.score_fn(), x, sigma, true, probes.narrow(0, k, 1))
            .divergence);
  }
  const torch::Tensor all = torch::stack(estimates);
  const torch::Tensor standard_error = all.std(0) / std::sqrt(static_cast<double>(draws));
  const torch::Tensor z = (all.mean(0) - exact.divergence).abs() / standard_error;
  EXPECT_LT(z.max().item<double>(), 4.5);
  // And the estimator is not exact (the test can tell them apart).
  EXPECT_GT(standard_error.min().item<double>(), 0.0);

  // log_density with Hutchinson probes: unbiased, so the mean over configurations is close.
  psm::LikelihoodOptions options = options_for(40);
  options.divergence = psm::DivergenceMethod::hutchinson;
  options.probes = 8;
  const torch::Tensor y = mixture.sample(200, rng);
  const torch::Tensor truth = mixture.log_prob(y, torch::full({200}, 1e-3, kF64));
  const torch::Tensor estimated = psm::log_density(mixture.score_fn(), y, options).log_q;
  const torch::Tensor difference = estimated - truth;
  EXPECT_LT(difference.mean().abs().item<double>(),
            4.5 * difference.std().item<double>() / std::sqrt(200.0) + 0.01);
  EXPECT_GT(difference.std().item<double>(), 1e-3);
}

// A freshly initialised equivariant network: log q is a function of the configuration up to
// rotation, translation and relabelling of identical atoms.
TEST(DiffusionLikelihood, InvariantUnderTheNetworksSymmetries) {
  torch::manual_seed(5);
  psm::ScoreModel model(psm::ScoreModelOptions(
      psm::EgnnOptions(3, torch::zeros({5}, torch::kInt64)).layers(2).hidden(16), 1.0));
  const psm::ScoreFn score = [model](const torch::Tensor& x, const torch::Tensor& sigma) mutable {
    return model->forward(x, sigma);
  };
  torch::Generator rng = psm::make_generator(6);
  const torch::Tensor x = torch::randn({4, 5, 3}, rng, kF64);
  const torch::Tensor rotation = std::get<0>(torch::linalg_qr(torch::randn({3, 3}, rng, kF64)));
  const torch::Tensor moved =
      torch::matmul(x, rotation).index_select(1, torch::tensor({3, 0, 4, 1, 2})) +
      torch::tensor({0.3, -1.0, 2.0}, kF64);
  psm::LikelihoodOptions options{.steps = 20, .sigma_min = 0.01, .sigma_max = 20.0};
  const psm::LogDensity a = psm::log_density(score, x, options);
  const psm::LogDensity b = psm::log_density(score, moved, options);
  EXPECT_TRUE(torch::isfinite(a.log_q).all().item<bool>());
  EXPECT_LT((a.log_q - b.log_q).abs().max().item<double>(),
            1e-3 * a.log_q.abs().max().item<double>());
  // Different configurations have different densities (the check above can fail).
  EXPECT_GT((a.log_q - a.log_q.mean()).abs().max().item<double>(), 1e-2);
}

// A loaded checkpoint has frozen parameters, and batches above the chunk size run through the
// chunked forward: its backward must differentiate in x alone, chunk by chunk.
TEST(DiffusionLikelihood, DivergenceOfAFrozenChunkedNetwork) {
  torch::manual_seed(7);
  psm::ScoreModel model(psm::ScoreModelOptions(
      psm::EgnnOptions(3, torch::zeros({4}, torch::kInt64)).layers(2).hidden(8).chunk_size(3),
      1.0));
  for (auto& parameter : model->parameters()) parameter.set_requires_grad(false);
  const psm::ScoreFn score = [model](const torch::Tensor& x, const torch::Tensor& sigma) mutable {
    return model->forward(x, sigma);
  };
  torch::Generator rng = psm::make_generator(8);
  const torch::Tensor x = torch::randn({7, 4, 3}, rng, kF64);
  const torch::Tensor sigma = torch::full({7}, 0.4, kF64);
  const torch::Tensor batched = psm::score_and_divergence(score, x, sigma, true).divergence;
  for (int64_t b = 0; b < 7; ++b) {
    const torch::Tensor one =
        psm::score_and_divergence(score, x.narrow(0, b, 1), sigma.narrow(0, b, 1), true).divergence;
    EXPECT_NEAR(batched[b].item<double>(), one.item<double>(),
                1e-4 * std::abs(one.item<double>()) + 1e-6);
  }
}

// N(0, v P) has the score -P x / (v + σ²): the denoising step scales the space by
// v / (v + σ²), so its log-determinant is d ln(v / (v + σ²)).
TEST(DiffusionLikelihood, DenoisingStepOfAGaussian) {
  const double v = 0.5, sigma = 0.3;
  const psm::GaussianMixture gaussian =
      psm::GaussianMixture::isotropic(torch::ones({1}, kF64), torch::zeros({1, 4, 3}, kF64),
                                      torch::full({1}, std::sqrt(v), kF64), true);
  torch::Generator rng = psm::make_generator(9);
  const torch::Tensor x = psm::project(torch::randn({5, 4, 3}, rng, kF64), true);
  const psm::DenoisingStep step = psm::denoising_step(gaussian.score_fn(), x, sigma, true);
  EXPECT_TRUE(torch::allclose(step.positions, x * (v / (v + sigma * sigma)), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(
      step.log_det, torch::full({5}, 9 * std::log(v / (v + sigma * sigma)), kF64), 1e-10, 1e-10));
}

TEST(DiffusionLikelihood, InvertsTheDenoisingStep) {
  const psm::GaussianMixture mixture = two_component_mixture();
  torch::Generator rng = psm::make_generator(10);
  const torch::Tensor x = mixture.sample(8, rng) * 1.3;
  const torch::Tensor y = psm::denoising_step(mixture.score_fn(), x, 0.2, true).positions;
  const torch::Tensor back = psm::invert_denoising_step(mixture.score_fn(), y, 0.2, true, 1e-12);
  EXPECT_LT((back - x).abs().max().item<double>(), 1e-10);
  EXPECT_GT((y - x).abs().max().item<double>(), 1e-2);  // the step moved them

  // A score that pushes three times harder than the step can undo: no fixed point is reached.
  const psm::ScoreFn stiff = [](const torch::Tensor& z, const torch::Tensor& sigma) {
    return -3 * z / sigma.square().view({-1, 1, 1});
  };
  EXPECT_PSM_ERROR(psm::invert_denoising_step(stiff, y, 0.2, true),
                   "likelihood: the final denoising step at sigma_min = 0.2 does not invert for "
                   "8 of 8 configurations in 200 iterations");
}

// Samples of N(0, v P) noised by σ and then denoised are N(0, v² / (v + σ²) P): the denoised
// log-density of the model with the exact score is that Gaussian's.
TEST(DiffusionLikelihood, DenoisedLogDensityOfAGaussian) {
  const double v = 0.5, sigma_min = 0.5, denoised_std = v / std::sqrt(v + sigma_min * sigma_min);
  const auto gaussian_of_std = [](double std) {
    return psm::GaussianMixture::isotropic(torch::ones({1}, kF64), torch::zeros({1, 3, 2}, kF64),
                                           torch::full({1}, std, kF64), true);
  };
  const psm::GaussianMixture model = gaussian_of_std(std::sqrt(v));
  const psm::GaussianMixture denoised = gaussian_of_std(denoised_std);
  torch::Generator rng = psm::make_generator(11);
  const torch::Tensor y = denoised.sample(20, rng);
  psm::LikelihoodOptions options = options_for(400);
  options.sigma_min = sigma_min;
  options.denoised = true;
  const torch::Tensor log_q = psm::log_density(model.score_fn(), y, options).log_q;
  const torch::Tensor exact = denoised.log_prob(y, torch::full({20}, 1e-9, kF64));
  EXPECT_LT((log_q - exact).abs().max().item<double>(), 0.02);
  // The density before the step, N(0, (v + σ²) P), is another one: about 0.7 nats apart.
  options.denoised = false;
  const torch::Tensor undenoised = psm::log_density(model.score_fn(), y, options).log_q;
  EXPECT_GT((undenoised - exact).abs().mean().item<double>(), 0.2);
}

TEST(DiffusionLikelihood, RejectsBadInputWithOneLineErrors) {
  const psm::ScoreFn score = two_component_mixture().score_fn();
  EXPECT_PSM_ERROR(psm::log_density(score, torch::zeros({2, 3, 2}, kF64), options_for(7)),
                   "likelihood: steps must be even for the error estimate (got 7)");
  torch::Tensor nan = torch::zeros({2, 3, 2}, kF64);
  nan[1][0][0] = std::nan("");
  EXPECT_PSM_ERROR(psm::log_density(score, nan, options_for(10)),
                   "likelihood: configurations hold NaN or Inf positions");
  EXPECT_PSM_ERROR(psm::log_density(score, torch::zeros({3, 2}, kF64), options_for(10)),
                   "likelihood: configurations must be [B, N, D]");
  EXPECT_PSM_ERROR(psm::divergence_method_from_string("trace"),
                   "unknown divergence 'trace' (known: exact, hutchinson)");
}

}  // namespace
