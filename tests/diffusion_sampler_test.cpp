// Samplers driven by exact analytic scores reproduce the distribution's moments and weights.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/diffusion/analytic.h"
#include "psm/diffusion/sampler.h"
#include "test_util.h"

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// Euler-Maruyama has an O(1/steps) bias in the variance (about 2.5 % at 500 EDM steps for a
// Gaussian, from the exact variance recursion); Heun's is below 0.5 % at 100 steps. σ_max is
// 200, far above the data's extent (||μ|| ≈ 3), because the ODE carries the prior's mismatch
// with p_σmax through to the samples: a mean bias of about ||μ|| / σ_max standard deviations.
psm::SamplerOptions sampler_options(psm::Solver solver, bool com_free) {
  return {.solver = solver,
          .steps = solver == psm::Solver::euler_maruyama ? 500 : 100,
          .sigma_min = 1e-3,
          .sigma_max = 200.0,
          .batch_size = 4000,
          .seed = 3,
          .com_free = com_free};
}

double bias_allowance(psm::Solver solver) {
  return solver == psm::Solver::euler_maruyama ? 0.03 : 0.01;
}

/// EDM's stochastic sampler with churn in a band of mid-range levels (EDM's S_churn = 40 of 256
/// steps on ImageNet-scale grids; here 10 of 100).
psm::SamplerOptions churned(bool com_free) {
  psm::SamplerOptions options = sampler_options(psm::Solver::edm, com_free);
  options.churn = 10;
  options.churn_sigma_min = 0.05;
  options.churn_sigma_max = 5;
  return options;
}

/// The adaptive solver at a tolerance that keeps its bias as small as Heun's at 100 steps.
psm::SamplerOptions adaptive(bool com_free) {
  psm::SamplerOptions options = sampler_options(psm::Solver::adaptive_heun, com_free);
  options.tolerance = 0.005;
  return options;
}

// Two CoM-free components of different widths: the sampler must get the weights right, which
// depends on the (N - 1) D normaliser of each component's noised density.
TEST(DiffusionSampler, ReproducesCoMFreeMixture) {
  const torch::Tensor means =
      torch::tensor({2.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, -2.0, 0.0, 0.0}, kF64)
          .view({2, 3, 2});
  const torch::Tensor stds = torch::tensor({0.4, 0.8}, kF64);
  const double weight0 = 0.3;
  const psm::GaussianMixture mixture = psm::GaussianMixture::isotropic(
      torch::tensor({weight0, 1 - weight0}, kF64), means, stds, true);
  const int64_t count = 4000;
  const double d_eff = 4;
  // Heun, Euler-Maruyama, and Heun with a Langevin corrector step after every step.
  psm::SamplerOptions predictor_corrector = sampler_options(psm::Solver::heun, true);
  predictor_corrector.corrector_steps = 1;
  for (const psm::SamplerOptions& options :
       {sampler_options(psm::Solver::heun, true),
        sampler_options(psm::Solver::euler_maruyama, true), predictor_corrector, churned(true),
        sampler_options(psm::Solver::dpm_solver_2m, true), adaptive(true)}) {
    SCOPED_TRACE(psm::to_string(options.solver) + " corrector steps " +
                 std::to_string(options.corrector_steps));
    const torch::Tensor samples = psm::sample_diffusion(mixture.score_fn(), count, 3, 2, options);
    ASSERT_EQ(samples.sizes(), (std::vector<int64_t>{count, 3, 2}));
    EXPECT_LT(samples.sum(1).abs().max().item<double>(), 1e-10);

    const torch::Tensor component =
        mixture.responsibilities(samples, torch::zeros({count}, kF64)).argmax(1);
    const double fraction0 = component.eq(0).to(torch::kFloat64).mean().item<double>();
    EXPECT_NEAR(fraction0, weight0, 4 * std::sqrt(weight0 * (1 - weight0) / count));
    for (int64_t k = 0; k < 2; ++k) {
      const torch::Tensor members = samples.index({component.eq(k)});
      const auto n = static_cast<double>(members.size(0));
      const double std_k = stds[k].item<double>();
      const torch::Tensor offset = members - means[k];
      // ||mean - μ||² ~ std² d_eff / n; per-coordinate variance std² ± std² sqrt(2 / (n d_eff)).
      EXPECT_LT(offset.mean(0).norm().item<double>(), 3 * std_k * std::sqrt(d_eff / n));
      const double variance = offset.square().sum({1, 2}).mean().item<double>() / d_eff;
      EXPECT_NEAR(variance / (std_k * std_k), 1.0,
                  4 * std::sqrt(2 / (n * d_eff)) + bias_allowance(options.solver))
          << "component " << k;
    }
  }
}

