#pragma once
// 3-D geometries from SMILES with RDKit: explicit hydrogens, an ETKDG (v3) embedding and a
// force-field clean-up, so that a molecule can be simulated without a geometry file. RDKit stays
// behind this header (its headers are needed only by src/io/smiles.cpp).

#include <cstdint>
#include <string>

#include "psm/io/dataset.h"

namespace psm {

struct SmilesOptions {
  uint64_t seed = 0;     ///< seed of the ETKDG embedding: the same seed gives the same geometry
  bool optimise = true;  ///< relax the embedding with MMFF94, or UFF where MMFF lacks parameters
  double temperature_kelvin = 500.0;  ///< recorded as the dataset's temperature (MD17's)
};

/// One conformer of the molecule `smiles`, hydrogens added: positions [1, N, 3] float64 in Å,
/// species in RDKit's atom order (the heavy atoms as written, then the hydrogens), units
/// kcal/mol and Å, no energies or forces, provenance {"smiles", "seed", "embedding",
/// "force_field"}. Throws psm::Error naming `smiles` when it does not parse or embed, or holds
/// an element outside 1..86.
Dataset molecule_from_smiles(const std::string& smiles, const SmilesOptions& options = {});

}  // namespace psm
