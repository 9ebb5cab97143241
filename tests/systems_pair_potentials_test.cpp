#include <gtest/gtest.h>

#include <cmath>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/systems/double_well.h"
#include "psm/systems/lennard_jones.h"
#include "systems_test_util.h"

namespace {

using psm::testing::finite_difference_gradient;
using psm::testing::force_gradient_mismatch;

/// Batch of `frames` configurations: the first n points of a cubic (square) grid with the given
/// spacing, each coordinate jittered by uniform noise in [-jitter, jitter]. Keeps particles
/// apart, as in a liquid-like LJ configuration. Returns [frames, n, dim] float64.
torch::Tensor jittered_grid(int64_t frames, int64_t n, int64_t dim, double spacing, double jitter,
                            uint64_t seed) {
  const auto side = static_cast<int64_t>(std::ceil(std::pow(static_cast<double>(n), 1.0 / dim)));
  std::vector<double> points;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t axis = 0, rest = i; axis < dim; ++axis, rest /= side) {
      points.push_back(spacing * static_cast<double>(rest % side));
    }
  }
  auto grid = torch::tensor(points, torch::kFloat64).view({1, n, dim});
  auto generator = psm::make_generator(seed);
  const auto noise =
      torch::rand({frames, n, dim}, generator, torch::TensorOptions().dtype(torch::kFloat64));
  return grid + jitter * (2.0 * noise - 1.0);
}

TEST(LennardJones, DimerAtMinimumDistanceHasTwiceEpsilonPlusRestraint) {
  const psm::LennardJonesOptions options{
      .n = 2, .epsilon = 1.5, .rm = 1.2, .oscillator_scale = 0.7, .dim = 3};
  const psm::LennardJones lj(options);
  // Particles at +-rm/2 on the x axis: each ordered pair gives -epsilon; the restraint gives
  // 0.5 * scale * 2 * (rm/2)^2.
  const auto x = torch::tensor({-0.6, 0.0, 0.0, 0.6, 0.0, 0.0}, torch::kFloat64).view({1, 2, 3});
  const auto result = lj.evaluate(x);
  EXPECT_NEAR(result.energy.item<double>(), -2.0 * 1.5 + 0.5 * 0.7 * 2.0 * 0.36, 1e-12);
  // No pair force at rm; the restraint pulls each particle back to the centre.
  const auto expected = torch::tensor({0.42, 0.0, 0.0, -0.42, 0.0, 0.0}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(result.forces.view({6}), expected, 0, 1e-12)) << result.forces;
}

TEST(LennardJones, DimerPairEnergyAtTwiceTheMinimumDistance) {
  const psm::LennardJones lj({.n = 2, .oscillator_scale = 0.0});
  const auto x = torch::tensor({0.0, 0.0, 0.0, 2.0, 0.0, 0.0}, torch::kFloat64).view({1, 2, 3});
  // 2 * [(1/2)^12 - 2 (1/2)^6]
  EXPECT_NEAR(lj.evaluate(x).energy.item<double>(), 2.0 * (std::pow(0.5, 12) - std::pow(0.5, 5)),
              1e-15);
}

TEST(LennardJones, ForcesAreMinusTheFiniteDifferenceGradient) {
  struct Case {
    psm::LennardJonesOptions options;
    double spacing;
  };
  const Case cases[] = {
      {{.n = 13}, 1.1},
      {{.n = 7, .epsilon = 0.8, .rm = 1.3, .oscillator_scale = 2.5, .dim = 2}, 1.4},
  };
  for (const auto& [options, spacing] : cases) {
    const psm::LennardJones lj(options);
    const auto x = jittered_grid(3, options.n, options.dim, spacing, 0.1, 7);
    const auto forces = lj.evaluate(x).forces;
    ASSERT_EQ(forces.sizes(), x.sizes());
    const auto gradient = finite_difference_gradient(lj, x, 1e-5);
    EXPECT_LT(force_gradient_mismatch(forces, gradient), 1e-7) << "n = " << options.n;
  }
}