TEST(DiffusionSampler, ReproducesAnisotropicGaussian) {
  torch::Generator rng = psm::make_generator(31);
  const torch::Tensor l = torch::randn({4, 4}, rng, kF64).tril();
  const torch::Tensor covariance = l.matmul(l.t()) + 0.1 * torch::eye(4, kF64);
  const torch::Tensor mean = torch::tensor({1.0, -0.5, 0.3, 2.0}, kF64);
  const psm::GaussianMixture gaussian(torch::ones({1}, kF64), mean.view({1, 2, 2}),
                                      covariance.unsqueeze(0), false);
  const int64_t count = 4000;
  const torch::Tensor variances = covariance.diagonal();
  const torch::Tensor entry_error =
      ((variances.outer(variances) + covariance.square()) / count).sqrt();
  for (const psm::Solver solver : {psm::Solver::heun, psm::Solver::euler_maruyama}) {
    SCOPED_TRACE(psm::to_string(solver));
    const torch::Tensor samples =
        psm::sample_diffusion(gaussian.score_fn(), count, 2, 2, sampler_options(solver, false))
            .view({count, 4});
    const torch::Tensor sample_mean = samples.mean(0);
    EXPECT_TRUE(((sample_mean - mean).abs() <= 4 * (variances / count).sqrt()).all().item<bool>())
        << sample_mean;
    const torch::Tensor centred = samples - sample_mean;
    const torch::Tensor sample_covariance = centred.t().matmul(centred) / (count - 1);
    const torch::Tensor allowed =
        4 * entry_error + bias_allowance(solver) * variances.outer(variances).sqrt();
    EXPECT_TRUE(((sample_covariance - covariance).abs() <= allowed).all().item<bool>())
        << sample_covariance << "\n"
        << covariance;
  }
}

/// The probability-flow ODE of an isotropic Gaussian N(0, s² I) has the exact solution
/// x(σ) = x(σ_max) sqrt((s² + σ²) / (s² + σ_max²)): each solver's error at σ_min against it.
double ode_error(const psm::SamplerOptions& options, int64_t* evaluations = nullptr) {
  const double s = 0.5;
  const psm::GaussianMixture gaussian = psm::GaussianMixture::isotropic(
      torch::ones({1}, kF64), torch::zeros({1, 4, 3}, kF64), torch::tensor({s}, kF64), false);
  torch::Generator rng = psm::make_generator(8);
  const torch::Tensor start = options.sigma_max * torch::randn({64, 4, 3}, rng, kF64);
  int64_t evaluated = 0;
  const psm::ScoreFn counted = [&](const torch::Tensor& x, const torch::Tensor& sigma) {
    evaluated += x.size(0);
    return gaussian.score_fn()(x, sigma);
  };
  const torch::Tensor end = psm::integrate_reverse(counted, start, options, rng);
  if (evaluations) *evaluations = evaluated / 64;
  const double shrink = std::sqrt((s * s + options.sigma_min * options.sigma_min) /
                                  (s * s + options.sigma_max * options.sigma_max));
  return (end - shrink * start).abs().max().item<double>();
}

// Heun and DPM-Solver++(2M) are second order: doubling the steps divides the error by about 4.
// EDM's sampler without churn is Heun. The adaptive solver's error follows its tolerance.
TEST(DiffusionSampler, OdeSolversConvergeAtTheirOrder) {
  const auto options = [](psm::Solver solver, int64_t steps) {
    return psm::SamplerOptions{.solver = solver,
                               .steps = steps,
                               .sigma_min = 0.01,
                               .sigma_max = 20,
                               .denoise_final = false,
                               .com_free = false};
  };
  for (const psm::Solver solver : {psm::Solver::heun, psm::Solver::dpm_solver_2m}) {
    SCOPED_TRACE(psm::to_string(solver));
    const double coarse = ode_error(options(solver, 16));
    const double fine = ode_error(options(solver, 32));
    EXPECT_GT(coarse / fine, 3.0) << coarse << " " << fine;
    EXPECT_LT(fine, 0.03);  // the end points have a spread of 0.5
  }
  EXPECT_EQ(ode_error(options(psm::Solver::edm, 16)), ode_error(options(psm::Solver::heun, 16)));

  psm::SamplerOptions loose = options(psm::Solver::adaptive_heun, 10);
  loose.tolerance = 0.05;
  psm::SamplerOptions tight = loose;
  tight.tolerance = 0.002;
  int64_t loose_evaluations = 0, tight_evaluations = 0;
  const double loose_error = ode_error(loose, &loose_evaluations);
  const double tight_error = ode_error(tight, &tight_evaluations);
  EXPECT_LT(tight_error, loose_error / 4) << loose_error << " " << tight_error;
  EXPECT_GT(tight_evaluations, loose_evaluations);
  EXPECT_LT(tight_error, 1e-2);
}

