// DSM, PSM and hybrid targets and the loss: unbiasedness and variances on a harmonic system,
// the σ_c estimate, and the one code path against hand-written targets.

#include <gtest/gtest.h>

#include <cmath>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/diffusion/analytic.h"
#include "psm/diffusion/loss.h"

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

/// P on flattened [N, D] configurations.
torch::Tensor projection(int64_t n, int64_t d, bool com_free) {
  const torch::Tensor identity = torch::eye(n * d, kF64);
  if (!com_free) return identity;
  return identity - torch::kron(torch::full({n, n}, 1.0 / n, kF64), torch::eye(d, kF64));
}

/// A harmonic system U = ½ (x - m)ᵀ K (x - m) on 3 atoms in 2-D with an anisotropic K
/// (restricted to the CoM-free space when com_free), forces computed directly as -P K (x - m).
struct Harmonic {
  Harmonic(bool com_free, double kT, torch::Generator& rng) : com_free(com_free), kT(kT) {
    const torch::Tensor a = 0.6 * torch::randn({6, 6}, rng, kF64);
    const torch::Tensor p = projection(3, 2, com_free);
    stiffness = p.matmul(a.matmul(a.t()) + 0.5 * torch::eye(6, kF64)).matmul(p);
    minimum = psm::project(torch::randn({1, 3, 2}, rng, kF64), com_free)[0];
    distribution.emplace(psm::GaussianMixture::harmonic(stiffness, minimum, kT, com_free));
  }
  torch::Tensor forces(const torch::Tensor& x) const {
    const torch::Tensor flat = (x - minimum).reshape({x.size(0), 6});
    return -flat.matmul(stiffness).view({-1, 3, 2});
  }
  /// Eigenvalues of the configurational covariance kT K⁺ on the space (d_eff of them).
  torch::Tensor covariance_eigenvalues() const {
    const torch::Tensor all = torch::linalg_eigvalsh(kT * torch::linalg_pinv(stiffness), "L");
    return all.slice(0, com_free ? 2 : 0);
  }
  bool com_free;
  double kT;
  torch::Tensor stiffness;
  torch::Tensor minimum;
  std::optional<psm::GaussianMixture> distribution;
};

struct TargetMoments {
  torch::Tensor mean;            // [N D]
  torch::Tensor standard_error;  // [N D]
  double total_variance;
};

TargetMoments moments(const torch::Tensor& targets) {
  const torch::Tensor flat = targets.reshape({targets.size(0), -1});
  const torch::Tensor variance = flat.var(0);
  return {flat.mean(0), (variance / flat.size(0)).sqrt(), variance.sum().item<double>()};
}

