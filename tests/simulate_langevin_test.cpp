#include <gtest/gtest.h>

#include <filesystem>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/simulate/autocorrelation.h"
#include "psm/simulate/langevin.h"
#include "simulate_test_potentials.h"

namespace fs = std::filesystem;

namespace {

using psm::testing::harmonic_system;

/// Standard error of the mean of `series` [C, T], from its integrated autocorrelation time.
double standard_error(const torch::Tensor& series) {
  const double tau = psm::integrated_autocorrelation_time(series).tau;
  return series.std().item<double>() * std::sqrt(tau / static_cast<double>(series.numel()));
}

TEST(Langevin, HarmonicOscillatorHasVarianceKTOverKAndKineticTemperatureKT) {
  const double k = 2.0, kT = 0.7;
  const int64_t batch = 64, atoms = 4, dim = 3;
  auto system = harmonic_system(atoms, dim, k, /*centred=*/false);
  const psm::LangevinOptions options{.kT = kT,
                                     .time_step = 0.05,
                                     .friction = 1.0,
                                     .masses = torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kFloat64),
                                     .trajectories = batch,
                                     .burn_in = 200,
                                     .record_every = 10,
                                     .samples = batch * 150,
                                     .com_free = false,
                                     .seed = 17};
  psm::LangevinSampler sampler(*system, options);
  auto state = sampler.start(torch::zeros({batch, atoms, dim}, torch::kFloat64));
  sampler.run(state);

  // BAOAB samples a harmonic oscillator's positions exactly: Var x = kT / k per coordinate.
  const auto squares = torch::stack(state.kept.positions, 1).square().mean({2, 3});  // [B, T]
  EXPECT_NEAR(squares.mean().item<double>(), kT / k, 4 * standard_error(squares));
  // Kinetic temperature, measured on the velocities after the O step: exact for a harmonic system.
  const auto kinetic = torch::stack(state.kinetic, 1) * 2.0 / (atoms * dim);  // [B, T]
  EXPECT_NEAR(sampler.kinetic_temperature(state), kT,
              std::max(4 * standard_error(kinetic), 0.01 * kT));
  EXPECT_TRUE(torch::allclose(sampler.kinetic_temperatures(state), kinetic));

  const auto dataset = sampler.dataset(state);
  ASSERT_EQ(dataset.num_frames(), batch * 150);
  EXPECT_TRUE(torch::allclose(dataset.forces, -k * dataset.positions));
  EXPECT_TRUE(torch::allclose(dataset.energies, 0.5 * k * dataset.positions.square().sum({1, 2})));
  EXPECT_EQ(dataset.provenance["sampler"], "langevin-baoab");
  EXPECT_EQ(dataset.provenance["steps"], 200 + 150 * 10);
}

TEST(Langevin, KineticTemperatureIsExactForAStiffOscillator) {
  // omega dt = 1.2: BAOAB's positions stay exact, its full-step velocities are 1 - (omega dt /
  // 2)^2 = 0.64 times too cold, and the velocities after the O step, where psm measures the
  // kinetic temperature, are exact.
  const double k = 1.44, kT = 0.5;
  const int64_t batch = 256, atoms = 2, dim = 3;
  auto system = harmonic_system(atoms, dim, k, /*centred=*/false);
  psm::LangevinSampler sampler(*system, {.kT = kT,
                                         .time_step = 1.0,
                                         .friction = 1.0,
                                         .trajectories = batch,
                                         .burn_in = 50,
                                         .record_every = 3,
                                         .samples = batch * 100,
                                         .com_free = false,
                                         .seed = 5});
  auto state = sampler.start(torch::zeros({batch, atoms, dim}, torch::kFloat64));
  sampler.run(state);
  const torch::Tensor kinetic = sampler.kinetic_temperatures(state);
  ASSERT_EQ(kinetic.sizes(), (std::vector<int64_t>{batch, 100}));
  EXPECT_NEAR(kinetic.mean().item<double>(), kT, 4 * standard_error(kinetic));
  const torch::Tensor full_step = state.velocities.square().mean();
  EXPECT_NEAR(full_step.item<double>(), 0.64 * kT, 0.12 * kT);  // one round: 3 standard errors
}

