#include <gtest/gtest.h>

#include <filesystem>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/simulate/hamiltonian.h"
#include "simulate_test_potentials.h"

namespace fs = std::filesystem;

namespace {

using psm::testing::harmonic_system;
using psm::testing::standard_errors_off;

TEST(Hamiltonian, AnchoredHarmonicWellHasExactMomentsAndTargetAcceptance) {
  // A time step near the leapfrog's stability limit (2 / sqrt(k)) with few steps: the energy
  // error is large, so only the Metropolis test keeps the moments exact.
  const double k = 2.0, kT = 0.5;
  auto system = harmonic_system(3, 2, k, /*centred=*/false);
  psm::HamiltonianSampler sampler(*system, {.kT = kT,
                                            .chains = 64,
                                            .burn_in = 300,
                                            .thin = 2,
                                            .samples = 64 * 200,
                                            .leapfrog_steps = 3,
                                            .initial_step = 1.0,
                                            .com_free = false,
                                            .seed = 11});
  auto state = sampler.start(torch::zeros({64, 3, 2}, torch::kFloat64));
  sampler.run(state);
  const auto dataset = sampler.dataset(state);

  ASSERT_EQ(dataset.num_frames(), 64 * 200);
  EXPECT_NEAR(sampler.acceptance(state), 0.8, 0.04);
  // <U> = N D kT / 2 = 1.5; Var x = kT / k per coordinate.
  EXPECT_LT(standard_errors_off(state.kept.energy_series(), 3 * 2 * kT / 2), 4.0);
  const auto squares = torch::stack(state.kept.positions, 1).square().mean({2, 3});  // [C, T]
  EXPECT_LT(standard_errors_off(squares, kT / k), 4.0);
  EXPECT_TRUE(torch::allclose(dataset.energies, 0.5 * k * dataset.positions.square().sum({1, 2})));
  EXPECT_TRUE(torch::allclose(dataset.forces, -k * dataset.positions));
  EXPECT_EQ(dataset.provenance["sampler"], "hmc");
  EXPECT_EQ(dataset.provenance["steps"], 300 + 200 * 2);
  EXPECT_DOUBLE_EQ(dataset.kT, kT);
}

TEST(Hamiltonian, CentreOfMassFreeMomentaKeepTheCentroidAndSampleTheRest) {
  const double k = 1.0, kT = 1.0;
  const int64_t chains = 32, atoms = 4, dim = 3;
  auto system = harmonic_system(atoms, dim, k, /*centred=*/true);
  psm::HamiltonianSampler sampler(*system, {.kT = kT,
                                            .chains = chains,
                                            .burn_in = 200,
                                            .thin = 2,
                                            .samples = chains * 200,
                                            .leapfrog_steps = 5,
                                            .initial_step = 0.3,
                                            .forces = false,
                                            .seed = 3});
  auto generator = psm::make_generator(99);
  const auto start = torch::randn({chains, atoms, dim}, generator, torch::kFloat64);
  auto state = sampler.start(start);
  sampler.run(state);
  const auto dataset = sampler.dataset(state);

  EXPECT_FALSE(dataset.has_forces());
  const auto centroids = torch::stack(state.kept.positions).mean(2);  // [T, C, D]
  EXPECT_TRUE(torch::allclose(centroids, start.mean(1).expand_as(centroids), 0.0, 1e-12));
  EXPECT_LT(standard_errors_off(state.kept.energy_series(), (atoms - 1) * dim * kT / 2), 4.0);
}

TEST(Hamiltonian, ResumedRunEqualsUninterruptedRun) {
  auto system = harmonic_system(3, 3, 1.0, /*centred=*/true);
  const psm::HamiltonianOptions options{
      .chains = 8, .burn_in = 20, .thin = 3, .samples = 8 * 30, .leapfrog_steps = 4, .seed = 5};
  auto generator = psm::make_generator(1);
  const auto start = torch::randn({8, 3, 3}, generator, torch::kFloat64);
  const fs::path file = fs::temp_directory_path() / "psm_hamiltonian_resume.pt";

  psm::HamiltonianSampler whole(*system, options);
  auto uninterrupted = whole.start(start);
  whole.run(uninterrupted);

  auto first_options = options;
  first_options.samples = 8 * 12;
  psm::HamiltonianSampler first(*system, first_options);
  auto partial = first.start(start);
  first.run(partial);
  first.save(file, partial);

  auto resumed = whole.load(file);
  EXPECT_EQ(resumed.step, 20 + 12 * 3);
  EXPECT_TRUE(torch::equal(resumed.forces, partial.forces));
  whole.run(resumed);
  const auto a = whole.dataset(uninterrupted), b = whole.dataset(resumed);
  EXPECT_TRUE(torch::equal(a.positions, b.positions));
  EXPECT_TRUE(torch::equal(a.energies, b.energies));
  EXPECT_TRUE(torch::equal(uninterrupted.log_step, resumed.log_step));
  EXPECT_EQ(a.provenance, b.provenance);

  auto other = options;
  other.leapfrog_steps = 5;
  try {
    psm::HamiltonianSampler(*system, other).load(file);
    FAIL() << "expected psm::Error";
  } catch (const psm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("leapfrog_steps"), std::string::npos) << e.what();
  }
  fs::remove(file);
}

TEST(Hamiltonian, RejectsImpossibleOptionsAndShapes) {
  auto system = harmonic_system(2, 2, 1.0, false);
  EXPECT_THROW(psm::HamiltonianSampler(*system, {.kT = -1.0}), psm::Error);
  EXPECT_THROW(psm::HamiltonianSampler(*system, {.chains = 0}), psm::Error);
  EXPECT_THROW(psm::HamiltonianSampler(*system, {.leapfrog_steps = 0}), psm::Error);
  EXPECT_THROW(psm::HamiltonianSampler(*system, {.initial_step = 0.0}), psm::Error);
  EXPECT_THROW(psm::HamiltonianSampler(*system, {.target_acceptance = 1.0}), psm::Error);
  try {
    psm::HamiltonianSampler(*system, {.leapfrog_steps = -2});
    FAIL() << "expected psm::Error";
  } catch (const psm::Error& e) {
    EXPECT_STREQ(e.what(), "hmc: leapfrog_steps must be positive, got -2");
  }
  psm::HamiltonianSampler sampler(*system, {.chains = 4});
  EXPECT_THROW(sampler.start(torch::zeros({3, 2, 2}, torch::kFloat64)), psm::Error);
  EXPECT_THROW(sampler.start(torch::full({4, 2, 2}, NAN, torch::kFloat64)), psm::Error);
}

}  // namespace
