#include "psm/core/units.h"

#include <fmt/format.h>

#include <cmath>

#include "psm/core/error.h"

namespace psm {

std::string to_string(Units units) {
  switch (units) {
    case Units::reduced:
      return "reduced";
    case Units::kcal_mol_angstrom:
      return "kcal/mol,angstrom";
  }
  throw Error("invalid Units value");
}

Units units_from_string(const std::string& name) {
  if (name == "reduced") return Units::reduced;
  if (name == "kcal/mol,angstrom") return Units::kcal_mol_angstrom;
  throw Error(fmt::format("unknown units '{}' (known: reduced, kcal/mol,angstrom)", name));
}

std::optional<Temperature> read_temperature(std::optional<double> kT, std::optional<double> kelvin,
                                            Units units, const std::string& system,
                                            const TemperatureKeys& keys) {
  check(!(kT && kelvin), fmt::format("give {} or {}, not both", keys.kT, keys.kelvin));
  const bool molecular = units == Units::kcal_mol_angstrom;
  if (kelvin) {
    check(molecular, fmt::format("{} is for molecular systems; {} is in reduced units, give {}",
                                 keys.kelvin, system, keys.kT));
    check(std::isfinite(*kelvin) && *kelvin > 0,
          fmt::format("{} must be positive, got {}", keys.kelvin, *kelvin));
    return Temperature{.kT = kT_from_kelvin(*kelvin), .kelvin = *kelvin};
  }
  if (!kT) return std::nullopt;
  check(std::isfinite(*kT) && *kT > 0, fmt::format("{} must be positive, got {}", keys.kT, *kT));
  Temperature temperature{.kT = *kT};
  if (molecular) temperature.kelvin = *kT / constants::boltzmann_kcal_mol_per_kelvin;
  return temperature;
}

Temperature default_temperature(Units units) {
  if (units == Units::reduced) return {};
  return {.kT = kT_from_kelvin(500.0), .kelvin = 500.0};
}

}  // namespace psm
