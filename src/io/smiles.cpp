#include "psm/io/smiles.h"

#include <fmt/format.h>

#include "psm/core/error.h"

#ifdef PSM_WITH_RDKIT
#include <GraphMol/Conformer.h>
#include <GraphMol/DistGeomHelpers/Embedder.h>
#include <GraphMol/ForceFieldHelpers/MMFF/MMFF.h>
#include <GraphMol/ForceFieldHelpers/UFF/UFF.h>
#include <GraphMol/MolOps.h>
#include <GraphMol/RWMol.h>
#include <GraphMol/SmilesParse/SmilesParse.h>
#include <RDGeneral/RDLog.h>
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "psm/core/elements.h"
#include "psm/core/units.h"
#endif

namespace psm {

#ifdef PSM_WITH_RDKIT
namespace {

/// Parses `smiles` without RDKit's log lines on stderr; null when RDKit rejects it.
std::unique_ptr<RDKit::RWMol> parse(const std::string& smiles) {
  RDLog::LogStateSetter quiet;  // disables RDKit logging until it goes out of scope
  try {
    return std::unique_ptr<RDKit::RWMol>(RDKit::SmilesToMol(smiles));
  } catch (const std::exception&) {  // sanitisation errors (valence, kekulisation) throw
    return nullptr;
  }
}

/// Relaxes conformer 0 with MMFF94, or UFF when MMFF lacks parameters; the force field used.
std::string optimise(RDKit::RWMol& molecule) {
  if (RDKit::MMFF::MMFFOptimizeMolecule(molecule, 2000).first >= 0) return "MMFF94";
  if (RDKit::UFF::UFFOptimizeMolecule(molecule, 2000).first >= 0) return "UFF";
  return "none";
}

}  // namespace

Dataset molecule_from_smiles(const std::string& smiles, const SmilesOptions& options) {
  std::unique_ptr<RDKit::RWMol> molecule = parse(smiles);
  check(molecule != nullptr && molecule->getNumAtoms() > 0,
        fmt::format("SMILES '{}': not a valid molecule", smiles));
  RDKit::MolOps::addHs(*molecule);
  // Species first: a dummy atom (*) or an element beyond Rn fails before the embedding runs.
  std::vector<int64_t> species;
  for (const RDKit::Atom* atom : molecule->atoms()) {
    const int64_t z = atom->getAtomicNum();
    check(z >= 1 && z <= max_atomic_number,
          fmt::format("SMILES '{}': atom {} has atomic number {} (psm knows 1..{})", smiles,
                      atom->getIdx(), z, max_atomic_number));
    species.push_back(z);
  }
  RDKit::DGeomHelpers::EmbedParameters parameters = RDKit::DGeomHelpers::ETKDGv3;
  // RDKit takes an int seed; -1 would mean "random".
  parameters.randomSeed = static_cast<int>(options.seed % 2147483647);
  check(RDKit::DGeomHelpers::EmbedMolecule(*molecule, parameters) >= 0,
        fmt::format("SMILES '{}': RDKit could not embed a 3-D conformer (ETKDGv3, seed {})", smiles,
                    options.seed));
  const std::string force_field = options.optimise ? optimise(*molecule) : "none";

  const RDKit::Conformer& conformer = molecule->getConformer();
  std::vector<double> positions;
  for (const RDGeom::Point3D& p : conformer.getPositions()) {
    positions.insert(positions.end(), {p.x, p.y, p.z});
  }
  const int64_t num_atoms = static_cast<int64_t>(species.size());
  Dataset dataset;
  dataset.positions = torch::tensor(positions, torch::kFloat64).reshape({1, num_atoms, 3});
  dataset.species = std::move(species);
  dataset.units = Units::kcal_mol_angstrom;
  dataset.temperature_kelvin = options.temperature_kelvin;
  dataset.kT = kT_from_kelvin(options.temperature_kelvin);
  dataset.provenance = {{"smiles", smiles},
                        {"seed", options.seed},
                        {"embedding", "RDKit ETKDGv3"},
                        {"force_field", force_field}};
  dataset.validate(fmt::format("SMILES '{}'", smiles));
  return dataset;
}

#else  // !PSM_WITH_RDKIT

Dataset molecule_from_smiles(const std::string& smiles, const SmilesOptions&) {
  throw Error(
      fmt::format("SMILES '{}': psm was built without RDKit (reconfigure with "
                  "-DPSM_WITH_RDKIT=ON and librdkit-dev), so it reads molecules from .xyz "
                  "files only",
                  smiles));
}

#endif  // PSM_WITH_RDKIT

}  // namespace psm
