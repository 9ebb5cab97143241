#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <thread>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/core/units.h"
#include "psm/io/dataset.h"
#include "psm/systems/labelling.h"
#include "psm/systems/xtb.h"
#include "systems_test_util.h"

namespace {

/// Runs `evaluate` and returns the psm::Error message, or fails the test when nothing is thrown.
template <class F>
std::string error_message(F&& evaluate) {
  try {
    evaluate();
  } catch (const psm::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected psm::Error";
  return "";
}

#ifdef PSM_WITH_XTB

using psm::testing::finite_difference_gradient;
using psm::testing::force_gradient_mismatch;

const std::vector<int64_t> water_species = {8, 1, 1};
/// Water slightly off its GFN2 minimum (so that forces are not all ~0), [1, 3, 3] Å.
torch::Tensor water() {
  return torch::tensor({0.0, 0.0, 0.12, 0.0, 0.78, -0.47, 0.0, -0.74, -0.45}, torch::kFloat64)
      .view({1, 3, 3});
}

const std::vector<int64_t> ethanol_species = {6, 6, 8, 1, 1, 1, 1, 1, 1};
/// Ethanol near its equilibrium geometry, [1, 9, 3] Å.
torch::Tensor ethanol() {
  return torch::tensor(
             {-0.0011, -0.0000, 0.0029,  1.5155,  0.0000,  -0.0018, 2.0110,  1.3245,  0.0000,
              -0.3918, 1.0197,  0.0072,  -0.3910, -0.5140, -0.8831, -0.3790, -0.5127, 0.8875,
              1.8839,  -0.5202, -0.8896, 1.8905,  -0.5130, 0.8907,  2.9730,  1.2993,  0.0070},
             torch::kFloat64)
      .view({1, 9, 3});
}

/// `frames` copies of `molecule` [1, N, 3] with Gaussian noise of `sigma` Å.
torch::Tensor jiggled(const torch::Tensor& molecule, int64_t frames, double sigma, uint64_t seed) {
  auto generator = psm::make_generator(seed);
  return molecule +
         sigma * torch::randn({frames, molecule.size(1), 3}, generator, molecule.options());
}

TEST(Xtb, SmallMoleculeEnergiesAreFiniteAndPlausible) {
  const auto system = psm::make_system({{"name", "xtb"}, {"species", water_species}});
  EXPECT_EQ(system->units(), psm::Units::kcal_mol_angstrom);
  EXPECT_EQ(system->species(), water_species);
  const auto result = system->evaluate(water());
  ASSERT_EQ(result.energy.sizes(), torch::IntArrayRef({1}));
  ASSERT_EQ(result.forces.sizes(), torch::IntArrayRef({1, 3, 3}));
  // GFN2-xTB total energy of water is about -5.07 Hartree.
  const double hartree = result.energy.item<double>() / psm::constants::hartree_in_kcal_mol;
  EXPECT_GT(hartree, -5.2);
  EXPECT_LT(hartree, -4.9);
  EXPECT_TRUE(torch::isfinite(result.forces).all().item<bool>());
  // No external field: the forces sum to zero.
  EXPECT_LT(result.forces.sum(1).abs().max().item<double>(), 1e-6);

  const psm::Xtb xtb({.species = ethanol_species});
  const double ethanol_hartree =
      xtb.evaluate(ethanol()).energy.item<double>() / psm::constants::hartree_in_kcal_mol;
  EXPECT_GT(ethanol_hartree, -11.6);
  EXPECT_LT(ethanol_hartree, -11.2);
}

TEST(Xtb, ForcesAreMinusTheFiniteDifferenceGradient) {
  // A step of 1e-4 Å keeps the O(h^2) error of the central difference near 1e-7 relative; the
  // SCF noise is far smaller at a tightened accuracy.
  const psm::Xtb water_xtb({.species = water_species, .accuracy = 0.01});
  EXPECT_LT(force_gradient_mismatch(water_xtb.evaluate(water()).forces,
                                    finite_difference_gradient(water_xtb, water(), 1e-4)),
            1e-6);
  const psm::Xtb ethanol_xtb({.species = ethanol_species, .accuracy = 0.01});
  const auto x = jiggled(ethanol(), 1, 0.05, 3);
  EXPECT_LT(force_gradient_mismatch(ethanol_xtb.evaluate(x).forces,
                                    finite_difference_gradient(ethanol_xtb, x, 1e-4)),
            1e-6);
}

TEST(Xtb, ConcurrentCallsGiveTheSerialNumbers) {
  const auto frames = jiggled(ethanol(), 4, 0.05, 5);
  const psm::Xtb serial({.species = ethanol_species, .threads = 1});
  const auto expected = serial.evaluate(frames);

  const psm::Xtb shared({.species = ethanol_species, .threads = 2});
  psm::Evaluation first, second;
  {
    std::jthread a([&] { first = shared.evaluate(frames); });
    std::jthread b([&] { second = shared.evaluate(frames.flip(0)); });
  }
  EXPECT_TRUE(torch::equal(first.energy, expected.energy));
  EXPECT_TRUE(torch::equal(first.forces, expected.forces));
  EXPECT_TRUE(torch::equal(second.energy.flip(0), expected.energy));
  EXPECT_TRUE(torch::equal(second.forces.flip(0), expected.forces));
}

TEST(Xtb, FailedScfBecomesAnErrorWithXtbsMessage) {
  const auto system =
      psm::make_system({{"name", "xtb"}, {"species", ethanol_species}, {"max_iterations", 2}});
  const auto message = error_message([&] { system->evaluate(jiggled(ethanol(), 2, 0.05, 1)); });
  EXPECT_NE(message.find("did not converge"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(Xtb, BadMolecularInputIsRejected) {
  EXPECT_NE(error_message([] {
              psm::Xtb({.species = {8, 0, 1}});
            }).find("unknown element Z = 0"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              psm::Xtb({.species = {8, 1, 118}});
            }).find("Z = 118"),
            std::string::npos);
  EXPECT_NE(error_message([] { psm::Xtb({.species = water_species, .uhf = 1}); }).find("parity"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "xtb"}, {"species", {"O", "H", "H"}}});
            }).find("option 'species' must be a list of integers"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "xtb"}});
            }).find("'species' is required"),
            std::string::npos);

  const psm::Xtb xtb({.species = water_species});
  auto overlapping = water().clone();
  overlapping[0][2] = overlapping[0][0] + 0.2;  // 0.35 Å apart
  EXPECT_NE(error_message([&] { xtb.evaluate(overlapping); }).find("atoms 0 and 2 of frame 0"),
            std::string::npos);
  EXPECT_NE(error_message([&] { xtb.evaluate(ethanol()); }).find("shape [B, 3, 3]"),
            std::string::npos);
  auto nan = water().clone();
  nan[0][1][1] = std::nan("");
  EXPECT_NE(error_message([&] { xtb.evaluate(nan); }).find("NaN"), std::string::npos);
}

