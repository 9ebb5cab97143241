#include "psm/simulate/presets.h"

#include <torch/torch.h>

#include <cmath>

#include "psm/core/error.h"
#include "psm/simulate/langevin.h"

namespace psm {

SamplerPreset sampler_preset(const System& system) {
  const std::string& name = system.name();
  if (name == "dw4" || name.starts_with("dw")) {
    // Pair minima at d = 4 -+ 1.49; the lattice puts pairs on the barrier at d = 4. Measured
    // (128 chains, acceptance 0.5): energy tau ~300 steps, but the population of the
    // four-short-pair (square) state relaxes over ~7000 steps, hence the long burn-in.
    return {.chains = 128, .burn_in = 30000, .thin = 500, .step_size = 0.5, .spacing = 4.0};
  }
  if (name == "lj55") {
    // Measured: energy tau > 1200 steps (32 chains, 15000 steps; a lower bound). From lattice
    // starts (64 chains) the mean energy is still 16 epsilon high after 20,000 steps (-310.5 +-
    // 1.2) and settled after 200,000 (-326.3 +- 1.2; -326.2 after 400,000).
    return {.chains = 128, .burn_in = 200000, .thin = 1000, .step_size = 0.05, .spacing = 1.0};
  }
  if (name.starts_with("lj")) {
    // Measured on LJ13: energy tau ~3000 steps at acceptance 0.5 (all-atom moves).
    return {.chains = 128, .burn_in = 20000, .thin = 1000, .step_size = 0.1, .spacing = 1.0};
  }
  if (system.units() == Units::reduced) return {};
  // Molecules (Å, kcal/mol, amu): 0.25 fs steps, 20/ps friction, 1 ps of burn-in, a frame every
  // 50 fs. Measured on ethanol at 500 K by every thermometer (BENCHMARKS.md): at 0.5 fs the O-H
  // stretch reads 9 % cold, and at 1/ps the energy decorrelates 7x more slowly than at 20/ps,
  // while the torsions take the same time at either friction.
  return {.sampler = "langevin",
          .chains = 16,
          .burn_in = 4000,
          .thin = 200,
          .time_step = 0.25 / akma_time_fs,
          .friction = 20.0 * akma_time_fs / 1000.0,
          .spacing = 1.5};
}

SamplerPreset hamiltonian_preset(const System& system) {
  SamplerPreset preset = sampler_preset(system);
  preset.sampler = "hmc";
  // A frame about every energy autocorrelation time; the step size adapts during burn-in, which
  // also lets LJ55 settle from its lattice starts (its mean energy agrees with 550,000-step
  // Metropolis chains after 1,000 trajectories).
  preset.burn_in = system.name() == "lj55" ? 2000 : 1000;
  preset.thin = system.name() == "lj55" ? 25 : 20;
  preset.leapfrog_steps = 10;
  if (system.units() == Units::reduced) preset.time_step = 0.005;
  return preset;
}

torch::Tensor lattice_configurations(const System& system, int64_t count, double spacing,
                                     torch::Generator& generator) {
  check(count > 0 && spacing > 0, "lattice configurations: count and spacing must be positive");
  const int64_t atoms = system.num_atoms(), dim = system.dim();
  const auto side = static_cast<int64_t>(
      std::ceil(std::pow(static_cast<double>(atoms), 1.0 / static_cast<double>(dim)) - 1e-9));
  // Integer coordinates of every site of a side^dim grid: [S, D].
  std::vector<torch::Tensor> axes(dim, torch::arange(side, torch::kFloat64));
  const auto sites = torch::stack(torch::meshgrid(axes, "ij"), -1).reshape({-1, dim});
  std::vector<torch::Tensor> configurations;
  for (int64_t i = 0; i < count; ++i) {
    const auto chosen = torch::randperm(sites.size(0), generator).slice(0, 0, atoms);
    configurations.push_back(sites.index_select(0, chosen));
  }
  auto positions = torch::stack(configurations) * spacing;
  positions =
      positions +
      0.05 * spacing * torch::randn(positions.sizes(), generator, torch::dtype(torch::kFloat64));
  return positions - positions.mean(1, /*keepdim=*/true);
}

}  // namespace psm