TEST(DiffusionSampler, FiniteSamplesLeavesOutTheDivergedOnes) {
  const double inf = std::numeric_limits<double>::infinity();
  torch::Tensor samples = torch::arange(12, torch::kFloat64).reshape({4, 3});
  samples.index_put_({1, 2}, std::nan(""));
  samples.index_put_({3, 0}, -inf);
  const torch::Tensor kept = psm::finite_samples(samples.reshape({4, 1, 3}));
  ASSERT_EQ(kept.sizes(), (std::vector<int64_t>{2, 1, 3}));
  EXPECT_TRUE(kept.reshape({2, 3}).equal(samples.index({torch::tensor({0, 2})})));
}

TEST(DiffusionSampler, ChunksAreSeededIndependentlyAndProgressIsReported) {
  const psm::GaussianMixture gaussian = psm::GaussianMixture::isotropic(
      torch::ones({1}, kF64), torch::zeros({1, 3, 2}, kF64), torch::ones({1}, kF64), true);
  psm::SamplerOptions options{
      .solver = psm::Solver::euler_maruyama, .steps = 10, .batch_size = 4, .seed = 5};
  int64_t calls = 0;
  int64_t last_done = 0;
  int64_t last_total = 0;
  const torch::Tensor ten = psm::sample_diffusion(gaussian.score_fn(), 10, 3, 2, options, kF64,
                                                  [&](int64_t done, int64_t total) {
                                                    ++calls;
                                                    EXPECT_EQ(done, last_done + 1);
                                                    last_done = done;
                                                    last_total = total;
                                                  });
  EXPECT_EQ(calls, 3 * 11);  // 3 chunks of 10 steps and a denoising step
  EXPECT_EQ(last_done, last_total);
  const torch::Tensor eight = psm::sample_diffusion(gaussian.score_fn(), 8, 3, 2, options);
  EXPECT_TRUE(ten.slice(0, 0, 8).equal(eight));
  options.seed = 6;
  EXPECT_FALSE(psm::sample_diffusion(gaussian.score_fn(), 8, 3, 2, options).equal(eight));
  EXPECT_EQ(psm::score_evaluations(options), 11);
  EXPECT_EQ(psm::score_evaluations({.solver = psm::Solver::heun, .steps = 10}), 21);
  EXPECT_EQ(
      psm::score_evaluations({.solver = psm::Solver::heun, .steps = 10, .corrector_steps = 2}), 41);
  EXPECT_EQ(psm::score_evaluations({.solver = psm::Solver::dpm_solver_2m, .steps = 10}), 11);
  EXPECT_EQ(psm::score_evaluations({.solver = psm::Solver::edm, .steps = 10}), 21);
}

// corrector_sigma_min limits the corrector to the levels at or above it: above σ_max there are
// none (the run equals one without a corrector), at 0 all of them.
TEST(DiffusionSampler, CorrectorOnlyAboveItsSigmaMin) {
  const psm::GaussianMixture gaussian = psm::GaussianMixture::isotropic(
      torch::ones({1}, kF64), torch::zeros({1, 3, 2}, kF64), torch::tensor({0.5}, kF64), true);
  psm::SamplerOptions options{.solver = psm::Solver::euler_maruyama,
                              .steps = 10,
                              .sigma_min = 0.01,
                              .sigma_max = 5.0,
                              .corrector_steps = 2,
                              .seed = 8};
  const torch::Tensor everywhere = psm::sample_diffusion(gaussian.score_fn(), 6, 3, 2, options);
  EXPECT_EQ(psm::score_evaluations(options), 10 + 2 * 10 + 1);
  options.corrector_sigma_min = 10.0;
  const torch::Tensor nowhere = psm::sample_diffusion(gaussian.score_fn(), 6, 3, 2, options);
  EXPECT_EQ(psm::score_evaluations(options), 10 + 1);
  options.corrector_sigma_min = 0.0;
  options.corrector_steps = 0;
  EXPECT_TRUE(psm::sample_diffusion(gaussian.score_fn(), 6, 3, 2, options).equal(nowhere));
  EXPECT_FALSE(everywhere.equal(nowhere));
  // Levels of the EDM grid (ρ = 7) at or above 1: σ_max and the next few only.
  options.corrector_steps = 2;
  options.corrector_sigma_min = 1.0;
  const torch::Tensor grid = psm::sigma_grid(psm::SigmaGrid::edm, 5.0, 0.01, 10, 7.0);
  const int64_t above = (grid.slice(0, 1) >= 1.0).sum().item<int64_t>();
  EXPECT_GT(above, 0);
  EXPECT_LT(above, 10);
  EXPECT_EQ(psm::score_evaluations(options), 10 + 2 * above + 1);
}

