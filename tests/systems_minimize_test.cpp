#include <gtest/gtest.h>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/systems/double_well.h"
#include "psm/systems/lennard_jones.h"
#include "psm/systems/minimize.h"

namespace {

torch::Tensor uniform_starts(int64_t frames, int64_t n, int64_t dim, double half_width,
                             uint64_t seed) {
  auto generator = psm::make_generator(seed);
  return half_width * (2.0 * torch::rand({frames, n, dim}, generator,
                                         torch::TensorOptions().dtype(torch::kFloat64)) -
                       1.0);
}

// The LJ13 global minimum (Mackay icosahedron) is -44.326801 epsilon in the usual unique-pair
// convention (Cambridge Cluster Database); the ordered-pair sum doubles it.
constexpr double lj13_global_minimum = 2.0 * -44.326801;

TEST(Minimize, FindsTheLj13GlobalMinimumFromRandomStarts) {
  const psm::LennardJones lj({.n = 13, .oscillator_scale = 0.0});
  const auto result = psm::minimize(lj, uniform_starts(8, 13, 3, 1.3, 2), {.max_steps = 3000});
  ASSERT_TRUE(result.converged.all().item<bool>()) << result.steps;
  EXPECT_NEAR(result.energy.min().item<double>(), lj13_global_minimum, 1e-5);
  // Local minima: no configuration ends below the global minimum.
  EXPECT_GT(result.energy.min().item<double>(), lj13_global_minimum - 1e-5);
  EXPECT_LT(result.forces.norm(2, -1).max().item<double>(), 1e-6);
}

TEST(Minimize, Lj13WithTheRestraintHasAHigherMinimum) {
  // The restraint pulls the cluster inwards: the minimum of the full energy lies above the pure
  // LJ minimum, and the LJ part alone at that geometry is higher still than the global minimum.
  const psm::LennardJones full({.n = 13});
  const psm::LennardJones pair_only({.n = 13, .oscillator_scale = 0.0});
  const auto result = psm::minimize(full, uniform_starts(8, 13, 3, 1.3, 2), {.max_steps = 3000});
  ASSERT_TRUE(result.converged.all().item<bool>());
  const auto best = result.energy.argmin().item<int64_t>();
  const double full_minimum = result.energy[best].item<double>();
  const auto best_x = result.positions.narrow(0, best, 1);
  const double pair_part = pair_only.evaluate(best_x).energy.item<double>();
  EXPECT_GT(full_minimum, lj13_global_minimum);
  EXPECT_GT(pair_part, lj13_global_minimum);
  EXPECT_LT(pair_part, full_minimum);
  std::cout << "LJ13 minimum with the restraint: " << full_minimum << " (pair part " << pair_part
            << ")\n";
}

TEST(Minimize, LjDimerEndsAtTheMinimumDistance) {
  const psm::LennardJones lj({.n = 2, .rm = 1.3, .oscillator_scale = 0.0});
  const auto x = torch::tensor({0.0, 0.0, 0.0, 1.9, 0.4, 0.0}, torch::kFloat64).view({1, 2, 3});
  const auto result = psm::minimize(lj, x, {.force_tolerance = 1e-9});
  ASSERT_TRUE(result.converged.item<bool>());
  const auto p = result.positions[0];
  EXPECT_NEAR((p[0] - p[1]).norm().item<double>(), 1.3, 1e-9);
  EXPECT_NEAR(result.energy.item<double>(), -2.0, 1e-12);
}

TEST(Minimize, WorksForAnyPotentialAndReportsUnconvergedFrames) {
  const psm::DoubleWell dw({});
  const auto starts = uniform_starts(4, 4, 2, 3.0, 9);
  const auto start_energy = dw.evaluate(starts, {.forces = false}).energy;
  const auto result = psm::minimize(dw, starts, {.force_tolerance = 1e-8});
  ASSERT_TRUE(result.converged.all().item<bool>());
  EXPECT_TRUE((result.energy < start_energy).all().item<bool>());
  EXPECT_LT(result.forces.norm(2, -1).max().item<double>(), 1e-8);

  const auto capped = psm::minimize(dw, starts, {.max_steps = 3});
  EXPECT_FALSE(capped.converged.any().item<bool>());
  EXPECT_TRUE((capped.steps == 3).all().item<bool>());
  EXPECT_THROW(psm::minimize(dw, starts, {.force_tolerance = 0.0}), psm::Error);
}

}  // namespace
