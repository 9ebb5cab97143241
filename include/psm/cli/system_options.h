#pragma once
// Command-line options shared by commands that build a system and a temperature from
// `--system NAME --system-option key=value ... --kT X | --temperature K`.

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

#include "psm/core/units.h"
#include "psm/systems/molecule.h"
#include "psm/systems/potential.h"

namespace psm::cli {

struct SystemArguments {
  std::string name;                  ///< --system
  std::vector<std::string> options;  ///< --system-option key=value
  std::string molecule;              ///< --molecule FILE: same as --system-option molecule=FILE
};

/// Builds the system {"name": name, key: value, ...}: a value that parses as JSON (numbers,
/// true, [6, 1]) is stored as such, anything else as a string. The option molecule=FILE names a
/// molecule file whose species and frames make_system_with_molecule reads; `arguments.molecule`
/// (--molecule FILE) is the same option. Throws psm::Error on an option without '=', a molecule
/// given twice, or a bad system or molecule file (see make_system_with_molecule).
SystemWithStart choose_system(const SystemArguments& arguments);

struct TemperatureArguments {
  std::optional<double> kT;      ///< --kT, energy units of the system
  std::optional<double> kelvin;  ///< --temperature, molecular systems only
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
