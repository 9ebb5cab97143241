#include "psm/data/subsets.h"

#include <fmt/format.h>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/core/value_registry.h"
#include "psm/simulate/simulation.h"
#include "psm/systems/minimize.h"

namespace psm {

namespace {
const ValueRegistry<SubsetKind> kSubsetKinds("training-set kind",
                                             {{"limited", SubsetKind::limited},
                                              {"temperature", SubsetKind::temperature},
                                              {"basin", SubsetKind::basin},
                                              {"energy", SubsetKind::energy},
                                              {"torsion", SubsetKind::torsion}});
}  // namespace

SubsetKind subset_kind_from_string(const std::string& name) { return kSubsetKinds.get(name); }
std::string to_string(SubsetKind kind) { return kSubsetKinds.name_of(kind); }
std::vector<std::string> subset_kind_names() { return kSubsetKinds.names(); }

namespace {

/// `subset` with provenance {"subset": step, "source": previous provenance}.
Dataset with_step(Dataset subset, const Dataset& source, nlohmann::json step) {
  subset.provenance = {{"subset", std::move(step)}, {"source", source.provenance}};
  return subset;
}

torch::Tensor random_indices(int64_t available, int64_t frames, uint64_t seed) {
  check(frames >= 1 && frames <= available,
        fmt::format("cannot draw {} frames from a dataset of {}", frames, available));
  auto generator = make_generator(seed, /*stream=*/0x5b5e7);
  torch::Tensor order = torch::randperm(available, generator, torch::kLong);
  return std::get<0>(order.slice(0, 0, frames).sort());
}

}  // namespace

Dataset limited_subset(const Dataset& source, int64_t frames, uint64_t seed) {
  return with_step(source.select(random_indices(source.num_frames(), frames, seed)), source,
                   {{"kind", "limited"}, {"frames", frames}, {"seed", seed}});
}

Dataset temperature_biased_subset(const Dataset& source, double target_kT,
                                  std::optional<int64_t> frames, uint64_t seed) {
  check(target_kT > 0 && std::isfinite(target_kT),
        fmt::format("target kT must be positive, got {}", target_kT));
  Dataset subset =
      frames ? source.select(random_indices(source.num_frames(), *frames, seed)) : source;
  subset.sampled_kT = source.frames_kT();
  subset.kT = target_kT;
  if (source.temperature_kelvin) {
    subset.temperature_kelvin = *source.temperature_kelvin * target_kT / source.kT;
  }
  nlohmann::json step = {
      {"kind", "temperature"}, {"sampled_kT", *subset.sampled_kT}, {"target_kT", target_kT}};
  if (frames) step["frames"] = *frames, step["seed"] = seed;
  return with_step(std::move(subset), source, std::move(step));
}

Dataset energy_selected_subset(const Dataset& source, const EnergySelection& selection) {
  check(source.has_energies(), "energy selection needs a dataset with energies");
  check(selection.energy_max.has_value() != selection.quantile.has_value(),
        "energy selection needs exactly one of energy_max and quantile");
  double threshold = 0;
  nlohmann::json step = {{"kind", "energy-selection"}};
  if (selection.quantile) {
    const double q = *selection.quantile;
    check(q > 0 && q <= 1, fmt::format("quantile must be in (0, 1], got {}", q));
    threshold = torch::quantile(source.energies, q).item<double>();
    step["quantile"] = q;
  } else {
    threshold = *selection.energy_max;
  }
  step["energy_max"] = threshold;
  const torch::Tensor kept = (source.energies <= threshold).nonzero().flatten();
  check(kept.numel() > 0, fmt::format("no frame has energy <= {}", threshold));
  step["frames"] = kept.numel();
  return with_step(source.select(kept), source, std::move(step));
}

torch::Tensor dihedral_angles(const torch::Tensor& positions, const std::array<int64_t, 4>& atoms) {
  return dihedral_angles(positions, torch::tensor(std::vector<int64_t>(atoms.begin(), atoms.end()),
                                                  torch::kInt64)
                                        .reshape({1, 4}))
      .select(1, 0);
}

torch::Tensor dihedral_angles(const torch::Tensor& positions, const torch::Tensor& quadruples) {
  check(positions.dim() == 3 && positions.size(2) == 3,
        "dihedral angles need 3-D positions [F, N, 3]");
  check(quadruples.dim() == 2 && quadruples.size(1) == 4,
        "dihedral angles need atom quadruples [T, 4]");
  const torch::Tensor atoms = quadruples.to(torch::kInt64).to(positions.device());
  if (atoms.numel() > 0) {
    const int64_t lowest = atoms.min().item<int64_t>(), highest = atoms.max().item<int64_t>();
    const int64_t bad = lowest < 0 ? lowest : highest;
    check(lowest >= 0 && highest < positions.size(1),
          fmt::format("dihedral atom index {} out of range [0, {})", bad, positions.size(1)));
  }
  const auto at = [&](int64_t i) { return positions.index_select(1, atoms.select(1, i)); };
  const torch::Tensor b0 = at(0) - at(1);  // [F, T, 3]
  const torch::Tensor b1 = at(2) - at(1);
  const torch::Tensor b2 = at(3) - at(2);
  const torch::Tensor b1_unit = b1 / b1.norm(2, -1, true);
  // Components of b0 and b2 perpendicular to the central bond (Praxeolitic's formula).
  const torch::Tensor v = b0 - (b0 * b1_unit).sum(-1, true) * b1_unit;
  const torch::Tensor w = b2 - (b2 * b1_unit).sum(-1, true) * b1_unit;
  const torch::Tensor x = (v * w).sum(-1);
  const torch::Tensor y = (torch::cross(b1_unit, v, -1) * w).sum(-1);
  return torch::rad2deg(torch::atan2(y, x));
}

Dataset torsion_selected_subset(const Dataset& source, const std::array<int64_t, 4>& atoms,
                                double low_degrees, double high_degrees) {
  const torch::Tensor angle = dihedral_angles(source.positions, atoms);
  const torch::Tensor inside = low_degrees <= high_degrees
                                   ? (angle >= low_degrees) & (angle <= high_degrees)
                                   : (angle >= low_degrees) | (angle <= high_degrees);
  const torch::Tensor kept = inside.nonzero().flatten();
  check(kept.numel() > 0,
        fmt::format("no frame has dihedral {}-{}-{}-{} in [{}, {}] degrees", atoms[0], atoms[1],
                    atoms[2], atoms[3], low_degrees, high_degrees));
  return with_step(source.select(kept), source,
                   {{"kind", "torsion-selection"},
                    {"atoms", atoms},
                    {"low_degrees", low_degrees},
                    {"high_degrees", high_degrees},
                    {"frames", kept.numel()}});
}

Dataset basin_biased_subset(const System& system, const Dataset& source,
                            const BasinOptions& options) {
  check(options.trajectories >= 1, "basin subset needs at least one trajectory");
  int64_t start = 0;
  if (options.start_frame) {
    start = *options.start_frame;
    check(start >= 0 && start < source.num_frames(),
          fmt::format("start frame {} out of range [0, {})", start, source.num_frames()));
  } else if (source.has_energies()) {
    start = source.energies.argmin().item<int64_t>();
  }
  const MinimizeResult minimum =
      minimize(system.potential(), source.positions.slice(0, start, start + 1));
  SimulationSettings settings;
  settings.kT = options.kT.value_or(source.kT);
  settings.samples = options.frames;
  settings.sampler = "mcmc";
  settings.chains = options.trajectories;
  settings.burn_in = options.burn_in;
  settings.thin = options.thin;
  settings.seed = options.seed;
  settings.initial_positions = minimum.positions;
  Dataset subset = simulate(system, settings).dataset;
  subset.kT = source.kT;
  if (settings.kT != source.kT) subset.sampled_kT = settings.kT;
  subset.temperature_kelvin = source.temperature_kelvin;
  return with_step(std::move(subset), source,
                   {{"kind", "basin"},
                    {"start_frame", start},
                    {"minimum_energy", minimum.energy.item<double>()},
                    {"trajectories", options.trajectories},
                    {"burn_in", options.burn_in},
                    {"thin", options.thin},
                    {"sampled_kT", settings.kT},
                    {"frames", options.frames},
                    {"seed", options.seed},
                    {"sampler", subset.provenance}});
}

}  // namespace psm
