#include "psm/cli/system_options.h"

#include <fmt/format.h>

#include "psm/core/error.h"

namespace psm::cli {

SystemWithStart choose_system(const SystemArguments& arguments) {
  nlohmann::json spec = {{"name", arguments.name}};
  for (const auto& option : arguments.options) {
    const auto equals = option.find('=');
    check(equals != std::string::npos && equals > 0,
          fmt::format("--system-option '{}': expected key=value", option));
    const std::string key = option.substr(0, equals), text = option.substr(equals + 1);
    auto value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    spec[key] = value.is_discarded() ? nlohmann::json(text) : value;
  }
  if (!arguments.molecule.empty()) {
    check(!spec.contains("molecule"),
          "give --molecule FILE or --system-option molecule=FILE, not both");
    spec["molecule"] = arguments.molecule;
  }
  return make_system_with_molecule(spec);
}

void add_temperature_options(CLI::App& app, TemperatureArguments& arguments) {
  app.add_option("--kT", arguments.kT,
                 "k_B T in the system's energy units (default 1 in reduced units)");
  app.add_option("--temperature", arguments.kelvin,
                 "Temperature in K for molecules: kT = k_B T in kcal/mol (default 500)");
}

Temperature resolve_temperature(const System& system, const TemperatureArguments& arguments) {
  return read_temperature(arguments.kT, arguments.kelvin, system.units(), system.name(),
                          {.kT = "--kT", .kelvin = "--temperature"})
      .value_or(default_temperature(system.units()));
}

std::string describe(const Temperature& temperature, Units units) {
  if (temperature.kelvin) {
    return fmt::format("T = {:.5g} K, kT = {:.5f} kcal/mol", *temperature.kelvin, temperature.kT);
  }
  return fmt::format("kT = {:.5g} ({} units)", temperature.kT, to_string(units));
}

}  // namespace psm::cli
