#pragma once
// Systems whose spec names a geometry file: {"name": "xtb", "molecule": "ethanol.xyz"}. The
// registry (make_system) reads no files, so the file is read here, for the command line
// (--molecule FILE) and for `psm run` ([system] molecule = "FILE") alike.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>

#include "psm/io/dataset.h"
#include "psm/systems/potential.h"

namespace psm {

/// The frames of a molecule file (any format read_geometry reads). Throws psm::Error naming
/// `file` when it does not exist, does not parse, or (in Å) has two atoms of a frame closer than
/// xtb_min_distance_angstrom: overlapping atoms make no molecule, and every potential fails on
/// them in its own way.
Dataset read_molecule(const std::filesystem::path& file);

/// A system with the starting configurations its spec names.
struct SystemWithStart {
  std::unique_ptr<System> system;
  torch::Tensor start;  ///< [F, N, D] frames of the molecule file; undefined without one
};

/// make_system(spec), except that the option "molecule": FILE is read first (read_molecule): its
/// species become the option "species" and its frames the starting configurations. Relative file
/// names start at the current directory. Throws psm::Error on a molecule that is not a file name,
/// a spec with both "molecule" and "species", a bad file, or a system that rejects the options
/// (the message then names the molecule file the species came from).
SystemWithStart make_system_with_molecule(nlohmann::json spec);

}  // namespace psm