// METHOD.md: both targets are unbiased for the noised score given x_σ; per eigenmode λ of the
// covariance their conditional variances are σ² / (λ (λ + σ²)) (PSM) and λ / (σ² (λ + σ²))
// (DSM), so PSM is the precise one below σ² = λ and DSM above.
TEST(DiffusionLoss, PsmAndDsmTargetsAreUnbiasedWithKnownVariances) {
  torch::Generator rng = psm::make_generator(21);
  for (const bool com_free : {true, false}) {
    const Harmonic system(com_free, 0.8, rng);
    const torch::Tensor lambda = system.covariance_eigenvalues();
    ASSERT_GT(lambda.min().item<double>(), 0.05);
    const int64_t draws = 20000;
    for (const double sigma : {0.05, 0.5, 5.0}) {
      SCOPED_TRACE(testing::Message() << "com_free " << com_free << " sigma " << sigma);
      const torch::Tensor x0 = system.distribution->sample(1, rng);
      const torch::Tensor x_sigma =
          x0 + sigma * psm::gaussian_noise(x0.sizes(), rng, kF64, com_free);
      const torch::Tensor sigmas = torch::full({draws}, sigma, kF64);
      const torch::Tensor posterior =
          system.distribution->sample_posterior(x_sigma.expand({draws, 3, 2}), sigmas, rng);
      const TargetMoments psm_target = moments(system.forces(posterior) / system.kT);
      const TargetMoments dsm_target = moments(-(x_sigma - posterior) / (sigma * sigma));
      const torch::Tensor exact =
          system.distribution->score(x_sigma, torch::tensor({sigma}, kF64)).flatten();

      for (const TargetMoments* target : {&psm_target, &dsm_target}) {
        const torch::Tensor error = (target->mean - exact).abs();
        EXPECT_TRUE(
            (error <= 5 * target->standard_error + 1e-9 * exact.abs().max()).all().item<bool>())
            << "mean " << target->mean << "\nexact " << exact;
      }
      const double psm_variance =
          (sigma * sigma / (lambda * (lambda + sigma * sigma))).sum().item<double>();
      const double dsm_variance =
          (lambda / (sigma * sigma * (lambda + sigma * sigma))).sum().item<double>();
      EXPECT_NEAR(psm_target.total_variance / psm_variance, 1.0, 0.05);
      EXPECT_NEAR(dsm_target.total_variance / dsm_variance, 1.0, 0.05);
      if (sigma * sigma < lambda.min().item<double>()) {
        EXPECT_LT(psm_target.total_variance, 0.01 * dsm_target.total_variance);
      }
      if (sigma * sigma > lambda.max().item<double>()) {
        EXPECT_GT(psm_target.total_variance, 10 * dsm_target.total_variance);
      }
    }
  }
}

// For U = ½ xᵀ K x: E||P F||² = kT tr(P K P), so σ_c² = d_eff kT / tr(P K P).
TEST(DiffusionLoss, SigmaCEstimateMatchesHarmonicClosedForm) {
  torch::Generator rng = psm::make_generator(22);
  const Harmonic system(true, 1.3, rng);
  const torch::Tensor frames = system.distribution->sample(100000, rng);
  torch::Tensor forces = system.forces(frames);
  const double exact = std::sqrt(4 * system.kT / system.stiffness.trace().item<double>());
  EXPECT_NEAR(psm::estimate_sigma_c(forces, system.kT, true) / exact, 1.0, 0.01);
  // A net force on the frame (no effect in the CoM-free space) does not change the estimate.
  const torch::Tensor net = torch::randn({frames.size(0), 1, 2}, rng, kF64);
  EXPECT_NEAR(psm::estimate_sigma_c(forces + net, system.kT, true) / exact, 1.0, 0.01);
  // Frames drawn at 2 kT have forces sqrt(2) times larger (deviations from the minimum scale
  // so); given the temperature they were drawn at, the estimate is still the target's length.
  const torch::Tensor hot_forces = std::sqrt(2.0) * forces;
  EXPECT_NEAR(psm::estimate_sigma_c(hot_forces, system.kT, true, 2 * system.kT) / exact, 1.0, 0.01);
  EXPECT_NEAR(psm::estimate_sigma_c(hot_forces, system.kT, true) / exact, std::sqrt(0.5), 0.01);

  psm::Dataset dataset;
  dataset.positions = frames;
  dataset.forces = forces;
  dataset.kT = system.kT;
  const psm::LossOptions resolved = psm::resolve_loss_options({}, dataset);
  ASSERT_TRUE(resolved.sigma_c.has_value());
  EXPECT_NEAR(*resolved.sigma_c / exact, 1.0, 0.01);
  EXPECT_DOUBLE_EQ(*psm::resolve_loss_options({.sigma_c = 0.25}, dataset).sigma_c, 0.25);
}

TEST(DiffusionLoss, ResolveRejectsPsmWithoutForces) {
  psm::Dataset dataset;
  dataset.positions = torch::zeros({4, 3, 2}, kF64);
  EXPECT_THROW(psm::resolve_loss_options({.crossover = psm::Crossover::psm}, dataset), psm::Error);
  EXPECT_THROW(psm::resolve_loss_options({}, dataset), psm::Error);
  EXPECT_NO_THROW(psm::resolve_loss_options({.crossover = psm::Crossover::dsm}, dataset));
  EXPECT_THROW(psm::crossover_weight(torch::ones({1}, kF64), {}), psm::Error);
}

