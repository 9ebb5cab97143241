#include "psm/cli/system_options.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "psm/core/error.h"
#include "psm/io/dataset.h"
#include "psm/systems/xtb.h"

namespace psm::cli {

Dataset read_geometry(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  // load_dataset wants a temperature for XYZ files, which rarely declare one; any will do.
  if (extension == ".xyz" || extension == ".extxyz") {
    return load_dataset(path, {.temperature_kelvin = 300.0});
  }
  return load_dataset(path);
}

namespace {

/// Throws psm::Error naming `file` when two atoms of a frame of a molecule are closer than
/// xtb_min_distance_angstrom: overlapping atoms make no molecule, and every potential fails on
/// them in its own way.
void check_no_overlapping_atoms(const Dataset& molecule, const std::string& file) {
  if (molecule.units != Units::kcal_mol_angstrom || molecule.num_atoms() < 2) return;
  const torch::Tensor x = molecule.positions.to(torch::kFloat64);
  const torch::Tensor distance =
      torch::cdist(x, x) + torch::eye(molecule.num_atoms(), x.options()) * 1e9;  // [F, N, N]
  const torch::Tensor too_close = distance < xtb_min_distance_angstrom;
  if (!too_close.any().item<bool>()) return;
  const torch::Tensor first = too_close.nonzero()[0];
  const int64_t frame = first[0].item<int64_t>(), i = first[1].item<int64_t>(),
                j = first[2].item<int64_t>();
  throw Error(fmt::format("{}: atoms {} and {} of frame {} overlap ({:.3f} Å apart, minimum {} Å)",
                          file, i, j, frame, distance[frame][i][j].item<double>(),
                          xtb_min_distance_angstrom));
}

}  // namespace

SystemChoice choose_system(const SystemArguments& arguments) {
  nlohmann::json spec = {{"name", arguments.name}};
  for (const auto& option : arguments.options) {
    const auto equals = option.find('=');
    check(equals != std::string::npos && equals > 0,
          fmt::format("--system-option '{}': expected key=value", option));
    const std::string key = option.substr(0, equals), text = option.substr(equals + 1);
    auto value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    spec[key] = value.is_discarded() ? nlohmann::json(text) : value;
  }
  if (!arguments.molecule.empty()) {
    check(!spec.contains("molecule"),
          "give --molecule FILE or --system-option molecule=FILE, not both");
    spec["molecule"] = arguments.molecule;
  }
  SystemChoice choice;
  std::string molecule_file;
  if (spec.contains("molecule")) {
    const auto& file = spec["molecule"];
    check(file.is_string(), "--system-option molecule=FILE: expected a file name");
    molecule_file = file.get<std::string>();
    const Dataset molecule = read_geometry(molecule_file);
    check_no_overlapping_atoms(molecule, molecule_file);
    check(!spec.contains("species"),
          "--system-option: give molecule=FILE or species=[...], not both");
    spec["species"] = molecule.species;
    spec.erase("molecule");
    choice.start = molecule.positions;
  }
  try {
    choice.system = make_system(spec);
  } catch (const Error& error) {
    if (molecule_file.empty()) throw;
    throw Error(fmt::format("{} (species from the molecule file {})", error.what(), molecule_file));
  }
  return choice;
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
