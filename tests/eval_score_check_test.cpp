// The score check on a harmonic system, whose noised score is exact: the exact score has the
// frames' kT at every σ, a score scaled by c has c kT, and the slope against the forces sees c.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <memory>

#include "psm/core/random.h"
#include "psm/diffusion/analytic.h"
#include "psm/eval/score_check.h"
#include "psm/systems/potential.h"
#include "test_util.h"

namespace {

constexpr int64_t kAtoms = 4;
constexpr double kStiffness = 50.0;
constexpr double kT = 0.8;

psm::GaussianMixture harmonic_system() {
  return psm::GaussianMixture::harmonic(kStiffness * torch::eye(kAtoms * 3, torch::kFloat64),
                                        torch::zeros({kAtoms, 3}, torch::kFloat64), kT,
                                        /*com_free=*/true);
}

/// Exact CoM-free frames of the harmonic system with their forces -k x.
psm::Dataset harmonic_frames(const psm::GaussianMixture& system, int64_t frames) {
  torch::Generator rng = psm::make_generator(7);
  psm::Dataset data;
  data.species = std::vector<int64_t>(kAtoms, 18);
  data.kT = kT;
  data.positions = system.sample(frames, rng);
  data.forces = -kStiffness * data.positions;
  return data;
}

TEST(ScoreCheck, ExactScoreHasTheFramesTemperatureAtEverySigma) {
  const psm::GaussianMixture system = harmonic_system();
  const psm::Dataset frames = harmonic_frames(system, 4000);
  for (const double sigma : {0.01, 0.3}) {
    const psm::ScoreCheck result =
        psm::check_score(system.score_fn(), frames, {.sigma = sigma, .batch_size = 700});
    EXPECT_EQ(result.score_virial.frames, 4000);
    EXPECT_LT(result.score_virial.deviation(kT), 4.0) << "sigma " << sigma;
    ASSERT_TRUE(result.slope && result.forces_virial);
    EXPECT_LT(result.forces_virial->deviation(kT), 4.0);
    // s_σ = -x_σ / (kT/k + σ²): the slope on F(x_0) is (kT/k) / (kT/k + σ²).
    const double variance = kT / kStiffness;
    EXPECT_NEAR(*result.slope, variance / (variance + sigma * sigma), 0.02) << "sigma " << sigma;
  }
}

TEST(ScoreCheck, ScaledScoreShowsItsStrengthInBothNumbers) {
  const psm::GaussianMixture system = harmonic_system();
  const psm::Dataset frames = harmonic_frames(system, 4000);
  const psm::ScoreFn exact = system.score_fn();
  const psm::ScoreFn weak = [&](const torch::Tensor& x, const torch::Tensor& sigma) {
    return 0.8 * exact(x, sigma);
  };
  const psm::ScoreCheck result = psm::check_score(weak, frames, {.sigma = 0.01});
  EXPECT_NEAR(result.score_virial.kT, 0.8 * kT, 4 * result.score_virial.standard_error);
  EXPECT_GT(result.score_virial.deviation(kT), 4.0);
  const double variance = kT / kStiffness;
  EXPECT_NEAR(*result.slope, 0.8 * variance / (variance + 1e-4), 0.02);
  // Residual ≈ -0.2 F(x_0) - 0.8 k σ ε: relative RMS sqrt(0.2² + (0.8 k σ)² / (k kT)) = 0.21.
  EXPECT_NEAR(*result.residual_rms / *result.force_rms, 0.21, 0.02);
}

/// U = k/2 |x|² on centre-of-mass-free positions: the harmonic system's potential.
class HarmonicPotential final : public psm::Potential {
 public:
  psm::Evaluation evaluate(const torch::Tensor& positions, psm::EvalRequest) const override {
    return {.energy = 0.5 * kStiffness * positions.square().sum({1, 2}),
            .forces = -kStiffness * positions};
  }
};

TEST(ScoreCheck, WithTheSystemSeparatesTheNetworksErrorFromTheNoise) {
  // The exact score at x_σ is F(x_σ) v / (v + σ²) with v = kT / k: it misses F(x_σ) by a
  // fraction σ² / (v + σ²) only (second order), but F(x_0) by k σ ε (first order).
  const psm::GaussianMixture harmonic = harmonic_system();
  const psm::Dataset frames = harmonic_frames(harmonic, 4000);
  const psm::System system("harmonic", frames.species, 3, psm::Units::reduced,
                           std::make_shared<HarmonicPotential>(), nullptr);
  const double sigma = 0.01;
  const psm::ScoreCheck result =
      psm::check_score(harmonic.score_fn(), frames, {.sigma = sigma, .system = &system});
  ASSERT_TRUE(result.force_errors && result.exact_score_errors && result.network_errors);
  // ε projected onto the CoM-free subspace: (N - 1) / N of its variance per component.
  const double noise_rms = kStiffness * sigma * std::sqrt((kAtoms - 1.0) / kAtoms);
  EXPECT_NEAR(result.exact_score_errors->rms, noise_rms, 0.03 * noise_rms);
  EXPECT_NEAR(result.exact_score_errors->mae, std::sqrt(2 / M_PI) * noise_rms, 0.03 * noise_rms);
  EXPECT_NEAR(result.force_errors->rms, result.exact_score_errors->rms,
              0.05 * result.exact_score_errors->rms);
  const double variance = kT / kStiffness, smoothing = sigma * sigma / (variance + sigma * sigma);
  EXPECT_NEAR(result.network_errors->rms, smoothing * *result.force_rms,
              0.05 * smoothing * *result.force_rms);
  EXPECT_LT(result.network_errors->rms, 0.1 * result.exact_score_errors->rms);
  // A score 10 % too strong is seen in the network error, not in the noise's.
  const psm::ScoreFn exact = harmonic.score_fn();
  const psm::ScoreFn strong = [&](const torch::Tensor& x, const torch::Tensor& s) {
    return 1.1 * exact(x, s);
  };
  const psm::ScoreCheck off = psm::check_score(strong, frames, {.sigma = sigma, .system = &system});
  EXPECT_NEAR(off.network_errors->rms / *off.force_rms, 0.1, 0.01);
  EXPECT_NEAR(off.exact_score_errors->rms, result.exact_score_errors->rms, 1e-12);
}

TEST(ScoreCheck, AScorePointingOutwardsGetsNoStrengthOrTemperature) {
  const psm::GaussianMixture system = harmonic_system();
  const psm::Dataset frames = harmonic_frames(system, 1000);
  const psm::ScoreFn exact = system.score_fn();
  const psm::ScoreFn reversed = [&](const torch::Tensor& x, const torch::Tensor& sigma) {
    return -exact(x, sigma);
  };
  const psm::ScoreCheck result = psm::check_score(reversed, frames, {.sigma = 0.01});
  ASSERT_LT(result.score_virial.kT, 0.0);
  EXPECT_NE(psm::describe_score_strength(result.score_virial.kT, kT).find("not positive"),
            std::string::npos);
  EXPECT_NE(psm::describe_score_strength(0.5 * kT, kT).find("0.5 times as strong"),
            std::string::npos);
  EXPECT_NE(psm::describe_score_strength(0.5 * kT, kT).find("kT / c = 1.6"), std::string::npos);
}

TEST(ScoreCheck, FramesWithoutForcesGetTheVirialOnly) {
  const psm::GaussianMixture system = harmonic_system();
  psm::Dataset frames = harmonic_frames(system, 50);
  frames.forces = torch::Tensor();
  const psm::ScoreCheck result = psm::check_score(system.score_fn(), frames, {});
  EXPECT_FALSE(result.slope || result.forces_virial || result.residual_rms);
  EXPECT_GT(result.score_virial.kT, 0.0);
}

TEST(ScoreCheck, RejectsBadInput) {
  const psm::GaussianMixture system = harmonic_system();
  const psm::Dataset frames = harmonic_frames(system, 5);
  EXPECT_PSM_ERROR(psm::check_score(system.score_fn(), frames.select(torch::arange(1)), {}),
                   "needs >= 2 frames");
  EXPECT_PSM_ERROR(psm::check_score(system.score_fn(), frames, {.sigma = 0.0}),
                   "sigma must be > 0");
  const psm::ScoreFn broken = [](const torch::Tensor& x, const torch::Tensor&) {
    return torch::full_like(x, std::numeric_limits<double>::quiet_NaN());
  };
  EXPECT_PSM_ERROR(psm::check_score(broken, frames, {}), "non-finite scores");
}

}  // namespace