TEST(DiffusionLoss, HybridWeightLimits) {
  const psm::LossOptions options{.sigma_c = 0.2};
  const torch::Tensor sigma = torch::tensor({1e-4, 0.02, 0.2, 2.0, 200.0}, kF64);
  const torch::Tensor w = psm::crossover_weight(sigma, options);
  EXPECT_GT(w[0].item<double>(), 1 - 1e-12);
  EXPECT_NEAR(w[1].item<double>(), 1 / (1 + 1e-4), 1e-15);
  EXPECT_DOUBLE_EQ(w[2].item<double>(), 0.5);
  EXPECT_NEAR(w[3].item<double>(), 1 / (1 + 1e4), 1e-15);
  EXPECT_NEAR(w[4].item<double>(), 1e-12, 1e-20);  // (σ / σ_c)⁴ = 10¹²
  const psm::LossOptions square{.sigma_c = 0.2, .crossover_exponent = 2};
  EXPECT_DOUBLE_EQ(psm::crossover_weight(torch::tensor({0.4}, kF64), square).item<double>(), 0.2);
  const psm::LossOptions dsm{.crossover = psm::Crossover::dsm};
  const psm::LossOptions psm_only{.crossover = psm::Crossover::psm};
  EXPECT_TRUE(psm::crossover_weight(sigma, dsm).eq(0).all().item<bool>());
  EXPECT_TRUE(psm::crossover_weight(sigma, psm_only).eq(1).all().item<bool>());
}

/// Some fixed non-linear vector field, CoM-free or not, to stand in for a network.
torch::Tensor toy_model(const torch::Tensor& x, const torch::Tensor& sigma) {
  return -x * (1 + sigma.view({-1, 1, 1})).reciprocal() + 0.1 * x.square();
}

struct Batch {
  torch::Tensor x0, forces, sigma, noise;
};

Batch random_batch(torch::Generator& rng) {
  return {torch::randn({5, 4, 3}, rng, kF64), 3 * torch::randn({5, 4, 3}, rng, kF64),
          torch::tensor({0.01, 0.1, 0.3, 1.0, 5.0}, kF64), torch::randn({5, 4, 3}, rng, kF64)};
}

TEST(DiffusionLoss, OneCodePathMatchesHandWrittenTargets) {
  torch::Generator rng = psm::make_generator(23);
  const Batch b = random_batch(rng);
  const double kT = 0.6;
  const torch::Tensor sigma3 = b.sigma.view({-1, 1, 1});
  const double sigma_c = 0.3;
  const torch::Tensor hybrid_w = 1 / (1 + (sigma3 / sigma_c).pow(4));
  for (const bool com_free : {true, false}) {
    const auto p = [&](const torch::Tensor& t) { return com_free ? t - t.mean(1, true) : t; };
    const torch::Tensor eps = p(b.noise);
    const torch::Tensor prediction = p(toy_model(p(b.x0) + sigma3 * eps, b.sigma));
    const torch::Tensor dsm_target = -eps / sigma3;
    const torch::Tensor psm_target = p(b.forces) / kT;
    const double d_eff = com_free ? 9 : 12;
    struct Case {
      psm::Crossover crossover;
      torch::Tensor target;
    };
    for (const Case& c :
         {Case{psm::Crossover::dsm, dsm_target}, Case{psm::Crossover::psm, psm_target},
          Case{psm::Crossover::hybrid, hybrid_w * psm_target + (1 - hybrid_w) * dsm_target}}) {
      const psm::LossOptions options{
          .crossover = c.crossover, .sigma_c = sigma_c, .com_free = com_free};
      SCOPED_TRACE(psm::to_string(c.crossover) + (com_free ? " com_free" : ""));
      EXPECT_TRUE(torch::allclose(psm::score_target(b.forces, eps, b.sigma, kT, options), c.target,
                                  1e-14, 1e-12));
      const psm::LossOutput out =
          psm::diffusion_loss(toy_model, b.x0, b.forces, b.sigma, b.noise, kT, options);
      const torch::Tensor expected =
          b.sigma.square() * (prediction - c.target).square().sum({1, 2}) / d_eff;
      EXPECT_TRUE(torch::allclose(out.per_sample, expected, 1e-12, 0));
      EXPECT_NEAR(out.loss.item<double>(), expected.mean().item<double>(), 1e-12);
      EXPECT_TRUE(out.sigma.equal(b.sigma));
    }
  }
  // DSM needs no forces.
  const psm::LossOptions dsm{.crossover = psm::Crossover::dsm};
  EXPECT_NO_THROW(psm::diffusion_loss(toy_model, b.x0, {}, b.sigma, b.noise, kT, dsm));
  EXPECT_THROW(psm::diffusion_loss(toy_model, b.x0, {}, b.sigma, b.noise, kT, {.sigma_c = 1.0}),
               psm::Error);
}

