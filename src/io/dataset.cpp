#include "psm/io/dataset.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>

#include "psm/core/atomic_file.h"
#include "psm/core/elements.h"
#include "psm/core/error.h"
#include "psm/core/value_registry.h"
#include "psm/io/npy.h"
#include "psm/io/xyz.h"

namespace psm {

namespace {

constexpr int dataset_format_version = 1;
constexpr std::string_view dataset_format_name = "psm-dataset";

/// MD17 and rMD17 trajectories were run at 500 K.
constexpr double md17_temperature_kelvin = 500.0;

/// MD22 simulation temperatures (Chmiela et al., "Accurate global machine learning force fields
/// for molecules with hundreds of atoms", Sci. Adv. 9, eadf0873 (2023), Table 1): 400 K for the
/// two largest systems, 500 K for the rest. Not re-checked against the paper's text here: the
/// search corpus had no copy of it. Keys are normalised names (see normalise_name).
struct NamedTemperature {
  std::string_view name;
  double kelvin;
};
constexpr NamedTemperature md22_temperatures[] = {
    {"ac-ala3-nhme", 500.0},
    {"dha", 500.0},
    {"stachyose", 500.0},
    {"at-at-cg-cg", 500.0},
    {"at-at", 500.0},
    {"buckyball-catcher", 400.0},
    {"double-walled-nanotube", 400.0},
    {"dw-nanotube", 400.0},
};

/// Lower case, '_' and ' ' as '-': "md22_Buckyball_catcher" -> "md22-buckyball-catcher".
std::string normalise_name(std::string_view name) {
  std::string out;
  for (const char c : name) {
    out += (c == '_' || c == ' ') ? '-'
                                  : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::optional<NamedTemperature> md22_temperature(const std::string& name) {
  const std::string key = normalise_name(name);
  // "at-at-cg-cg" precedes "at-at" in the table, so the longer name matches first.
  for (const auto& entry : md22_temperatures) {
    if (key.find(entry.name) != std::string::npos) return entry;
  }
  return std::nullopt;
}

std::string shape_string(const torch::Tensor& t) { return fmt::format("{}", t.sizes()); }

[[noreturn]] void fail(const std::string& source, const std::string& problem) {
  throw Error(fmt::format("{}: {}", source, problem));
}

/// The per-frame likelihood columns of `dataset` (const or not) by their file name.
template <class AnyDataset>
auto likelihood_columns(AnyDataset& dataset) {
  return std::array{std::pair{"log_q", &dataset.log_q},
                    std::pair{"log_q_error", &dataset.log_q_error},
                    std::pair{"log_weights", &dataset.log_weights}};
}

/// The first frame of `values` [F, ...] that holds a NaN or Inf, or -1.
int64_t first_nonfinite_frame(const torch::Tensor& values) {
  const torch::Tensor bad = ~torch::isfinite(values).reshape({values.size(0), -1}).all(1);
  if (!bad.any().item<bool>()) return -1;
  return bad.nonzero()[0][0].item<int64_t>();
}

/// Reads `key` as float64, requiring a floating dtype.
torch::Tensor read_float(const NpzReader& npz, const std::string& key) {
  const torch::Tensor t = npz.read(key);
  if (!t.is_floating_point()) {
    fail(npz.path().string(), fmt::format("'{}' has dtype {}, expected float32 or float64", key,
                                          c10::toString(t.scalar_type())));
  }
  return t.to(torch::kFloat64);
}

std::vector<int64_t> read_species(const NpzReader& npz, const std::string& key) {
  const torch::Tensor t = npz.read(key);
  if (t.is_floating_point()) {
    fail(npz.path().string(), fmt::format("'{}' has dtype {}, expected integer atomic numbers", key,
                                          c10::toString(t.scalar_type())));
  }
  if (t.dim() != 1) {
    fail(npz.path().string(),
         fmt::format("'{}' has shape {}, expected [atoms]", key, shape_string(t)));
  }
  const torch::Tensor z = t.to(torch::kInt64).contiguous();
  return {z.data_ptr<int64_t>(), z.data_ptr<int64_t>() + z.numel()};
}

/// Positions [F, N, 3] from an MD17-family key; other ranks are an error naming the key.
torch::Tensor read_frames(const NpzReader& npz, const std::string& key) {
  torch::Tensor t = read_float(npz, key);
  if (t.dim() != 3 || t.size(2) != 3) {
    fail(npz.path().string(),
         fmt::format("'{}' has shape {}, expected [frames, atoms, 3]", key, shape_string(t)));
  }
  return t;
}

/// Energies [F]; sGDML files store them as [F, 1].
torch::Tensor read_energies(const NpzReader& npz, const std::string& key) {
  torch::Tensor t = read_float(npz, key);
  if (t.dim() == 2 && t.size(1) == 1) t = t.reshape({t.size(0)});
  if (t.dim() != 1) {
    fail(npz.path().string(),
         fmt::format("'{}' has shape {}, expected [frames]", key, shape_string(t)));
  }
  return t;
}

void require_keys(const NpzReader& npz, const std::string& format,
                  std::initializer_list<const char*> keys) {
  for (const char* key : keys) {
    if (!npz.contains(key)) {
      fail(npz.path().string(), fmt::format("missing key '{}' for {} data (keys: {})", key, format,
                                            fmt::join(npz.keys(), ", ")));
    }
  }
}

Dataset load_psm_npz(const NpzReader& npz) {
  const std::string source = npz.path().string();
  require_keys(npz, "psm", {"positions", "species", "metadata"});
  const torch::Tensor metadata_bytes = npz.read("metadata");
  if (metadata_bytes.scalar_type() != torch::kUInt8 || metadata_bytes.dim() != 1) {
    fail(source, "'metadata' must be a 1-D uint8 array of JSON text");
  }
  const auto* text = reinterpret_cast<const char*>(metadata_bytes.data_ptr<uint8_t>());
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(text, text + metadata_bytes.numel());
  } catch (const nlohmann::json::exception& e) {
    fail(source, fmt::format("'metadata' is not valid JSON: {}", e.what()));
  }
  if (!meta.is_object()) fail(source, "'metadata' is not a JSON object");
  const int version = meta.value("format_version", 0);
  if (version < 1 || version > dataset_format_version) {
    fail(source, fmt::format("dataset format_version {} is not supported (this psm reads 1..{})",
                             version, dataset_format_version));
  }
  Dataset dataset;
  try {
    dataset.units = units_from_string(meta.at("units").get<std::string>());
    dataset.kT = meta.at("kT").get<double>();
    if (meta.contains("sampled_kT") && !meta["sampled_kT"].is_null()) {
      dataset.sampled_kT = meta["sampled_kT"].get<double>();
    }
    if (meta.contains("temperature_kelvin") && !meta["temperature_kelvin"].is_null()) {
      dataset.temperature_kelvin = meta["temperature_kelvin"].get<double>();
    }
  } catch (const nlohmann::json::exception& e) {
    fail(source, fmt::format("bad 'metadata': {}", e.what()));
  } catch (const Error& e) {
    fail(source, fmt::format("bad 'metadata': {}", e.what()));
  }
  dataset.system = meta.value("system", nlohmann::json());
  dataset.provenance = meta.value("provenance", nlohmann::json());
  dataset.positions = read_float(npz, "positions");
  if (npz.contains("forces")) dataset.forces = read_float(npz, "forces");
  if (npz.contains("energies")) dataset.energies = read_float(npz, "energies");
  for (const auto& [key, column] : likelihood_columns(dataset)) {
    if (npz.contains(key)) *column = read_float(npz, key);
  }
  dataset.species = read_species(npz, "species");
  return dataset;
}

/// The common part of rMD17 and sGDML files: kcal/mol and Å, the MD17 (or MD22) temperature
/// unless the caller gives one.
Dataset md17_family_dataset(const std::string& source, const std::string& format,
                            const std::string& name, const LoadOptions& options) {
  Dataset dataset;
  dataset.units = Units::kcal_mol_angstrom;
  double kelvin = md17_temperature_kelvin;
  std::string temperature_source = "MD17 default";
  if (options.temperature_kelvin) {
    kelvin = *options.temperature_kelvin;
    temperature_source = "given by the user";
  } else if (const auto md22 = md22_temperature(name)) {
    kelvin = md22->kelvin;
    temperature_source = fmt::format("MD22 {}", md22->name);
  }
  dataset.temperature_kelvin = kelvin;
  dataset.kT = kT_from_kelvin(kelvin);
  dataset.provenance = {{"loaded_from", source},
                        {"format", format},
                        {"temperature_kelvin", kelvin},
                        {"temperature_source", temperature_source}};
  return dataset;
}

Dataset load_rmd17(const NpzReader& npz, const LoadOptions& options) {
  const bool original = options.rmd17_labels == Rmd17Labels::original;
  const char* energies = original ? "old_energies" : "energies";
  const char* forces = original ? "old_forces" : "forces";
  require_keys(npz, "rMD17", {"nuclear_charges", "coords", energies, forces});
  Dataset dataset = md17_family_dataset(npz.path().string(), "rMD17", "", options);
  dataset.species = read_species(npz, "nuclear_charges");
  dataset.positions = read_frames(npz, "coords");
  dataset.energies = read_energies(npz, energies);
  dataset.forces = read_frames(npz, forces);
  dataset.provenance["labels"] =
      fmt::format("{} ({}, {})", to_string(options.rmd17_labels), energies, forces);
  return dataset;
}

Dataset load_sgdml(const NpzReader& npz, const LoadOptions& options) {
  require_keys(npz, "sGDML", {"z", "R"});
  // The "name" entry identifies MD22 molecules; fall back to the file name.
  std::string name = npz.path().stem().string();
  if (npz.contains("name")) name = npz.read_string("name") + " " + name;
  Dataset dataset = md17_family_dataset(npz.path().string(), "sGDML", name, options);
  dataset.species = read_species(npz, "z");
  dataset.positions = read_frames(npz, "R");
  if (npz.contains("E")) dataset.energies = read_energies(npz, "E");
  if (npz.contains("F")) dataset.forces = read_frames(npz, "F");
  if (npz.contains("name")) dataset.provenance["name"] = npz.read_string("name");
  if (npz.contains("theory")) dataset.provenance["theory"] = npz.read_string("theory");
  return dataset;
}

void apply_temperature(Dataset& dataset, double kelvin, const std::string& source) {
  check(dataset.units == Units::kcal_mol_angstrom,
        fmt::format("{}: a temperature in kelvin needs kcal/mol data, not {} units", source,
                    to_string(dataset.units)));
  check(std::isfinite(kelvin) && kelvin > 0,
        fmt::format("{}: temperature must be positive, got {} K", source, kelvin));
  dataset.temperature_kelvin = kelvin;
  dataset.kT = kT_from_kelvin(kelvin);
}

Dataset load_npz_dataset(const std::filesystem::path& path, const LoadOptions& options) {
  if (normalise_name(path.extension().string()) == ".npy") {
    fail(path.string(),
         "a bare .npy array is not a dataset (psm reads .npz: psm, rMD17, sGDML; "
         "and .xyz/.extxyz)");
  }
  const NpzReader npz(path);
  if (npz.contains("metadata")) {
    Dataset dataset = load_psm_npz(npz);
    if (options.temperature_kelvin) {
      apply_temperature(dataset, *options.temperature_kelvin, path.string());
    }
    return dataset;
  }
  if (npz.contains("nuclear_charges") || npz.contains("coords")) return load_rmd17(npz, options);
  if (npz.contains("z") || npz.contains("R")) return load_sgdml(npz, options);
  if (npz.contains("positions")) {
    fail(path.string(), "missing key 'metadata' (a psm dataset says its units and kT there)");
  }
  if (npz.keys().empty()) {
    fail(path.string(),
         "not a dataset: a zip archive without NumPy arrays (a psm checkpoint? psm sample and "
         "psm score-check read those with --checkpoint)");
  }
  fail(path.string(),
       fmt::format("not a dataset: keys {} match neither psm (positions, species, metadata), "
                   "rMD17 (nuclear_charges, coords, energies, forces) nor sGDML (z, R, E, F)",
                   fmt::join(npz.keys(), ", ")));
}

bool is_extxyz_path(const std::filesystem::path& path) {
  const std::string ext = normalise_name(path.extension().string());
  return ext == ".xyz" || ext == ".extxyz";
}

}  // namespace

bool is_molecular(Units units, int64_t dim, const std::vector<int64_t>& species) {
  return units == Units::kcal_mol_angstrom && dim == 3 &&
         std::ranges::none_of(species, [](int64_t z) { return z == 0; });
}

bool Dataset::is_molecular() const { return psm::is_molecular(units, dim(), species); }

void Dataset::validate(const std::string& source) const {
  if (!positions.defined()) fail(source, "no positions");
  if (positions.dim() != 3) {
    fail(source, fmt::format("positions have shape {}, expected [frames, atoms, dim]",
                             shape_string(positions)));
  }
  if (positions.scalar_type() != torch::kFloat64) {
    fail(source, fmt::format("positions have dtype {}, expected float64",
                             c10::toString(positions.scalar_type())));
  }
  if (num_frames() < 1 || num_atoms() < 1 || dim() < 1) {
    fail(source,
         fmt::format("positions have shape {}: no frames or no atoms", shape_string(positions)));
  }
  if (static_cast<int64_t>(species.size()) != num_atoms()) {
    fail(source, fmt::format("{} species for {} atoms", species.size(), num_atoms()));
  }
  for (const int64_t z : species) {
    if (z < 0 || z > max_atomic_number) {
      fail(source, fmt::format("species {} is not an atomic number (0..{})", z, max_atomic_number));
    }
  }
  const auto check_labels = [&](const torch::Tensor& t, const char* name,
                                torch::IntArrayRef expected) {
    if (!t.defined()) return;
    if (t.sizes() != expected) {
      fail(source, fmt::format("{} have shape {}, expected {}", name, shape_string(t), expected));
    }
    if (t.scalar_type() != torch::kFloat64) {
      fail(source,
           fmt::format("{} have dtype {}, expected float64", name, c10::toString(t.scalar_type())));
    }
  };
  check_labels(forces, "forces", positions.sizes());
  check_labels(energies, "energies", {num_frames()});
  check_labels(log_q, "log_q", {num_frames()});
  check_labels(log_q_error, "log_q_error", {num_frames()});
  check_labels(log_weights, "log_weights", {num_frames()});
  for (const auto& [t, name] : {std::pair{positions, "positions"}, std::pair{forces, "forces"},
                                std::pair{energies, "energies"}, std::pair{log_q, "log_q"},
                                std::pair{log_q_error, "log_q_error"}}) {
    if (!t.defined()) continue;
    const int64_t frame = first_nonfinite_frame(t);
    if (frame >= 0) fail(source, fmt::format("{} hold NaN or Inf (frame {})", name, frame));
  }
  // A weight of zero (log w = -inf) is a frame the potential could not evaluate.
  if (log_weights.defined() &&
      (torch::isnan(log_weights) | torch::isposinf(log_weights)).any().item<bool>()) {
    fail(source, "log_weights hold NaN or +Inf");
  }
  if ((log_q_error.defined() || log_weights.defined()) && !log_q.defined()) {
    fail(source, "log_q_error or log_weights without log_q");
  }
  if (!(std::isfinite(kT) && kT > 0)) fail(source, fmt::format("kT must be positive, got {}", kT));
  if (sampled_kT && !(std::isfinite(*sampled_kT) && *sampled_kT > 0)) {
    fail(source, fmt::format("sampled_kT must be positive, got {}", *sampled_kT));
  }
  if (temperature_kelvin && !(std::isfinite(*temperature_kelvin) && *temperature_kelvin > 0)) {
    fail(source, fmt::format("temperature must be positive, got {} K", *temperature_kelvin));
  }
}

Dataset Dataset::select(const torch::Tensor& indices) const {
  check(indices.dim() == 1 && !indices.is_floating_point() && !indices.is_complex() &&
            indices.scalar_type() != torch::kBool,
        fmt::format("frame indices must be a 1-D integer tensor, got {} {}",
                    c10::toString(indices.scalar_type()), shape_string(indices)));
  const torch::Tensor index = indices.to(positions.device(), torch::kInt64);
  if (index.numel() > 0) {
    const int64_t low = index.min().item<int64_t>(), high = index.max().item<int64_t>();
    check(low >= 0 && high < num_frames(),
          fmt::format("frame index out of range: [{}, {}] for {} frames", low, high, num_frames()));
  }
  Dataset out = *this;
  out.positions = positions.index_select(0, index);
  if (has_forces()) out.forces = forces.index_select(0, index);
  if (has_energies()) out.energies = energies.index_select(0, index);
  for (const auto& [key, column] : likelihood_columns(out)) {
    if (column->defined()) *column = column->index_select(0, index);
  }
  return out;
}

Dataset Dataset::to(torch::Device device) const {
  Dataset out = *this;
  out.positions = positions.to(device);
  if (has_forces()) out.forces = forces.to(device);
  if (has_energies()) out.energies = energies.to(device);
  for (const auto& [key, column] : likelihood_columns(out)) {
    if (column->defined()) *column = column->to(device);
  }
  return out;
}

const ValueRegistry<Rmd17Labels> rmd17_label_names("rMD17 labels",
                                                   {{"recomputed", Rmd17Labels::recomputed},
                                                    {"original", Rmd17Labels::original}});

std::string to_string(Rmd17Labels labels) { return rmd17_label_names.name_of(labels); }

Rmd17Labels rmd17_labels_from_string(const std::string& name) {
  return rmd17_label_names.get(name);
}

Dataset load_dataset(const std::filesystem::path& path) { return load_dataset(path, {}); }

Dataset load_dataset(const std::filesystem::path& path, const LoadOptions& options) {
  Dataset dataset;
  if (is_extxyz_path(path)) {
    dataset = read_extxyz(path, options);
  } else {
    dataset = load_npz_dataset(path, options);
  }
  dataset.validate(path.string());
  return dataset;
}

Dataset read_geometry(const std::filesystem::path& path) {
  // load_dataset wants a temperature for XYZ files, which rarely declare one; any will do.
  if (is_extxyz_path(path)) return load_dataset(path, {.temperature_kelvin = 300.0});
  return load_dataset(path);
}

void check_dataset_output(const std::filesystem::path& path, std::optional<int64_t> dim) {
  const std::string extension = normalise_name(path.extension().string());
  check(extension == ".npz" || is_extxyz_path(path),
        fmt::format("{}: psm writes datasets as .npz or extended XYZ (.xyz, .extxyz), not '{}'",
                    path.string(), path.extension().string()));
  check(extension == ".npz" || !dim || *dim == 3,
        fmt::format("{}: extended XYZ holds 3-D positions, these are {}-D; write .npz",
                    path.string(), dim.value_or(3)));
  check_file_writable(path);
}

void save_dataset(const std::filesystem::path& path, const Dataset& dataset) {
  dataset.validate(path.string());
  check_dataset_output(path, dataset.dim());
  if (is_extxyz_path(path)) {
    write_extxyz(path, dataset);
    return;
  }
  const nlohmann::json metadata = {
      {"format", dataset_format_name},
      {"format_version", dataset_format_version},
      {"units", to_string(dataset.units)},
      {"kT", dataset.kT},
      {"sampled_kT", dataset.sampled_kT ? nlohmann::json(*dataset.sampled_kT) : nullptr},
      {"temperature_kelvin",
       dataset.temperature_kelvin ? nlohmann::json(*dataset.temperature_kelvin) : nullptr},
      {"system", dataset.system},
      {"provenance", dataset.provenance},
  };
  const std::string text = metadata.dump();
  NpzArchive arrays;
  arrays["positions"] = dataset.positions;
  if (dataset.has_forces()) arrays["forces"] = dataset.forces;
  if (dataset.has_energies()) arrays["energies"] = dataset.energies;
  for (const auto& [key, column] : likelihood_columns(dataset)) {
    if (column->defined()) arrays[key] = *column;
  }
  arrays["species"] = torch::tensor(dataset.species, torch::kInt64);
  arrays["metadata"] = torch::from_blob(const_cast<char*>(text.data()),
                                        {static_cast<int64_t>(text.size())}, torch::kUInt8)
                           .clone();
  write_npz(path, arrays);
}

}  // namespace psm
