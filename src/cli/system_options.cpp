#include "psm/cli/system_options.h"

#include <fmt/format.h>

#include <cmath>

#include "psm/core/error.h"
#include "psm/io/dataset.h"

namespace psm::cli {

nlohmann::json system_spec(const SystemArguments& arguments) {
  nlohmann::json spec = {{"name", arguments.name}};
  for (const auto& option : arguments.options) {
    const auto equals = option.find('=');
    check(equals != std::string::npos && equals > 0,
          fmt::format("--system-option '{}': expected key=value", option));
    const std::string key = option.substr(0, equals), text = option.substr(equals + 1);
    auto value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    spec[key] = value.is_discarded() ? nlohmann::json(text) : value;
  }
  return spec;
}

torch::Tensor default_start(const SystemArguments& arguments) {
  const auto spec = system_spec(arguments);
  if (!spec.contains("molecule") || !spec["molecule"].is_string()) return {};
  return load_dataset(spec["molecule"].get<std::string>()).positions;
}

void add_temperature_options(CLI::App& app, TemperatureArguments& arguments) {
  app.add_option("--kT", arguments.kT,
                 "k_B T in the system's energy units (default 1 in reduced units)");
  app.add_option("--temperature", arguments.kelvin,
                 "Temperature in K for molecules: kT = k_B T in kcal/mol (default 500)");
}

Temperature resolve_temperature(const System& system, const TemperatureArguments& arguments) {
  check(!(arguments.kT && arguments.kelvin), "give --kT or --temperature, not both");
  const bool molecular = system.units() == Units::kcal_mol_angstrom;
  Temperature temperature;
  if (arguments.kelvin) {
    check(molecular, fmt::format("--temperature is for molecular systems; {} is in reduced "
                                 "units, give --kT",
                                 system.name()));
    check(std::isfinite(*arguments.kelvin) && *arguments.kelvin > 0,
          fmt::format("--temperature must be positive, got {}", *arguments.kelvin));
    temperature.kelvin = *arguments.kelvin;
    temperature.kT = kT_from_kelvin(*arguments.kelvin);
  } else if (arguments.kT) {
    check(std::isfinite(*arguments.kT) && *arguments.kT > 0,
          fmt::format("--kT must be positive, got {}", *arguments.kT));
    temperature.kT = *arguments.kT;
    if (molecular) temperature.kelvin = *arguments.kT / constants::boltzmann_kcal_mol_per_kelvin;
  } else if (molecular) {
    temperature.kelvin = 500.0;
    temperature.kT = kT_from_kelvin(500.0);
  }
  return temperature;
}

std::string describe(const Temperature& temperature, Units units) {
  if (temperature.kelvin) {
    return fmt::format("T = {:.5g} K, kT = {:.5f} kcal/mol", *temperature.kelvin, temperature.kT);
  }
  return fmt::format("kT = {:.5g} ({} units)", temperature.kT, to_string(units));
}

}  // namespace psm::cli
