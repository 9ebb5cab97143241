#pragma once
// Chemical elements H..Rn: symbols, standard atomic masses and covalent radii. Atomic number 0
// (symbol "X", as in ASE) marks the identical model particles of Lennard-Jones and double-well
// systems.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace psm {

struct Element {
  int64_t atomic_number;
  std::string_view symbol;
  double mass;             ///< standard atomic weight, u (IUPAC 2013 table as in ASE)
  double covalent_radius;  ///< Å, single-bond radius (Cordero et al. 2008)
};

/// Highest atomic number in the table (Rn).
inline constexpr int64_t max_atomic_number = 86;

/// The element with atomic number z in 1..86. Throws psm::Error otherwise.
const Element& element(int64_t atomic_number);

/// "X" for 0, else the element symbol. Throws psm::Error outside 0..86.
std::string_view element_symbol(int64_t atomic_number);

/// Atomic number of a symbol ("C" -> 6, "X" -> 0); case-sensitive as written in files.
/// Throws psm::Error on an unknown symbol.
int64_t atomic_number(std::string_view symbol);

/// Hill formula of a species list: C first, then H, then the rest alphabetically ("C2H6O");
/// without carbon all alphabetically. Model particles count as "X" ("X13").
std::string chemical_formula(const std::vector<int64_t>& species);

/// A bond's two elements in Hill order, "C-H", "C-O", "H-O": carbon first, else alphabetically.
std::string bond_type(int64_t atomic_number_a, int64_t atomic_number_b);

}  // namespace psm
