#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "psm/core/random.h"
#include "psm/data/subsets.h"
#include "psm/simulate/presets.h"
#include "test_util.h"

namespace {

using psm::Dataset;

/// `frames` frames of 3 atoms in 3-D whose energy is the frame index.
Dataset indexed_dataset(int64_t frames) {
  Dataset data;
  auto options = torch::TensorOptions().dtype(torch::kFloat64);
  data.positions = torch::arange(frames * 9, options).reshape({frames, 3, 3});
  data.forces = -data.positions;
  data.energies = torch::arange(frames, options);
  data.species = {0, 0, 0};
  data.kT = 1.5;
  data.provenance = {{"made_by", "test"}};
  return data;
}

TEST(DataSubsets, LimitedDrawsDistinctFramesRepeatably) {
  const Dataset source = indexed_dataset(20);
  const Dataset a = psm::limited_subset(source, 5, 3);
  const Dataset b = psm::limited_subset(source, 5, 3);
  const Dataset c = psm::limited_subset(source, 5, 4);
  ASSERT_EQ(a.num_frames(), 5);
  EXPECT_TRUE(torch::equal(a.energies, b.energies));
  EXPECT_FALSE(torch::equal(a.energies, c.energies));
  EXPECT_EQ(std::get<0>(at::_unique(a.energies)).numel(), 5);
  // Each kept frame keeps its own positions and forces.
  const torch::Tensor index = a.energies.to(torch::kLong);
  EXPECT_TRUE(torch::equal(a.positions, source.positions.index_select(0, index)));
  EXPECT_TRUE(torch::equal(a.forces, source.forces.index_select(0, index)));
  EXPECT_EQ(a.provenance["subset"]["kind"], "limited");
  EXPECT_EQ(a.provenance["source"]["made_by"], "test");
  EXPECT_PSM_ERROR(psm::limited_subset(source, 21, 0), "21 frames", "20");
  EXPECT_PSM_ERROR(psm::limited_subset(source, 0, 0), "0 frames");
}

TEST(DataSubsets, TemperatureBiasKeepsFramesAndRelabelsKT) {
  const Dataset source = indexed_dataset(10);  // sampled at kT 1.5
  const Dataset biased = psm::temperature_biased_subset(source, 1.0, std::nullopt, 0);
  EXPECT_DOUBLE_EQ(biased.kT, 1.0);
  ASSERT_TRUE(biased.sampled_kT.has_value());
  EXPECT_DOUBLE_EQ(*biased.sampled_kT, 1.5);
  EXPECT_TRUE(torch::equal(biased.forces, source.forces));
  EXPECT_EQ(psm::temperature_biased_subset(source, 1.0, 4, 0).num_frames(), 4);
  EXPECT_PSM_ERROR(psm::temperature_biased_subset(source, -1.0, std::nullopt, 0), "kT");
}

TEST(DataSubsets, EnergySelectionKeepsTheLowTail) {
  const Dataset source = indexed_dataset(10);  // energies 0..9
  const Dataset by_max = psm::energy_selected_subset(source, {.energy_max = 2.5});
  EXPECT_TRUE(torch::equal(by_max.energies, torch::tensor({0.0, 1.0, 2.0}, torch::kFloat64)));
  const Dataset by_quantile = psm::energy_selected_subset(source, {.quantile = 0.3});
  EXPECT_EQ(by_quantile.num_frames(), 3);  // quantile 0.3 of 0..9 is 2.7
  EXPECT_LE(by_quantile.energies.max().item<double>(), 2.7);
  EXPECT_PSM_ERROR(psm::energy_selected_subset(source, {}), "exactly one");
  EXPECT_PSM_ERROR(psm::energy_selected_subset(source, {.energy_max = -1.0}), "no frame");
}

/// Four atoms whose dihedral (0, 1, 2, 3) is `degrees` by construction.
torch::Tensor dihedral_frame(double degrees) {
  const double phi = degrees * std::numbers::pi / 180.0;
  return torch::tensor(
             {1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5, std::cos(phi), std::sin(phi), 1.5},
             torch::kFloat64)
      .reshape({1, 4, 3});
}

TEST(DataSubsets, DihedralAnglesAndTorsionWindows) {
  std::vector<torch::Tensor> frames;
  const std::vector<double> angles = {-170.0, -60.0, 0.0, 60.0, 175.0};
  for (double a : angles) frames.push_back(dihedral_frame(a));
  Dataset source;
  source.positions = torch::cat(frames);
  source.species = {6, 6, 6, 6};
  const torch::Tensor measured = psm::dihedral_angles(source.positions, {0, 1, 2, 3});
  EXPECT_TRUE(torch::allclose(measured, torch::tensor(angles, torch::kFloat64), 0, 1e-10))
      << measured;
  // Reversing the atom order keeps the angle (the dihedral is symmetric under a,b,c,d -> d,c,b,a).
  EXPECT_TRUE(torch::allclose(psm::dihedral_angles(source.positions, {3, 2, 1, 0}), measured));
  EXPECT_EQ(psm::torsion_selected_subset(source, {0, 1, 2, 3}, -90, 90).num_frames(), 3);
  // A window through 180 degrees.
  EXPECT_EQ(psm::torsion_selected_subset(source, {0, 1, 2, 3}, 150, -150).num_frames(), 2);
  EXPECT_PSM_ERROR(psm::torsion_selected_subset(source, {0, 1, 2, 9}, -90, 90), "index 9");
}

TEST(DataSubsets, BasinFramesStayInTheMinimumTheyStartFrom) {
  const auto system = psm::make_system({{"name", "lj13"}});
  Dataset source;
  auto generator = psm::make_generator(5);
  source.positions = psm::lattice_configurations(*system, 1, 1.1, generator);
  source.species = system->species();
  source.system = system->spec();
  psm::BasinOptions options;
  options.frames = 64;
  options.trajectories = 4;
  options.burn_in = 100;
  options.thin = 5;
  options.kT = 0.2;
  const Dataset basin = psm::basin_biased_subset(*system, source, options);
  ASSERT_EQ(basin.num_frames(), 64);
  ASSERT_TRUE(basin.has_forces());
  const double minimum = basin.provenance["subset"]["minimum_energy"].get<double>();
  // Harmonic basin: mean energy above the minimum ~ (d_eff / 2) kT with d_eff = 3N - 6 = 33.
  const double excess = basin.energies.mean().item<double>() - minimum;
  EXPECT_GT(excess, 0.25 * 16.5 * 0.2);
  EXPECT_LT(excess, 2.0 * 16.5 * 0.2);
  EXPECT_GE(basin.energies.min().item<double>(), minimum - 1e-6);
  EXPECT_DOUBLE_EQ(basin.kT, 1.0);
  ASSERT_TRUE(basin.sampled_kT.has_value());
  EXPECT_DOUBLE_EQ(*basin.sampled_kT, 0.2);
}

class CliDataSubset : public psm::test::ScratchDir {};

TEST_F(CliDataSubset, WritesSubsetsAndRejectsImpossibleRequests) {
  psm::save_dataset(path("source.npz"), indexed_dataset(10));
  const auto ok =
      psm::test::run_psm("data subset --in " + path("source.npz").string() + " --out " +
                         path("limited.npz").string() + " --kind limited --frames 4 --seed 2");
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_EQ(psm::load_dataset(path("limited.npz")).num_frames(), 4);

  const auto too_many =
      psm::test::run_psm("data subset --in " + path("source.npz").string() + " --out " +
                         path("bad.npz").string() + " --kind limited --frames 11");
  EXPECT_NE(too_many.exit_code, 0);
  EXPECT_NE(too_many.output.find("cannot draw 11 frames"), std::string::npos) << too_many.output;
  const auto no_frames =
      psm::test::run_psm("data subset --in " + path("source.npz").string() + " --out " +
                         path("bad.npz").string() + " --kind limited");
  EXPECT_NE(no_frames.exit_code, 0);
  EXPECT_NE(no_frames.output.find("needs --frames"), std::string::npos) << no_frames.output;
  EXPECT_FALSE(std::filesystem::exists(path("bad.npz")));
}

}  // namespace
