#include "psm/eval/sample_evaluation.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "psm/core/atomic_file.h"
#include "psm/core/elements.h"
#include "psm/core/error.h"
#include "psm/core/progress.h"
#include "psm/diffusion/importance_weights.h"
#include "psm/eval/evaluation_inputs.h"
#include "psm/eval/plots.h"
#include "psm/systems/labelling.h"

namespace psm {

namespace fs = std::filesystem;

namespace {

/// Which set of the comparison: a generated frame the potential cannot evaluate (GFN2-xTB on
/// overlapping atoms) is a failure of the model, counted; in the reference it is an error.
enum class Role { samples, reference };

/// The system that computes energies for a set without them: options.system, else the set's
/// own; null for molecules with neither (samples of a model trained on DFT data), whose
/// structural metrics and xTB energies need none.
std::shared_ptr<const System> energy_system(const Dataset& data, const fs::path& file,
                                            const SampleEvaluationOptions& options) {
  if (options.system) return options.system;
  if (data.system.is_object()) return make_system(data.system);
  check(data.is_molecular(),
        fmt::format("{}: no energies and no system in the file; pass --system NAME to compute "
                    "them",
                    file.string()));
  fmt::print(stderr, "psm eval: {}: no energies and no system: energy metrics skipped\n",
             file.string());
  return nullptr;
}

/// Frames of generated samples as `psm run` evaluates them: a frame the potential cannot
/// evaluate (GFN2-xTB on overlapping atoms) is a failure of the model, counted as an outlier.
Samples generated_samples(const Dataset& data, const fs::path& file, const System* system) {
  Samples samples = samples_for_metrics(data, system);
  if (data.has_energies() || !samples.energies.defined()) return samples;
  const int64_t failed = torch::isnan(samples.energies).sum().item<int64_t>();
  if (failed > 0) {
    fmt::print(stderr,
               "psm eval: {}: the potential failed on {} of {} frames (counted as "
               "outliers, left out of energy W)\n",
               file.string(), failed, data.num_frames());
  }
  return samples;
}

/// Frames of the reference: a frame the potential cannot evaluate is an error.
Samples reference_samples(const Dataset& data, const fs::path& file, const System* system) {
  torch::Tensor energies =
      data.has_energies() ? data.energies.to(torch::kFloat64) : torch::Tensor();
  if (!data.has_energies() && system != nullptr) {
    ProgressBar progress(fmt::format("energies of {}", file.filename().string()),
                         data.num_frames());
    energies = batched_energies(*system, data.positions, 1024,
                                [&](int64_t done) { progress.update(done); });
    progress.finish();
  }
  return {data.positions.to(torch::kFloat64), energies,
          data.has_forces() ? data.forces.to(torch::kFloat64) : torch::Tensor()};
}

/// Throws when options.system is another system than the one the set's frames were made with
/// (the set's energies would be used, and the system silently ignored).
void check_system_matches(const Dataset& data, const fs::path& file,
                          const SampleEvaluationOptions& options) {
  if (!options.system || !data.system.is_object()) return;
  const nlohmann::json chosen = options.system->spec();
  const nlohmann::json recorded = make_system(data.system)->spec();
  check(chosen == recorded,
        fmt::format("{}: its frames are of system {}, not of --system {} ({})", file.string(),
                    recorded.dump(), options.system_name, chosen.dump()));
}

/// Energies with NaN for frames whose coordinates are too large for a distance to be computed
/// (|x|^2 overflows): a diverged sample, whatever energy a file stores for it. NaN frames count
/// as outliers and stay out of the energy W (see generated_samples).
torch::Tensor without_diverged_frames(const torch::Tensor& energies, const torch::Tensor& positions,
                                      const fs::path& file, Role role) {
  const torch::Tensor diverged = ~torch::isfinite(positions.square().sum(torch::IntArrayRef{1, 2}));
  const int64_t count = diverged.sum().item<int64_t>();
  if (count == 0) return energies;
  check(role == Role::samples,
        fmt::format("{}: {} frame(s) have coordinates too large to compute distances (first: "
                    "frame {})",
                    file.string(), count, diverged.nonzero()[0].item<int64_t>()));
  fmt::print(stderr,
             "psm eval: {}: {} of {} frames have coordinates too large to compute distances "
             "(counted as outliers, left out of energy W)\n",
             file.string(), count, positions.size(0));
  if (!energies.defined()) return energies;
  return energies.masked_fill(diverged, std::nan(""));
}

struct LoadedSamples {
  Samples samples;
  /// [B] log importance weights: the set's, or -U/kT - log q from its log q and the energies;
  /// undefined without log q
  torch::Tensor log_weights;
  Units units;
  std::vector<int64_t> species;
  nlohmann::json system;  ///< the set's system spec, may be null
  bool molecular = false;
};

LoadedSamples prepare(SourcedDataset set, const SampleEvaluationOptions& options, Role role) {
  Dataset& data = set.data;
  const fs::path& file = set.source;
  check(role == Role::reference || !options.weights || data.has_log_q(),
        fmt::format("psm eval --weights: {} has no log q (draw it with psm sample --likelihood)",
                    file.string()));
  check_system_matches(data, file, options);
  if (options.n > 0) {
    check(options.n <= data.num_frames(), fmt::format("--n {}: {} has only {} frames", options.n,
                                                      file.string(), data.num_frames()));
    data = data.select(torch::arange(options.n, torch::kInt64));
  }
  const std::shared_ptr<const System> system =
      data.has_energies() ? nullptr : energy_system(data, file, options);
  Samples samples = role == Role::samples ? generated_samples(data, file, system.get())
                                          : reference_samples(data, file, system.get());
  samples.energies = without_diverged_frames(samples.energies, data.positions, file, role);
  torch::Tensor log_weights = data.log_weights;
  if (!log_weights.defined() && data.has_log_q() && samples.energies.defined()) {
    log_weights = log_importance_weights(samples.energies, data.kT, data.log_q);
  }
  return {std::move(samples), std::move(log_weights), data.units, data.species,
          data.system,        data.is_molecular()};
}

}  // namespace

SampleEvaluation evaluate_samples(SourcedDataset samples_set, SourcedDataset reference_set,
                                  const fs::path& out, const SampleEvaluationOptions& options) {
  const fs::path samples_file = samples_set.source, reference_file = reference_set.source;
  const LoadedSamples loaded = prepare(std::move(samples_set), options, Role::samples);
  check(!options.weights || loaded.log_weights.defined(),
        fmt::format("psm eval --weights: {} has log q but no energies to weight it with",
                    samples_file.string()));
  const LoadedSamples loaded_reference =
      prepare(std::move(reference_set), options, Role::reference);
  const Samples& samples = loaded.samples;
  const Samples& reference = loaded_reference.samples;
  const Units units = loaded.units;
  check(units == loaded_reference.units,
        fmt::format("{} is in {} units but {} in {}", samples_file.string(), to_string(units),
                    reference_file.string(), to_string(loaded_reference.units)));
  check(
      samples.positions.size(1) == reference.positions.size(1),
      fmt::format("{} has {} atoms per frame but {} has {}", samples_file.string(),
                  samples.positions.size(1), reference_file.string(), reference.positions.size(1)));
  check(loaded.species == loaded_reference.species,
        fmt::format("{} and {} list different species ({} vs {})", samples_file.string(),
                    reference_file.string(), chemical_formula(loaded.species),
                    chemical_formula(loaded_reference.species)));
  std::optional<MolecularReportOptions> molecular;
  if (loaded_reference.molecular) {
    molecular = MolecularReportOptions{.species = loaded_reference.species,
                                       .potential_frames = options.xtb_frames};
    if (options.xtb_frames > 0) {
      molecular->potential = xtb_reference_potential(
          loaded_reference.species, loaded_reference.system, [](const std::string& why) {
            fmt::print(stderr, "psm eval: warning: no xTB energy W1: {}\n", why);
          });
    }
  }
  bool plots = options.plots;
  if (plots && !find_gnuplot()) {
    fmt::print(stderr, "psm eval: warning: gnuplot not found on PATH; no plots drawn\n");
    plots = false;
  }
  std::vector<NamedSamples> models{{samples_file.stem().string(), samples}};
  std::optional<WeightedMetrics> weighted;
  if (options.weights) {
    weighted =
        compute_weighted_metrics(samples, loaded.log_weights, reference, {}, options.min_ess);
    if (auto row = reweighted_samples(models.front(), loaded.log_weights, *weighted)) {
      models.push_back(std::move(*row));
    }
  }
  const std::string& name = models.front().name;
  auto rows = write_report(out, reference, models,
                           {.title = fmt::format("{} vs {}", name, reference_file.stem().string()),
                            .units = units,
                            .metrics = {.equivariant_samples = options.equivariant_n},
                            .plots = plots,
                            .molecular = molecular,
                            .context = options.context});
  if (weighted) {
    write_text_atomically(out / "weighted_metrics.json", weighted->to_json().dump(2) + "\n");
  }
  return {.row = std::move(rows.front()), .weighted = std::move(weighted)};
}

}  // namespace psm