TEST(DiffusionLoss, WeightingsMatchDefinitions) {
  const torch::Tensor sigma = torch::tensor({0.1, 1.0, 3.0}, kF64);
  EXPECT_TRUE(psm::loss_weight(sigma, {}).equal(sigma.square()));
  EXPECT_TRUE(psm::loss_weight(sigma, {.weighting = psm::LossWeighting::unit})
                  .equal(torch::ones_like(sigma)));
  const torch::Tensor edm =
      psm::loss_weight(sigma, {.weighting = psm::LossWeighting::edm, .sigma_data = 0.5});
  EXPECT_TRUE(torch::allclose(edm, sigma.square() * (sigma.square() + 0.25) / 0.25));
}

TEST(DiffusionLoss, TargetVarianceWeightingIsTheInverseTargetVariance) {
  const torch::Tensor sigma = torch::tensor({0.01, 0.3, 1.0, 3.0}, kF64);
  constexpr auto kInverse = psm::LossWeighting::target_variance;
  // DSM's target -ε/σ has variance 1/σ² per coordinate; PSM's F/kT has 1/σ_c² by definition.
  EXPECT_TRUE(torch::allclose(
      psm::loss_weight(sigma, {.crossover = psm::Crossover::dsm, .weighting = kInverse}),
      sigma.square()));
  EXPECT_TRUE(torch::allclose(
      psm::loss_weight(sigma,
                       {.crossover = psm::Crossover::psm, .sigma_c = 0.3, .weighting = kInverse}),
      torch::full_like(sigma, 0.09)));
  // The hybrid mixes both: σ_c² well below σ_c, σ² well above, and at σ = σ_c (w = 1/2)
  // 1 / (1/(4 σ_c²) + 1/(4 σ_c²)) = 2 σ_c².
  const torch::Tensor hybrid = psm::loss_weight(sigma, {.sigma_c = 0.3, .weighting = kInverse});
  EXPECT_NEAR(hybrid[0].item<double>(), 0.09, 1e-6);
  EXPECT_NEAR(hybrid[1].item<double>(), 2 * 0.09, 1e-12);
  EXPECT_NEAR(hybrid[3].item<double>() / 9.0, 1.0, 1e-3);
}