// One stiff coordinate (variance 1e-4) among eleven soft ones (variance 1): the stiff mode
// dominates ||s||, and the snr rule's step ε = 2 snr² d / ||s||² is long against it. Corrector
// steps at a fixed σ_min = 0.01 from the exact p_σ then heat that mode to v / (1 - ε / 2v),
// here by about 1.8 (the heated mode lengthens ||s|| and so shortens ε: the two settle
// together). corrector_max_step = 0.2 caps ε at 0.2 σ², which heats it by 1 / (1 - 0.05)
// (at most 1 / (1 - 0.1) for any mode, whose variance is at least σ²).
TEST(DiffusionSampler, CorrectorMaxStepBoundsTheHeatingOfStiffModes) {
  const torch::Tensor variances = torch::ones({1, 4, 3}, kF64);
  variances.view(-1)[0] = 1e-4;
  const psm::ScoreFn score = [&](const torch::Tensor& x, const torch::Tensor& sigma) {
    return -x / (variances + sigma.square().view({-1, 1, 1}));
  };
  const double sigma_min = 0.01;
  const psm::SamplerOptions options{.solver = psm::Solver::euler_maruyama,
                                    .steps = 1,
                                    .sigma_min = sigma_min,
                                    .sigma_max = sigma_min * 1.0001,
                                    .denoise_final = false,
                                    .corrector_steps = 300,
                                    .snr = 0.25,
                                    .com_free = false};
  const double stiff_variance = 1e-4 + sigma_min * sigma_min;
  const auto stiff_heating = [&](const psm::SamplerOptions& sampler) {
    torch::Generator rng = psm::make_generator(12);
    const torch::Tensor start = psm::gaussian_noise({2000, 4, 3}, rng, kF64, false) *
                                (variances + sigma_min * sigma_min).sqrt();
    const torch::Tensor samples = psm::integrate_reverse(score, start, sampler, rng);
    return samples.select(1, 0).select(1, 0).square().mean().item<double>() / stiff_variance;
  };
  EXPECT_GT(stiff_heating(options), 1.5);
  psm::SamplerOptions capped = options;
  capped.corrector_max_step = 0.2;
  EXPECT_NEAR(stiff_heating(capped), 1 / (1 - 0.2 * sigma_min * sigma_min / (2 * stiff_variance)),
              0.05);
  capped.corrector_max_step = 0;
  EXPECT_THROW(capped.validate("[sample]"), psm::Error);
}

// A variance-preserving model of the same distribution, sampled through its VE view.
TEST(DiffusionSampler, SamplesVariancePreservingModelThroughItsView) {
  const psm::GaussianMixture gaussian = psm::GaussianMixture::isotropic(
      torch::ones({1}, kF64), torch::zeros({1, 3, 2}, kF64), torch::tensor({0.5}, kF64), true);
  const psm::ScoreFn vp_model = [&](const torch::Tensor& x_t, const torch::Tensor& sigma) {
    const torch::Tensor alpha = (1 + sigma.square()).rsqrt().view({-1, 1, 1});
    return gaussian.score(x_t / alpha, sigma) / alpha;
  };
  const psm::SamplerOptions options = sampler_options(psm::Solver::heun, true);
  const torch::Tensor direct = psm::sample_diffusion(gaussian.score_fn(), 500, 3, 2, options);
  const torch::Tensor through_view =
      psm::sample_diffusion(psm::as_variance_exploding(vp_model), 500, 3, 2, options);
  EXPECT_TRUE(torch::allclose(direct, through_view, 1e-9, 1e-9));
}

