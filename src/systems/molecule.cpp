#include "psm/systems/molecule.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <string>

#include "psm/core/error.h"
#include "psm/systems/xtb.h"

namespace psm {

Dataset read_molecule(const std::filesystem::path& file) {
  // A missing file would otherwise be reported by the reader of its format, in its own words.
  check(std::filesystem::is_regular_file(file),
        fmt::format("{}: molecule file not found (relative paths start at the current directory)",
                    file.string()));
  Dataset molecule = read_geometry(file);
  if (molecule.units != Units::kcal_mol_angstrom || molecule.num_atoms() < 2) return molecule;
  const torch::Tensor x = molecule.positions.to(torch::kFloat64);
  const torch::Tensor distance =
      torch::cdist(x, x) + torch::eye(molecule.num_atoms(), x.options()) * 1e9;  // [F, N, N]
  const torch::Tensor too_close = distance < xtb_min_distance_angstrom;
  if (!too_close.any().item<bool>()) return molecule;
  const torch::Tensor first = too_close.nonzero()[0];
  const int64_t frame = first[0].item<int64_t>(), i = first[1].item<int64_t>(),
                j = first[2].item<int64_t>();
  throw Error(fmt::format("{}: atoms {} and {} of frame {} overlap ({:.3f} Å apart, minimum {} Å)",
                          file.string(), i, j, frame, distance[frame][i][j].item<double>(),
                          xtb_min_distance_angstrom));
}

SystemWithStart make_system_with_molecule(nlohmann::json spec) {
  SystemWithStart out;
  if (!spec.is_object() || !spec.contains("molecule")) {
    out.system = make_system(spec);
    return out;
  }
  const nlohmann::json& file = spec["molecule"];
  check(file.is_string(),
        fmt::format("system option 'molecule' must be a file name, got {}", file.dump()));
  const std::string molecule_file = file.get<std::string>();
  check(!spec.contains("species"),
        "give the system option 'molecule' (a file) or 'species' "
        "(atomic numbers), not both");
  const Dataset molecule = read_molecule(molecule_file);
  spec["species"] = molecule.species;
  spec.erase("molecule");
  out.start = molecule.positions;
  try {
    out.system = make_system(spec);
  } catch (const Error& error) {
    throw Error(fmt::format("{} (species from the molecule file {})", error.what(), molecule_file));
  }
  return out;
}

}  // namespace psm
