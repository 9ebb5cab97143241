#include "psm/data/thermal_check.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include <cmath>

#include "psm/core/error.h"
#include "psm/data/bond_graph.h"
#include "psm/simulate/autocorrelation.h"

namespace psm {

namespace {

/// Mean of `series` [C, T] with the standard error of the chain means (C >= 4, as
/// virial_temperature asks), else of independent values.
VirialTemperature series_temperature(const torch::Tensor& series) {
  check(series.dim() == 2 && series.numel() >= 2,
        "thermal check: kinetic temperatures must be a [chains, rounds] tensor of >= 2 values");
  const torch::Tensor values = series.to(torch::kFloat64);
  const int64_t chains = values.size(0);
  VirialTemperature t{.kT = values.mean().item<double>(), .frames = values.numel()};
  if (chains >= 4) {
    t.standard_error = chain_means_standard_error(values);
    t.chains = chains;
  } else {
    t.standard_error = values.std().item<double>() / std::sqrt(static_cast<double>(values.numel()));
  }
  return t;
}

bool off(const ThermometerReading& reading, double target_kT) {
  const VirialTemperature& t = reading.temperature;
  return !std::isfinite(t.kT) || !std::isfinite(t.standard_error) ||
         t.deviation(target_kT) > kThermalCheckSigmas;
}

}  // namespace

std::vector<ThermometerReading> ThermalCheck::off_target() const {
  std::vector<ThermometerReading> result;
  for (const auto& reading : readings) {
    if (off(reading, target_kT)) result.push_back(reading);
  }
  return result;
}

ThermalCheck check_thermal_equilibrium(const Dataset& frames, const torch::Tensor& kinetic_kT) {
  ThermalCheck result{.target_kT = frames.frames_kT(), .readings = {}};
  if (kinetic_kT.defined()) {
    result.readings.push_back({.name = "kinetic", .temperature = series_temperature(kinetic_kT)});
  }
  if (!frames.has_forces() || !frames.is_molecular() || frames.num_frames() < 2) return result;
  const torch::Tensor bonds = majority_bonds(frames.positions, frames.species);
  const torch::Tensor chains = frame_chains(frames);
  for (const auto& [type, rows] : bonds_by_type(bonds, frames.species)) {
    const torch::Tensor of_type = bonds.index_select(0, torch::tensor(rows, torch::kInt64));
    result.readings.push_back(
        {.name = type,
         .temperature = bond_virial_temperature(frames.positions, frames.forces, of_type, chains),
         .bonds = static_cast<int64_t>(rows.size())});
  }
  return result;
}

std::vector<std::string> describe_thermal_check(const ThermalCheck& check) {
  std::vector<std::string> lines;
  int64_t spread_of = 0;
  bool independent = false;
  for (const auto& reading : check.readings) {
    const VirialTemperature& t = reading.temperature;
    if (!std::isfinite(t.kT) || !std::isfinite(t.standard_error)) {
      lines.push_back(fmt::format("{:<8} cannot be estimated: not finite", reading.name));
      continue;
    }
    if (t.chains > 0) {
      spread_of = t.chains;
    } else {
      independent = true;
    }
    const std::string what =
        reading.bonds > 0 ? fmt::format("{} bond{}, ", reading.bonds, reading.bonds == 1 ? "" : "s")
                          : "";
    lines.push_back(fmt::format("{:<8} {:.4g} ± {:.2g} ({}{:.1f} standard errors from kT {:.4g})",
                                reading.name, t.kT, t.standard_error, what,
                                t.deviation(check.target_kT), check.target_kT));
  }
  if (check.readings.empty()) return lines;
  if (spread_of > 0) {
    lines.push_back(
        fmt::format("(standard errors from the spread of the {} chains' means)", spread_of));
  }
  if (independent) {
    lines.push_back(
        "(standard errors for independent frames where the chains are unknown: in MD a stiff "
        "stretch exchanges energy slowly, and its true error is larger)");
  }
  const std::vector<ThermometerReading> wrong = check.off_target();
  if (wrong.empty()) {
    lines.push_back(fmt::format("at equilibrium: every thermometer within {:g} standard errors",
                                kThermalCheckSigmas));
    return lines;
  }
  std::vector<std::string> names;
  for (const auto& reading : wrong) names.push_back(reading.name);
  lines.push_back(fmt::format(
      "NOT at equilibrium: {} beyond {:g} standard errors (MD: a longer burn-in, more friction "
      "or a shorter time step; frames of another potential than the forces': no remedy)",
      fmt::join(names, ", "), kThermalCheckSigmas));
  return lines;
}

void record_thermal_check(const ThermalCheck& check, nlohmann::json& provenance) {
  if (check.readings.empty()) return;
  nlohmann::json readings = nlohmann::json::object();
  for (const auto& reading : check.readings) {
    readings[reading.name] = {{"kT", reading.temperature.kT},
                              {"standard_error", reading.temperature.standard_error}};
  }
  provenance["thermometers"] = readings;
  provenance["at_equilibrium"] = check.off_target().empty();
}

}  // namespace psm
