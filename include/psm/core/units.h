#pragma once
// Physical constants and the unit systems psm files declare. Conversion happens at the input
// boundary (xtb, MD17 files); everything inside psm is in one of these two systems.

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

}  // namespace psm
