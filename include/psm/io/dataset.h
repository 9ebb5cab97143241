#pragma once
// The one dataset type every layer exchanges: frames of an atomic system with optional force and
// energy labels, the units they are in, the temperature they belong to and where they came from.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "psm/core/units.h"

namespace psm {

struct Dataset {
  torch::Tensor positions;  ///< [F, N, D] float64; Å or reduced length
  torch::Tensor forces;     ///< [F, N, D] float64, -dU/dx; kcal/mol/Å or reduced; may be undefined
  torch::Tensor energies;   ///< [F] float64; kcal/mol or reduced; may be undefined
  /// [F] float64, nats: log-density of each frame under the model that drew it
  /// (diffusion/likelihood.h states the convention); may be undefined
  torch::Tensor log_q;
  torch::Tensor
      log_q_error;  ///< [F] float64, nats: log_q's estimated integration error; may be undefined
  /// [F] float64: log importance weights -U/kT - log q towards the Boltzmann distribution at
  /// kT (eval/importance_weights.h), -inf for a frame the potential could not evaluate; may be
  /// undefined
  torch::Tensor log_weights;
  std::vector<int64_t> species;  ///< [N] atomic numbers; 0 for identical model particles (LJ, DW)
  Units units = Units::reduced;
  double kT = 1.0;  ///< target k_B T (energy units): the distribution the user wants
  std::optional<double> sampled_kT;  ///< k_B T the frames were drawn at, when it differs from kT
  std::optional<double> temperature_kelvin;  ///< target temperature for molecular data
  nlohmann::json system;      ///< how to rebuild the potential, e.g. {"name": "lj13"}; may be null
  nlohmann::json provenance;  ///< free-form history: command, inputs, seeds, subset steps

  int64_t num_frames() const { return positions.size(0); }
  int64_t num_atoms() const { return positions.size(1); }
  int64_t dim() const { return positions.size(2); }
  bool has_forces() const { return forces.defined(); }
  bool has_energies() const { return energies.defined(); }
  bool has_log_q() const { return log_q.defined(); }
  /// Real elements in 3-D, Å and kcal/mol: a molecule (see is_molecular below).
  bool is_molecular() const;
  /// k_B T the frames were drawn at: sampled_kT, else kT.
  double frames_kT() const { return sampled_kT.value_or(kT); }

  /// Throws psm::Error naming `source` (a file name) on inconsistent shapes, dtypes, species
  /// count, non-finite values or a non-positive kT.
  void validate(const std::string& source) const;

  /// The frames at `indices` (int64 [K]), with all metadata kept.
  Dataset select(const torch::Tensor& indices) const;

  /// The same frames with their tensors on `device` (files are written from any device).
  Dataset to(torch::Device device) const;
};

/// Real elements (no model particle, species 0) in 3-D, Å and kcal/mol: the molecular metrics
/// apply.
bool is_molecular(Units units, int64_t dim, const std::vector<int64_t>& species);

/// Which energies and forces of an rMD17 file to read. rMD17 recomputed them (PBE/def2-SVP) on
/// MD17's frames, which MD with another potential (PBE+vdW-TS) sampled: the recomputed forces are
/// not those of the distribution the frames come from (virial_temperature shows it). The
/// original MD17 labels (old_energies, old_forces) are that potential's, with MD17's numerical
/// noise.
enum class Rmd17Labels { recomputed, original };
std::string to_string(Rmd17Labels labels);
Rmd17Labels rmd17_labels_from_string(const std::string& name);

struct LoadOptions {
  /// The temperature of the data in kelvin, replacing the one the file declares or the format's
  /// default (MD17/rMD17: 500 K). Sets kT = k_B T and temperature_kelvin; molecular data only.
  std::optional<double> temperature_kelvin{};
  Rmd17Labels rmd17_labels = Rmd17Labels::recomputed;  ///< rMD17 files only
};

/// Reads a dataset, recognising the format from the content: psm .npz (with a "metadata"
/// entry), rMD17 .npz (nuclear_charges, coords, energies, forces), sGDML .npz (z, R, E, F) or
/// extended XYZ (.xyz, .extxyz). Validates before returning. Throws psm::Error naming the file.
/// MD17-family files are in kcal/mol and Å; their temperature is 500 K unless an sGDML "name"
/// (or the file name) identifies an MD22 molecule simulated at another temperature.
Dataset load_dataset(const std::filesystem::path& path);
Dataset load_dataset(const std::filesystem::path& path, const LoadOptions& options);

/// Species and frames of a geometry file (.xyz, .extxyz, or any dataset load_dataset reads).
/// Only the geometry is meant to be used, so XYZ files need not declare a temperature.
Dataset read_geometry(const std::filesystem::path& path);

/// Writes `dataset` atomically in the format the extension of `path` names: .npz (arrays
/// positions, forces, energies, log_q, log_q_error, log_weights, species, plus a JSON
/// "metadata" entry stored as uint8 bytes: json.loads(np.load(f)["metadata"].tobytes())) or
/// extended XYZ (.xyz, .extxyz; 3-D only; log_q, log_q_error and log_weights as per-frame info
/// keys, ASE's atoms.info).
/// Throws psm::Error for any other extension, as check_dataset_output.
void save_dataset(const std::filesystem::path& path, const Dataset& dataset);

/// Throws psm::Error naming `path` when save_dataset could not write a dataset there: an
/// extension other than .npz, .xyz or .extxyz, extended XYZ for data whose `dim` (when known) is
/// not 3, or a path that is not writable (check_file_writable). Commands call it before their
/// work, so that a bad --out loses nothing.
void check_dataset_output(const std::filesystem::path& path,
                          std::optional<int64_t> dim = std::nullopt);

}  // namespace psm
