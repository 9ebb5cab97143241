#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/simulate/autocorrelation.h"

namespace {

/// C stationary AR(1) chains x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t of length T: [C, T].
/// Their autocorrelation is phi^t and tau = (1 + phi) / (1 - phi).
torch::Tensor ar1(int64_t chains, int64_t length, double phi, uint64_t seed) {
  auto generator = psm::make_generator(seed);
  auto series = torch::randn({chains, length}, generator, torch::kFloat64);
  auto x = series.accessor<double, 2>();
  const double scale = std::sqrt(1 - phi * phi);
  for (int64_t c = 0; c < chains; ++c) {
    for (int64_t t = 1; t < length; ++t) x[c][t] = phi * x[c][t - 1] + scale * x[c][t];
  }
  return series;
}

TEST(Autocorrelation, Ar1ProcessHasTauOnePlusPhiOverOneMinusPhi) {
  for (const double phi : {0.0, 0.5, 0.9}) {
    const auto series = ar1(32, 4000, phi, 21);
    const auto result = psm::integrated_autocorrelation_time(series);
    const double expected = (1 + phi) / (1 - phi);
    // Relative standard error of the estimate is about sqrt(2 (2M + 1) / (C T)) <= 6%.
    EXPECT_NEAR(result.tau, expected, 0.15 * expected) << "phi = " << phi;
    EXPECT_TRUE(result.reliable);
    EXPECT_GE(static_cast<double>(result.window), 5.0 * result.tau);
    EXPECT_NEAR(psm::effective_sample_size(series), 32 * 4000 / result.tau, 1e-6);

    const auto rho = psm::autocorrelation(series).mean(0);
    EXPECT_DOUBLE_EQ(rho[0].item<double>(), 1.0);
    EXPECT_NEAR(rho[1].item<double>(), phi, 0.02);
  }
}

TEST(Autocorrelation, ChainMeansErrorMatchesTheTauError) {
  // For AR(1) chains the variance of a chain mean is about tau / T (unit variance).
  const double phi = 0.8, tau = (1 + phi) / (1 - phi);
  const auto series = ar1(400, 1000, phi, 3);
  const double expected = std::sqrt(tau / 1000.0 / 400.0);
  EXPECT_NEAR(psm::chain_means_standard_error(series), expected, 0.1 * expected);
  EXPECT_THROW(psm::chain_means_standard_error(series.slice(0, 0, 1)), psm::Error);
}

TEST(Autocorrelation, AnticorrelatedSeriesCountEachFrameOnce) {
  // AR(1) with phi < 0 has tau = (1 + phi) / (1 - phi) < 1; a short, strongly alternating chain
  // (a vibration sampled near half its period) sums to a negative raw estimate.
  for (const auto& [chains, length, phi] : {std::tuple{8, 4000, -0.6}, std::tuple{1, 40, -0.9}}) {
    const auto series = ar1(chains, length, phi, 3);
    const auto rho = psm::autocorrelation(series).mean(0);
    ASSERT_LT(1.0 + 2.0 * rho[1].item<double>(), 0.5) << "phi = " << phi;
    EXPECT_DOUBLE_EQ(psm::integrated_autocorrelation_time(series).tau, 1.0) << "phi = " << phi;
    EXPECT_DOUBLE_EQ(psm::effective_sample_size(series), chains * length) << "phi = " << phi;
  }
}

TEST(Autocorrelation, ShortSeriesAreFlaggedAndConstantChainsAreStuck) {
  EXPECT_FALSE(psm::integrated_autocorrelation_time(ar1(2, 200, 0.95, 1)).reliable);
  auto series = ar1(3, 100, 0.0, 2);
  series[1].fill_(4.0);
  EXPECT_TRUE(std::isinf(psm::integrated_autocorrelation_time(series).tau));
  EXPECT_THROW(psm::integrated_autocorrelation_time(torch::zeros({10})), psm::Error);
  EXPECT_THROW(psm::integrated_autocorrelation_time(torch::zeros({2, 1})), psm::Error);
}

}  // namespace
