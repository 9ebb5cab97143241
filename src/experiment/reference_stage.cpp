#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "experiment/internal/experiment_run.h"
#include "psm/core/elements.h"
#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/data/force_check.h"
#include "psm/io/npy.h"
#include "psm/systems/labelling.h"

namespace psm::stages {

namespace {

/// The rMD17 frame identities of a file (`old_indices`: each frame's index in the original MD17
/// trajectory); undefined when the file has none.
torch::Tensor source_frame_ids(const std::string& file) {
  if (fs::path(file).extension() != ".npz") return {};
  const NpzReader npz(file);
  if (!npz.contains("old_indices")) return {};
  return npz.read("old_indices").to(torch::kInt64).flatten().contiguous();
}

/// Frame identities of every file, or an empty set when any file has none.
std::unordered_set<int64_t> frame_ids_of(const std::vector<std::string>& files) {
  std::unordered_set<int64_t> ids;
  for (const auto& file : files) {
    const torch::Tensor file_ids = source_frame_ids(file);
    if (!file_ids.defined()) return {};
    const auto* data = file_ids.data_ptr<int64_t>();
    ids.insert(data, data + file_ids.size(0));
  }
  return ids;
}

/// The frames of `files`, concatenated.
/// When every file carries frame identities (rMD17 old_indices), a frame seen before and a frame
/// in `excluded` are dropped; the provenance counts them.
Dataset read_frame_files(const std::vector<std::string>& files,
                         const std::unordered_set<int64_t>& excluded, Rmd17Labels labels) {
  std::vector<Dataset> parts;
  std::vector<torch::Tensor> ids;
  for (const auto& file : files) {
    parts.push_back(load_dataset(file, {.rmd17_labels = labels}));
    ids.push_back(source_frame_ids(file));
    const Dataset& first = parts.front();
    const Dataset& part = parts.back();
    check(!ids.back().defined() || ids.back().size(0) == part.num_frames(),
          fmt::format("{}: old_indices has {} entries for {} frames", file, ids.back().size(0),
                      part.num_frames()));
    check(part.num_atoms() == first.num_atoms() && part.dim() == first.dim() &&
              part.species == first.species && part.units == first.units,
          fmt::format("{}: {} atoms of {} in {} units, but {} has {} of {} in {}", file,
                      part.num_atoms(), chemical_formula(part.species), to_string(part.units),
                      files.front(), first.num_atoms(), chemical_formula(first.species),
                      to_string(first.units)));
    check(
        std::abs(part.kT - first.kT) <= 1e-9 * first.kT && part.sampled_kT == first.sampled_kT,
        fmt::format("{}: kT = {:g}, but {} has kT = {:g}", file, part.kT, files.front(), first.kT));
    check(part.has_forces() == first.has_forces() && part.has_energies() == first.has_energies(),
          fmt::format("{}: has {}forces and {}energies, unlike {}", file,
                      part.has_forces() ? "" : "no ", part.has_energies() ? "" : "no ",
                      files.front()));
  }
  Dataset data = parts.front();
  const auto concatenated = [&](auto member) {
    std::vector<torch::Tensor> tensors;
    for (const auto& part : parts) tensors.push_back(part.*member);
    return torch::cat(tensors);
  };
  data.positions = concatenated(&Dataset::positions);
  if (data.has_forces()) data.forces = concatenated(&Dataset::forces);
  if (data.has_energies()) data.energies = concatenated(&Dataset::energies);
  nlohmann::json sources = nlohmann::json::array();
  for (const auto& part : parts) sources.push_back(part.provenance);
  data.provenance = {{"command", "psm run"}, {"loaded_from", files}, {"sources", sources}};

  const bool identified = std::ranges::all_of(ids, [](const auto& t) { return t.defined(); });
  if (!identified) {
    data.provenance["frame_ids"] =
        "none (not every file has old_indices): repeated frames not checked";
    return data;
  }
  const torch::Tensor all_ids = torch::cat(ids);
  const auto id_of = all_ids.accessor<int64_t, 1>();
  std::unordered_set<int64_t> seen;
  std::vector<int64_t> kept;
  int64_t duplicates = 0, in_excluded = 0;
  for (int64_t i = 0; i < all_ids.size(0); ++i) {
    const int64_t id = id_of[i];
    if (excluded.contains(id)) {
      ++in_excluded;
    } else if (!seen.insert(id).second) {
      ++duplicates;
    } else {
      kept.push_back(i);
    }
  }
  data = data.select(torch::tensor(kept, torch::kInt64));
  data.provenance["frame_ids"] = "old_indices";
  data.provenance["duplicate_frames_dropped"] = duplicates;
  if (!excluded.empty()) data.provenance["pool_frames_dropped"] = in_excluded;
  return data;
}

/// The first `frames` (all when absent) frames of reference data read from `files`, after
/// checking that they are samples of `system` at its kT; labelled with the system's energies and
/// forces when they lack them.
Dataset matching_reference(const Dataset& data, const std::vector<std::string>& files,
                           const ExperimentSystem& system, std::optional<int64_t> frames) {
  const std::string file = fmt::format("{}", fmt::join(files, ", "));
  check(data.num_atoms() == system.num_atoms() && data.dim() == system.dim &&
            (!system.molecular() || data.species == system.species),
        fmt::format("{}: {} atoms ({}) in {}-D, but {} has {} in {}-D", file, data.num_atoms(),
                    chemical_formula(data.species), data.dim(), system.name, system.num_atoms(),
                    system.dim));
  check(std::abs(data.frames_kT() - system.kT) <= 1e-9 * system.kT,
        fmt::format("{}: sampled at kT = {:g}, the experiment's kT is {:g}", file, data.frames_kT(),
                    system.kT));
  const int64_t kept = frames.value_or(data.num_frames());
  check(data.num_frames() >= kept, fmt::format("{}: {} distinct frames, the experiment asks for {}",
                                               file, data.num_frames(), kept));
  Dataset selected = data.select(torch::arange(kept));
  if (!selected.has_forces() || !selected.has_energies()) {
    check(system.system != nullptr,
          fmt::format("{}: no {}, and without [system] there is no potential to compute them", file,
                      selected.has_forces() ? "energies" : "forces"));
    check(label_dataset(*system.system, selected) == 0,
          fmt::format("{}: some frames have non-finite energies or forces", file));
  }
  return selected;
}

/// What the provenance of reference data read from files says about dropped frames.
std::string dropped_frames(const Dataset& data) {
  const nlohmann::json& p = data.provenance;
  if (!p.is_object() || !p.contains("frame_ids")) return "";
  if (p["frame_ids"] != "old_indices") {
    return " (not every file has old_indices: repeated frames, and pool frames in the test set, "
           "not checked)";
  }
  std::string text = fmt::format(" ({} duplicates dropped", p.value("duplicate_frames_dropped", 0));
  if (p.contains("pool_frames_dropped")) {
    text += fmt::format(", {} frames of the pool files dropped",
                        p["pool_frames_dropped"].get<int64_t>());
  }
  return text + ")";
}

}  // namespace

void reference_stage(ExperimentRun& run) {
  const ExperimentConfig& experiment = run.experiment;
  const ReferenceSpec& spec = experiment.reference;
  const fs::path out = run.options.out;
  std::optional<ExperimentSystem>& system = run.system;
  say(system ? fmt::format("[1/5] reference samples of {} at {}", system->name,
                           describe_temperature(*system))
             : "[1/5] reference samples");
  run.pool = cached_dataset(out / "reference" / "pool.npz", "training pool", [&] {
    if (!spec.pool_files.empty()) {
      const Dataset frames = read_frame_files(spec.pool_files, {}, spec.labels);
      if (system) return matching_reference(frames, spec.pool_files, *system, spec.samples);
      // Without [system] the pool's frames define the system.
      return matching_reference(frames, spec.pool_files, system_from_data(frames), spec.samples);
    }
    return simulated(
        *system,
        reference_settings(run, system->kT, spec.samples.value_or(ReferenceSpec::default_samples),
                           derive_seed(experiment.seed, kPoolStream)),
        out / "reference" / "pool.npz");
  });
  const Dataset& pool = run.pool;
  if (!system) system = system_from_data(pool);
  if (!spec.pool_files.empty()) say(fmt::format("  pool from files{}", dropped_frames(pool)));
  if (pool.has_forces() && pool.num_frames() >= 2) {  // the check needs a spread of frames
    say("  force check: " + describe_force_check(virial_temperature(pool), pool.frames_kT()));
  }
  run.test = cached_dataset(out / "reference" / "test.npz", "test set", [&] {
    if (!spec.test_files.empty()) {
      // The test set shares no frame with the pool files, so it is distinct from every training
      // set made from them.
      return matching_reference(
          read_frame_files(spec.test_files, frame_ids_of(spec.pool_files), spec.labels),
          spec.test_files, *system, spec.test_samples);
    }
    const uint64_t seed = derive_seed(derive_seed(experiment.seed, kTestStream), spec.test_seed);
    return simulated(
        *system,
        reference_settings(run, system->kT,
                           spec.test_samples.value_or(ReferenceSpec::default_test_samples), seed),
        out / "reference" / "test.npz");
  });
  if (!spec.test_files.empty()) {
    say(fmt::format("  test set from files{}", dropped_frames(run.test)));
  }
}

}  // namespace psm::stages