TEST(LennardJones, EnergyOnlyRequestSkipsForcesAndKeepsTheEnergy) {
  const psm::LennardJones lj({});
  const auto x = jittered_grid(4, 13, 3, 1.1, 0.1, 3);
  const auto full = lj.evaluate(x);
  const auto energy_only = lj.evaluate(x, {.forces = false});
  EXPECT_FALSE(energy_only.forces.defined());
  EXPECT_TRUE(torch::equal(full.energy, energy_only.energy));
  EXPECT_EQ(full.energy.scalar_type(), torch::kFloat64);
  EXPECT_EQ(full.energy.sizes(), torch::IntArrayRef({4}));
}

TEST(LennardJones, EnergyIsInvariantUnderRotationTranslationAndPermutation) {
  const psm::LennardJones lj({});
  const auto x = jittered_grid(2, 13, 3, 1.1, 0.1, 11);
  auto generator = psm::make_generator(5);
  const auto [q, r] = torch::linalg_qr(
      torch::randn({3, 3}, generator, torch::TensorOptions().dtype(torch::kFloat64)));
  const auto moved = torch::matmul(x, q.t()) + torch::tensor({0.3, -1.0, 2.0}, torch::kFloat64);
  const auto permuted = moved.index_select(1, torch::randperm(13, generator, torch::kLong));
  EXPECT_TRUE(torch::allclose(lj.evaluate(permuted).energy, lj.evaluate(x).energy, 1e-12, 1e-10));
}

TEST(LennardJones, RejectsBadOptionsAndBadPositions) {
  EXPECT_THROW(psm::LennardJones({.n = 1}), psm::Error);
  EXPECT_THROW(psm::LennardJones({.rm = -1.0}), psm::Error);
  EXPECT_THROW(psm::LennardJones({.dim = 4}), psm::Error);
  const psm::LennardJones lj({.n = 4});
  EXPECT_THROW(lj.evaluate(torch::zeros({2, 5, 3}, torch::kFloat64)), psm::Error);
  EXPECT_THROW(lj.evaluate(torch::zeros({4, 3}, torch::kFloat64)), psm::Error);
  EXPECT_THROW(lj.evaluate(torch::zeros({2, 4, 3}, torch::kLong)), psm::Error);
}

TEST(DoubleWell, SquareOfSideD0HasOnlyDiagonalPairEnergy) {
  const psm::DoubleWell dw({});
  // Square of side d0 = 4: the four sides sit at s = 0; the two diagonals at s = 4 (sqrt2 - 1),
  // each counted twice and halved: E = 2 g(s) with g(s) = -4 s^2 + 0.9 s^4.
  const auto x =
      torch::tensor({0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0}, torch::kFloat64).view({1, 4, 2});
  const double s = 4.0 * (std::sqrt(2.0) - 1.0);
  EXPECT_NEAR(dw.evaluate(x).energy.item<double>(), 2.0 * (-4.0 * s * s + 0.9 * std::pow(s, 4)),
              1e-12);
}

TEST(DoubleWell, PairAtTheWellBottomHasZeroForce) {
  const psm::DoubleWell dw({.n = 2, .dim = 3, .a = 0.0, .b = -4.0, .c = 0.9, .d0 = 4.0});
  // g'(s) = 2 b s + 4 c s^3 = 0 at s^2 = -b / (2c).
  const double s = std::sqrt(4.0 / 1.8);
  const auto x = torch::tensor({0.0, 0.0, 0.0, 0.0, 4.0 + s, 0.0}, torch::kFloat64).view({1, 2, 3});
  const auto result = dw.evaluate(x);
  EXPECT_NEAR(result.energy.item<double>(), -4.0 * s * s + 0.9 * std::pow(s, 4), 1e-12);
  EXPECT_LT(result.forces.abs().max().item<double>(), 1e-12);
}

TEST(DoubleWell, ForcesAreMinusTheFiniteDifferenceGradient) {
  for (const auto& options :
       {psm::DoubleWellOptions{},
        psm::DoubleWellOptions{.n = 5, .dim = 3, .a = 0.5, .b = -3.0, .c = 1.2, .d0 = 2.5}}) {
    const psm::DoubleWell dw(options);
    const auto x = jittered_grid(3, options.n, options.dim, 3.0, 0.8, 13);
    const auto gradient = finite_difference_gradient(dw, x, 1e-5);
    EXPECT_LT(force_gradient_mismatch(dw.evaluate(x).forces, gradient), 1e-7)
        << "n = " << options.n;
  }
}

}  // namespace
