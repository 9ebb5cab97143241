#pragma once
// Command-line options shared by commands that build a system and a temperature from
// `--system NAME --system-option key=value ... --kT X | --temperature K`.

#include <torch/types.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "psm/core/units.h"
#include "psm/systems/potential.h"

namespace psm::cli {

struct SystemArguments {
  std::string name;                  ///< --system
  std::vector<std::string> options;  ///< --system-option key=value
};

/// {"name": name, key: value, ...}; a value that parses as JSON (numbers, true) is stored as
/// such, anything else as a string. Throws psm::Error on an option without '='.
nlohmann::json system_spec(const SystemArguments& arguments);

/// Starting configurations the system's own options name: the frames of the file given as
/// system option `molecule` (xtb), else undefined.
torch::Tensor default_start(const SystemArguments& arguments);

struct TemperatureArguments {
  std::optional<double> kT;      ///< --kT, energy units of the system
  std::optional<double> kelvin;  ///< --temperature, molecular systems only
};

struct Temperature {
  double kT = 1.0;               ///< energy units of the system
  std::optional<double> kelvin;  ///< set for molecular systems
};

/// Adds --kT and --temperature to `app`.
void add_temperature_options(CLI::App& app, TemperatureArguments& arguments);

/// kT from --kT or --temperature (k_B T in kcal/mol); defaults: kT = 1 in reduced units,
/// 500 K (the MD17 temperature) for molecules. Throws psm::Error on both options given, a
/// kelvin temperature for a reduced-unit system, or a non-positive value.
Temperature resolve_temperature(const System& system, const TemperatureArguments& arguments);

/// "kT = 1 (reduced units)" or "T = 500 K, kT = 0.99360 kcal/mol".
std::string describe(const Temperature& temperature, Units units);

}  // namespace psm::cli