// Frames from one component, renoised to a σ well below the components' separation and
// integrated back with the exact score, stay in their component with its width.
TEST(DiffusionSampler, RenoisedFramesKeepTheirComponentAndWidth) {
  const torch::Tensor means =
      torch::tensor({2.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, -2.0, 0.0, 0.0}, kF64)
          .view({2, 3, 2}) *
      2;  // components 8 apart: about 7 noised standard deviations
  const double std0 = 0.4;
  const psm::GaussianMixture mixture = psm::GaussianMixture::isotropic(
      torch::tensor({0.5, 0.5}, kF64), means, torch::tensor({std0, std0}, kF64), true);
  const int64_t count = 2000;
  const double d_eff = 4;
  torch::Generator rng = psm::make_generator(41);
  const torch::Tensor frames =
      means[0] + std0 * psm::gaussian_noise({count, 3, 2}, rng, kF64, true);
  psm::SamplerOptions options = sampler_options(psm::Solver::euler_maruyama, true);
  options.sigma_max = std0;
  options.steps = 200;

  const torch::Tensor samples = psm::renoise_and_integrate(mixture.score_fn(), frames, options);
  ASSERT_EQ(samples.sizes(), frames.sizes());
  EXPECT_GT((samples - frames).square().sum({1, 2}).mean().item<double>(), std0 * std0);
  EXPECT_TRUE(mixture.responsibilities(samples, torch::zeros({count}, kF64))
                  .argmax(1)
                  .eq(0)
                  .all()
                  .item<bool>());
  const double variance = (samples - means[0]).square().sum({1, 2}).mean().item<double>() / d_eff;
  EXPECT_NEAR(variance / (std0 * std0), 1.0, 4 * std::sqrt(2 / (count * d_eff)) + 0.03);
  EXPECT_THROW(psm::renoise_and_integrate(mixture.score_fn(), frames[0], options), psm::Error);
}

TEST(DiffusionSampler, RejectsBadOptions) {
  const psm::GaussianMixture gaussian = psm::GaussianMixture::isotropic(
      torch::ones({1}, kF64), torch::zeros({1, 3, 2}, kF64), torch::ones({1}, kF64), true);
  EXPECT_THROW(psm::sample_diffusion(gaussian.score_fn(), 4, 3, 2, {.steps = 0}), psm::Error);
  EXPECT_THROW(
      psm::sample_diffusion(gaussian.score_fn(), 4, 3, 2, {.sigma_min = 2.0, .sigma_max = 1.0}),
      psm::Error);
  EXPECT_THROW(psm::sample_diffusion(gaussian.score_fn(), 4, 3, 2, {.corrector_steps = -1}),
               psm::Error);
  EXPECT_THROW(psm::sample_diffusion(gaussian.score_fn(), 4, 3, 2, {.snr = 0}), psm::Error);
  EXPECT_THROW(psm::sample_diffusion(gaussian.score_fn(), 4, 3, 2, {.corrector_sigma_min = -1}),
               psm::Error);
  EXPECT_THROW(psm::sample_diffusion(gaussian.score_fn(), 4, 3, 2, {.churn = -1}), psm::Error);
  EXPECT_THROW(psm::sample_diffusion(gaussian.score_fn(), 4, 3, 2,
                                     {.churn_sigma_min = 2, .churn_sigma_max = 1}),
               psm::Error);
  EXPECT_THROW(psm::sample_diffusion(gaussian.score_fn(), 4, 3, 2, {.tolerance = 0}), psm::Error);
  EXPECT_EQ(psm::solver_from_string("ode"), psm::Solver::heun);
  EXPECT_EQ(psm::solver_from_string("dpm2"), psm::Solver::dpm_solver_2m);
  EXPECT_EQ(psm::solver_from_string("adaptive"), psm::Solver::adaptive_heun);
  EXPECT_THROW(psm::solver_from_string("rk4"), psm::Error);
}

TEST(DiffusionSampler, AnInfiniteSigmaMaxIsCalledInfinite) {
  psm::SamplerOptions options;
  options.sigma_max = std::numeric_limits<double>::infinity();
  EXPECT_PSM_ERROR(options.validate("psm sample"),
                   "psm sample: need 0 < sigma_min < sigma_max < infinity (got 0.01 and inf)");
}

}  // namespace
