// Samplers on a real psm potential against an exact answer: two particles in the DW pair
// potential in 2-D. With the centre of mass removed, the pair distance d has density
// proportional to d exp(-E(d) / kT) (the 2-D radial Jacobian), E(d) = b s^2 + c s^4 with
// s = d - d0 (psm's 0.5 * sum over ordered pairs counts the one pair once), so <E> is a 1-D
// quadrature.

#include <gtest/gtest.h>

#include <cmath>

#include "psm/core/random.h"
#include "psm/simulate/autocorrelation.h"
#include "psm/simulate/langevin.h"
#include "psm/simulate/metropolis.h"
#include "psm/simulate/presets.h"
#include "simulate_test_potentials.h"

namespace {

using psm::testing::standard_errors_off;

/// <E> of the two-particle double well at kT = 1 by the midpoint rule on d in (0, 20).
double quadrature_mean_energy(double b, double c, double d0) {
  double weighted = 0.0, norm = 0.0;
  const double h = 1e-4;
  for (double d = 0.5 * h; d < 20.0; d += h) {
    const double s = d - d0, energy = b * s * s + c * s * s * s * s;
    const double weight = d * std::exp(-energy);
    weighted += weight * energy;
    norm += weight;
  }
  return weighted / norm;
}

class TwoParticleDoubleWell : public ::testing::Test {
 protected:
  const std::unique_ptr<psm::System> system = psm::make_system({{"name", "dw"}, {"n", 2}});
  const double expected = quadrature_mean_energy(-4.0, 0.9, 4.0);
  torch::Tensor start(int64_t chains) const {
    auto generator = psm::make_generator(5);
    return psm::lattice_configurations(*system, chains, 4.0, generator);
  }
};

TEST_F(TwoParticleDoubleWell, MetropolisMatchesQuadrature) {
  psm::MetropolisSampler sampler(*system, {.chains = 128,
                                           .burn_in = 500,
                                           .thin = 10,
                                           .samples = 128 * 100,
                                           .initial_step = 0.5,
                                           .forces = false,
                                           .seed = 1});
  auto state = sampler.start(start(128));
  sampler.run(state);
  EXPECT_LT(standard_errors_off(state.kept.energy_series(), expected), 4.0);
}

TEST_F(TwoParticleDoubleWell, LangevinMatchesQuadrature) {
  psm::LangevinSampler sampler(*system, {.time_step = 0.01,
                                         .trajectories = 128,
                                         .burn_in = 500,
                                         .record_every = 25,
                                         .samples = 128 * 100,
                                         .seed = 2});
  auto state = sampler.start(start(128));
  sampler.run(state);
  EXPECT_LT(standard_errors_off(state.kept.energy_series(), expected), 4.0);
  EXPECT_NEAR(sampler.kinetic_temperature(state), 1.0, 0.02);
}

}  // namespace
