#include "psm/core/units.h"

#include <fmt/format.h>

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

}  // namespace psm