TEST(DiffusionLoss, DrawsFromGeneratorInDocumentedOrder) {
  torch::Generator data_rng = psm::make_generator(24);
  const Batch b = random_batch(data_rng);
  const psm::LossOptions options{.sigma_c = 0.5};
  torch::Generator rng = psm::make_generator(7);
  const psm::LossOutput drawn = psm::diffusion_loss(toy_model, b.x0, b.forces, 1.0, options, rng);

  torch::Generator replay = psm::make_generator(7);
  const torch::Tensor sigma = psm::sample_training_sigmas(options.schedule, 5, replay);
  const torch::Tensor noise = psm::gaussian_noise(b.x0.sizes(), replay, kF64, true);
  const psm::LossOutput explicit_draws =
      psm::diffusion_loss(toy_model, b.x0, b.forces, sigma, noise, 1.0, options);
  EXPECT_TRUE(drawn.sigma.equal(sigma));
  EXPECT_TRUE(drawn.per_sample.equal(explicit_draws.per_sample));

  torch::Generator other = psm::make_generator(8);
  EXPECT_FALSE(
      psm::diffusion_loss(toy_model, b.x0, b.forces, 1.0, options, other).sigma.equal(sigma));
}

// The variance-preserving loss of a model equals the variance-exploding loss of its VE view.
TEST(DiffusionLoss, VariancePreservingLossEqualsVarianceExplodingOfItsView) {
  torch::Generator rng = psm::make_generator(25);
  const Batch b = random_batch(rng);
  const psm::LossOptions vp{.process = psm::NoiseProcess::variance_preserving, .sigma_c = 0.4};
  const psm::LossOptions ve{.sigma_c = 0.4};
  const psm::LossOutput vp_loss =
      psm::diffusion_loss(toy_model, b.x0, b.forces, b.sigma, b.noise, 0.9, vp);
  const psm::LossOutput ve_loss = psm::diffusion_loss(psm::as_variance_exploding(toy_model), b.x0,
                                                      b.forces, b.sigma, b.noise, 0.9, ve);
  EXPECT_TRUE(torch::allclose(vp_loss.per_sample, ve_loss.per_sample, 1e-12, 1e-14));
  // And its targets are the VE ones over α: DSM -ε / s_t, PSM F / (α kT).
  const torch::Tensor alpha = (1 + b.sigma.square()).rsqrt().view({-1, 1, 1});
  const torch::Tensor eps = psm::remove_mean(b.noise);
  EXPECT_TRUE(
      torch::allclose(psm::score_target(b.forces, eps, b.sigma, 0.9,
                                        {.process = vp.process, .crossover = psm::Crossover::dsm}),
                      -eps / (alpha * b.sigma.view({-1, 1, 1}))));
  EXPECT_TRUE(
      torch::allclose(psm::score_target(b.forces, eps, b.sigma, 0.9,
                                        {.process = vp.process, .crossover = psm::Crossover::psm}),
                      psm::remove_mean(b.forces) / (alpha * 0.9)));
}

TEST(DiffusionLoss, GradientReachesModelParameters) {
  torch::Generator rng = psm::make_generator(26);
  const Batch b = random_batch(rng);
  const torch::Tensor scale = torch::ones({1}, kF64).requires_grad_();
  const psm::ScoreFn model = [&](const torch::Tensor& x, const torch::Tensor& sigma) {
    return scale.to(torch::kFloat32) * toy_model(x, sigma).to(torch::kFloat32);
  };
  const psm::LossOutput out =
      psm::diffusion_loss(model, b.x0, b.forces, b.sigma, b.noise, 1.0, {.sigma_c = 0.3});
  out.loss.backward();
  ASSERT_TRUE(scale.grad().defined());
  EXPECT_TRUE(std::isfinite(scale.grad().item<double>()));
  EXPECT_NE(scale.grad().item<double>(), 0.0);
  EXPECT_FALSE(out.per_sample.requires_grad());
}

TEST(DiffusionLoss, ParsesOptionNames) {
  EXPECT_EQ(psm::crossover_from_string("hybrid"), psm::Crossover::hybrid);
  EXPECT_EQ(psm::loss_weighting_from_string("edm"), psm::LossWeighting::edm);
  try {
    psm::crossover_from_string("both");
    FAIL() << "expected psm::Error";
  } catch (const psm::Error& e) {
    EXPECT_STREQ(e.what(), "unknown crossover 'both' (known: dsm, psm, hybrid)");
  }
}

}  // namespace
