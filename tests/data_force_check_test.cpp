// The virial force check: exact on Gaussian (harmonic) frames, and it catches forces of another
// potential or in other units.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "psm/core/random.h"
#include "psm/data/force_check.h"
#include "test_util.h"

namespace {

/// Frames of independent 3-D harmonic wells U = k/2 sum_i |x_i|^2 at kT, exactly sampled, with
/// their forces -k x.
psm::Dataset harmonic_frames(int64_t frames, int64_t atoms, double k, double kT, uint64_t seed) {
  torch::Generator rng = psm::make_generator(seed);
  psm::Dataset data;
  data.species = std::vector<int64_t>(atoms, 18);
  data.kT = kT;
  data.positions = std::sqrt(kT / k) * torch::randn({frames, atoms, 3}, rng, torch::kFloat64);
  data.forces = -k * data.positions;
  return data;
}

TEST(ForceCheck, VirialTemperatureOfHarmonicFramesIsTheirKt) {
  const psm::Dataset data = harmonic_frames(4000, 5, 3.0, 0.7, 1);
  const psm::VirialTemperature virial = psm::virial_temperature(data);
  EXPECT_EQ(virial.frames, 4000);
  // Per frame, kT_virial = k |x - x̄|² / 12 is kT χ²₁₂ / 12: standard deviation kT sqrt(2/12).
  EXPECT_NEAR(virial.standard_error, 0.7 * std::sqrt(2.0 / 12.0) / std::sqrt(4000.0), 2e-4);
  EXPECT_LT(virial.deviation(0.7), psm::kForceCheckSigmas);
  EXPECT_NE(psm::describe_force_check(virial, 0.7).find("consistent"), std::string::npos);
}

TEST(ForceCheck, CatchesForcesOfAnotherPotential) {
  psm::Dataset data = harmonic_frames(4000, 5, 3.0, 0.7, 2);
  data.forces = 1.2 * data.forces;  // a stiffer well than the one that sampled the frames
  const psm::VirialTemperature virial = psm::virial_temperature(data);
  EXPECT_NEAR(virial.kT, 1.2 * 0.7, 6 * virial.standard_error);
  EXPECT_GT(virial.deviation(0.7), psm::kForceCheckSigmas);
  EXPECT_NE(psm::describe_force_check(virial, 0.7).find("PSM learns the forces' distribution"),
            std::string::npos);
}

TEST(ForceCheck, IdenticalFramesWithZeroForcesAreFlagged) {
  psm::Dataset data = harmonic_frames(1, 3, 1.0, 1.0, 4);
  data.positions = data.positions.expand({3, 3, 3}).clone();
  data.forces = torch::zeros_like(data.positions);
  const psm::VirialTemperature virial = psm::virial_temperature(data);
  EXPECT_EQ(virial.standard_error, 0.0);
  EXPECT_EQ(virial.deviation(0.0), 0.0);
  EXPECT_GT(virial.deviation(1.0), psm::kForceCheckSigmas);
}

TEST(ForceCheck, NeedsForcesAndTwoFrames) {
  psm::Dataset data = harmonic_frames(1, 3, 1.0, 1.0, 3);
  EXPECT_PSM_ERROR(psm::virial_temperature(data), "needs >= 2 frames");
  data.forces = torch::Tensor();
  EXPECT_PSM_ERROR(psm::virial_temperature(data), "no forces");
}

}  // namespace