TEST(Langevin, CentreOfMassFreeDynamicsKeepsTheCentroid) {
  const int64_t batch = 16, atoms = 5, dim = 2;
  auto system = harmonic_system(atoms, dim, 1.0, /*centred=*/true);
  psm::LangevinSampler sampler(*system, {.time_step = 0.05,
                                         .trajectories = batch,
                                         .burn_in = 100,
                                         .record_every = 5,
                                         .samples = batch * 200,
                                         .seed = 4});
  auto generator = psm::make_generator(8);
  const auto start = torch::randn({batch, atoms, dim}, generator, torch::kFloat64);
  auto state = sampler.start(start);
  sampler.run(state);
  const auto centroids = torch::stack(state.kept.positions).mean(2);  // [T, B, D]
  EXPECT_TRUE(torch::allclose(centroids, start.mean(1).expand_as(centroids), 0.0, 1e-10));
  // (N - 1) D degrees of freedom carry kinetic energy; <U> = (N - 1) D kT / 2.
  EXPECT_NEAR(sampler.kinetic_temperature(state), 1.0, 0.03);
  const auto energies = state.kept.energy_series();
  EXPECT_NEAR(energies.mean().item<double>(), (atoms - 1) * dim / 2.0,
              4 * standard_error(energies));
}

TEST(Langevin, ResumedRunEqualsUninterruptedRun) {
  auto system = harmonic_system(3, 3, 1.0, /*centred=*/true);
  const psm::LangevinOptions options{
      .trajectories = 4, .burn_in = 20, .record_every = 3, .samples = 4 * 25, .seed = 9};
  auto generator = psm::make_generator(6);
  const auto start = torch::randn({4, 3, 3}, generator, torch::kFloat64);
  const fs::path file = fs::temp_directory_path() / "psm_langevin_resume.pt";

  psm::LangevinSampler whole(*system, options);
  auto uninterrupted = whole.start(start);
  whole.run(uninterrupted);

  auto first_options = options;
  first_options.samples = 4 * 10;
  psm::LangevinSampler first(*system, first_options);
  auto partial = first.start(start);
  first.run(partial);
  first.save(file, partial);

  auto resumed = whole.load(file);
  whole.run(resumed);
  const auto a = whole.dataset(uninterrupted), b = whole.dataset(resumed);
  EXPECT_TRUE(torch::equal(a.positions, b.positions));
  EXPECT_TRUE(torch::equal(a.forces, b.forces));
  EXPECT_TRUE(torch::equal(uninterrupted.velocities, resumed.velocities));
  EXPECT_EQ(whole.kinetic_temperature(uninterrupted), whole.kinetic_temperature(resumed));

  auto other = options;
  other.time_step = 0.01;
  EXPECT_THROW(psm::LangevinSampler(*system, other).load(file), psm::Error);
  fs::remove(file);
}

TEST(Langevin, RejectsImpossibleOptions) {
  auto system = harmonic_system(2, 2, 1.0, false);
  EXPECT_THROW(psm::LangevinSampler(*system, {.kT = -1.0}), psm::Error);
  EXPECT_THROW(psm::LangevinSampler(*system, {.time_step = 0.0}), psm::Error);
  EXPECT_THROW(psm::LangevinSampler(*system, {.record_every = 0}), psm::Error);
  EXPECT_THROW(psm::LangevinSampler(*system, {.masses = torch::ones({3}, torch::kFloat64)}),
               psm::Error);
  EXPECT_THROW(psm::LangevinSampler(*system, {.masses = -torch::ones({2}, torch::kFloat64)}),
               psm::Error);
}

TEST(Langevin, StandardAtomicMasses) {
  const auto masses = psm::standard_atomic_masses({0, 1, 6, 8});
  EXPECT_TRUE(
      torch::allclose(masses, torch::tensor({1.0, 1.008, 12.011, 15.999}, torch::kFloat64)));
  EXPECT_THROW(psm::standard_atomic_masses({200}), psm::Error);
}

}  // namespace
