#pragma once
// Physical constants and the unit systems psm files declare. Conversion happens at the input
// boundary (xtb, MD17 files); everything inside psm is in one of these two systems.

#include <optional>
#include <string>

namespace psm {

/// The unit system of positions, energies, forces and kT.
enum class Units {
  reduced,            ///< Lennard-Jones / toy systems: length sigma (or rm), energy epsilon
  kcal_mol_angstrom,  ///< molecules: Å, kcal/mol, kcal/mol/Å
};

std::string to_string(Units units);
/// Throws psm::Error on an unknown name ("reduced", "kcal/mol,angstrom").
Units units_from_string(const std::string& name);

namespace constants {
inline constexpr double boltzmann_kcal_mol_per_kelvin = 0.0019872041;  // k_B, kcal/mol/K
inline constexpr double bohr_in_angstrom = 0.529177210903;             // CODATA 2018
inline constexpr double hartree_in_kcal_mol = 627.509474063;           // CODATA 2018
inline constexpr double electronvolt_in_kcal_mol = 23.060547830619;    // CODATA 2018 (ASE's eV)
}  // namespace constants

/// k_B T in kcal/mol for a temperature in kelvin.
inline double kT_from_kelvin(double kelvin) {
  return constants::boltzmann_kcal_mol_per_kelvin * kelvin;
}

/// A temperature as k_B T in the energy unit of a system, and in kelvin for molecular units.
struct Temperature {
  double kT = 1.0;
  std::optional<double> kelvin;  ///< set for Units::kcal_mol_angstrom
};

/// What a caller calls the two ways of giving a temperature, for error messages: e.g. "--kT" and
/// "--temperature", or "system.kT" and "system.temperature".
struct TemperatureKeys {
  std::string kT;
  std::string kelvin;
};

/// The temperature given either as `kT` (energy units of `units`) or as `kelvin` (molecular units
/// only), or none when neither is given. `system` names the system in errors. Throws psm::Error
/// when both are given, when `kelvin` is given for reduced units, or on a value that is not
/// positive and finite.
std::optional<Temperature> read_temperature(std::optional<double> kT, std::optional<double> kelvin,
                                            Units units, const std::string& system,
                                            const TemperatureKeys& keys);

/// The temperature when none is given: kT = 1 in reduced units, 500 K (the MD17 temperature)
/// for molecules.
Temperature default_temperature(Units units);

}  // namespace psm