TEST(Xtb, SpecRebuildsTheSameSystem) {
  const auto system = psm::make_system(
      {{"name", "xtb"}, {"species", {8, 1, 1, 1}}, {"charge", 1}, {"accuracy", 0.5}});
  const auto rebuilt = psm::make_system(system->spec());
  EXPECT_EQ(rebuilt->spec(), system->spec());
  EXPECT_EQ(rebuilt->spec()["charge"], 1);
  // Hydronium: pyramidal H3O+.
  const auto x =
      torch::tensor({0.0, 0.0, 0.1, 0.95, 0.0, -0.25, -0.47, 0.82, -0.25, -0.47, -0.82, -0.25},
                    torch::kFloat64)
          .view({1, 4, 3});
  EXPECT_TRUE(torch::equal(rebuilt->evaluate(x).energy, system->evaluate(x).energy));
}

TEST(Xtb, LabellingCountsFramesXtbCannotEvaluate) {
  // Generated samples may put atoms on top of each other, where xtb throws: such a frame fails
  // alone, not the whole batch.
  const auto system = psm::make_system({{"name", "xtb"}, {"species", water_species}});
  auto overlapping = water().clone();
  overlapping[0][2] = overlapping[0][0] + 0.2;
  psm::Dataset data;
  data.positions = torch::cat({water(), overlapping, water()});
  const torch::Tensor energies = psm::energies_or_nan(*system, data.positions);
  EXPECT_TRUE(torch::isfinite(energies.index({torch::tensor({0, 2})})).all().item<bool>());
  EXPECT_TRUE(std::isnan(energies[1].item<double>()));
  EXPECT_DOUBLE_EQ(energies[0].item<double>(), system->evaluate(water()).energy.item<double>());
  EXPECT_EQ(psm::label_dataset(*system, data), 1);
  EXPECT_FALSE(data.has_energies());  // finite labels only
  psm::Dataset good = data.select(torch::tensor({0, 2}));
  EXPECT_EQ(psm::label_dataset(*system, good), 0);
  EXPECT_TRUE(good.has_energies() && good.has_forces());
  // A wrong shape is still an error, not a failed frame.
  EXPECT_NE(error_message([&] { psm::energies_or_nan(*system, ethanol()); }).find("shape"),
            std::string::npos);
}

#else

TEST(Xtb, BuildWithoutXtbSaysSo) {
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "xtb"}, {"species", {8, 1, 1}}});
            }).find("psm was built without xtb"),
            std::string::npos);
}

#endif

}  // namespace
