// Importance weights: reweighting samples of a known wrong distribution recovers the right
// averages, weighted metrics equal unweighted ones on duplicated samples, and degenerate weights
// are flagged rather than used.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>

#include "psm/core/random.h"
#include "psm/diffusion/importance_weights.h"
#include "psm/eval/metrics.h"
#include "psm/eval/weighted_metrics.h"
#include "test_util.h"

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);
constexpr double kInf = std::numeric_limits<double>::infinity();

// Two particles on a line at ∓r/2: configurations [B, 2, 1] whose one distance is |r|.
torch::Tensor dimers(const torch::Tensor& r) {
  return torch::stack({-0.5 * r, 0.5 * r}, 1).unsqueeze(2);
}

double gaussian_log_density(double x, double mean, double std) {
  const double z = (x - mean) / std;
  return -0.5 * z * z - std::log(std * std::sqrt(2 * std::numbers::pi));
}

// p: the bond r ~ N(1, 0.5²) of U = (r - 1)² / (2 · 0.25) at kT = 1; q: N(1, 0.7²), too hot.
TEST(ImportanceWeights, ReweightingRecoversTheBoltzmannAverages) {
  torch::Generator rng = psm::make_generator(11);
  const int64_t n = 20000;
  const torch::Tensor r_q = 1.0 + 0.7 * torch::randn({n}, rng, kF64);
  const torch::Tensor r_p = 1.0 + 0.5 * torch::randn({n}, rng, kF64);
  const auto energy = [](const torch::Tensor& r) { return (r - 1).square() / 0.5; };
  torch::Tensor log_q = torch::empty({n}, kF64);
  for (int64_t i = 0; i < n; ++i) {
    log_q[i] = gaussian_log_density(r_q[i].item<double>(), 1.0, 0.7);
  }
  const torch::Tensor log_w = psm::log_importance_weights(energy(r_q), 1.0, log_q);

  // Kish's ESS of N(1, 0.7²) weighted to N(1, 0.5²): σ_p sqrt(2σ_q² - σ_p²) / σ_q² = 0.872.
  EXPECT_NEAR(psm::kish_ess_fraction(log_w), 0.8718, 0.02);

  const psm::Samples generated{.positions = dimers(r_q), .energies = energy(r_q)};
  const psm::Samples reference{.positions = dimers(r_p), .energies = energy(r_p)};
  const psm::WeightedMetrics weighted = psm::compute_weighted_metrics(generated, log_w, reference);
  ASSERT_FALSE(weighted.degenerate);
  ASSERT_TRUE(weighted.metrics.has_value());
  // <U> = 0.5 under p and 0.98 under q; the reweighted mean is p's within its noise.
  EXPECT_NEAR(*weighted.mean_energy, 0.5, 0.03);
  EXPECT_NEAR(*weighted.mean_energy_unweighted, 0.98, 0.03);
  EXPECT_NEAR(*weighted.mean_energy_reference, 0.5, 0.03);
  const psm::Metrics unweighted = psm::compute_metrics(generated, reference);
  EXPECT_GT(*unweighted.energy_w2, 0.3);
  EXPECT_LT(*weighted.metrics->energy_w2, 0.05);
  EXPECT_LT(weighted.metrics->distance_tvd, 0.5 * unweighted.distance_tvd);
  EXPECT_FALSE(weighted.metrics->equivariant_w2.has_value());
}

TEST(ImportanceWeights, KishEffectiveSampleSize) {
  EXPECT_DOUBLE_EQ(psm::kish_ess_fraction(torch::full({8}, -3.0, kF64)), 1.0);
  EXPECT_DOUBLE_EQ(psm::kish_ess_fraction(torch::tensor({0.0, -kInf, -kInf, -kInf}, kF64)), 0.25);
  // Weights 1 and 3: (4)² / (2 · 10) = 0.8; huge log weights do not overflow.
  EXPECT_NEAR(psm::kish_ess_fraction(torch::tensor({1000.0, 1000.0 + std::log(3.0)}, kF64)), 0.8,
              1e-12);
  EXPECT_PSM_ERROR(psm::kish_ess_fraction(torch::tensor({-kInf, -kInf}, kF64)),
                   "every weight is zero");
  EXPECT_PSM_ERROR(psm::kish_ess_fraction(torch::tensor({0.0, std::nan("")}, kF64)),
                   "log weights hold NaN");
}

TEST(ImportanceWeights, FailedEnergiesWeighNothing) {
  const torch::Tensor log_w = psm::log_importance_weights(
      torch::tensor({2.0, std::nan(""), kInf}, kF64), 0.5, torch::tensor({-1.0, 0.0, 0.0}, kF64));
  EXPECT_DOUBLE_EQ(log_w[0].item<double>(), -4.0 + 1.0);
  EXPECT_TRUE(std::isinf(log_w[1].item<double>()) && log_w[1].item<double>() < 0);
  EXPECT_TRUE(std::isinf(log_w[2].item<double>()) && log_w[2].item<double>() < 0);
  EXPECT_PSM_ERROR(
      psm::log_importance_weights(torch::zeros({3}, kF64), 1.0, torch::zeros({2}, kF64)),
      "energies and log q must be [B]");
  EXPECT_PSM_ERROR(psm::log_importance_weights(torch::zeros({1}, kF64), 1.0,
                                               torch::tensor({std::nan("")}, kF64)),
                   "log q holds NaN or Inf");
}

// Integer weights are the same as repeating samples.
TEST(ImportanceWeights, WeightedMetricsEqualDuplicatedSamples) {
  const torch::Tensor a = torch::tensor({0.3, 1.7, 0.9}, kF64);
  const torch::Tensor w = torch::tensor({2.0, 1.0, 3.0}, kF64);
  const torch::Tensor repeated = torch::tensor({0.3, 0.3, 1.7, 0.9, 0.9, 0.9}, kF64);
  const torch::Tensor b = torch::tensor({0.1, 0.5, 1.2, 2.0, 0.8}, kF64);
  for (const double p : {1.0, 2.0}) {
    EXPECT_NEAR(psm::wasserstein_1d(a, w, b, p), psm::wasserstein_1d(repeated, b, p), 1e-12);
  }
  EXPECT_NEAR(psm::wasserstein_1d(a, torch::ones({3}, kF64), b), psm::wasserstein_1d(a, b), 1e-12);
  EXPECT_NEAR(psm::histogram_tvd(a, w, b, 7), psm::histogram_tvd(repeated, b, 7), 1e-12);
  EXPECT_NEAR(psm::outlier_fraction(a, w, b.slice(0, 0, 3)), 1.0 / 6.0, 1e-12);
  // All the weight on one value: W to a sample of that value is 0.
  EXPECT_NEAR(
      psm::wasserstein_1d(a, torch::tensor({0.0, 1.0, 0.0}, kF64), torch::tensor({1.7, 1.7}, kF64)),
      0.0, 1e-12);
  EXPECT_PSM_ERROR(psm::wasserstein_1d(a, torch::ones({2}, kF64), b), "2 weights for 3 values");
  EXPECT_PSM_ERROR(psm::wasserstein_1d(a, torch::tensor({1.0, -1.0, 1.0}, kF64), b),
                   "weights must be finite and non-negative");
}

TEST(ImportanceWeights, DegenerateWeightsAreFlaggedNotUsed) {
  torch::Generator rng = psm::make_generator(12);
  const torch::Tensor r = 1.0 + 0.1 * torch::randn({100}, rng, kF64);
  const psm::Samples generated{.positions = dimers(r), .energies = r};
  torch::Tensor log_w = torch::full({100}, -50.0, kF64);
  log_w[7] = 0.0;
  const psm::WeightedMetrics out = psm::compute_weighted_metrics(generated, log_w, generated);
  EXPECT_TRUE(out.degenerate);
  EXPECT_LT(out.ess_fraction, 0.011);
  EXPECT_FALSE(out.metrics.has_value());
  EXPECT_FALSE(out.mean_energy.has_value());
  EXPECT_TRUE(out.mean_energy_unweighted.has_value());
  EXPECT_TRUE(out.to_json().at("metrics").is_null());
  EXPECT_PSM_ERROR(psm::compute_weighted_metrics(generated, log_w.slice(0, 0, 5), generated),
                   "5 log weights for 100 samples");
}

}  // namespace
