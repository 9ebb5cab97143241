// `psm eval`: metrics, histograms and a report for one sample file against a reference file.

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>

#include "psm/cli/commands.h"
#include "psm/cli/system_options.h"
#include "psm/cli/validators.h"
#include "psm/core/atomic_file.h"
#include "psm/core/elements.h"
#include "psm/core/error.h"
#include "psm/core/progress.h"
#include "psm/diffusion/importance_weights.h"
#include "psm/eval/evaluation_inputs.h"
#include "psm/eval/plots.h"
#include "psm/eval/report.h"
#include "psm/eval/weighted_metrics.h"
#include "psm/io/dataset.h"
#include "psm/systems/labelling.h"
#include "psm/systems/potential.h"

namespace psm::cli {

namespace fs = std::filesystem;

namespace {

struct EvalOptions {
  fs::path samples;
  fs::path reference;
  SystemArguments system;  ///< energies for files without them; default: the file's own system
  fs::path out;            ///< default: <samples stem>_eval beside the samples file
  int64_t n = 0;           ///< first n frames of each file; 0 = all
  int64_t equivariant_n = 0;
  int64_t xtb_frames = 200;  ///< molecules: frames per set whose GFN2-xTB energies are compared
  bool no_plots = false;
  bool weights = false;  ///< also the metrics of the importance-weighted samples
  double min_ess = kDefaultMinEssFraction;
};

/// Which file of the comparison: a generated frame the potential cannot evaluate (GFN2-xTB on
/// overlapping atoms) is a failure of the model, counted; in the reference it is an error.
enum class Role { samples, reference };

/// The system that computes energies for a file without them: --system, else the file's own;
/// null for molecules with neither (samples of a model trained on DFT data), whose structural
/// metrics and xTB energies need none.
std::unique_ptr<System> energy_system(const Dataset& data, const fs::path& file,
                                      const SystemArguments& system_arguments) {
  if (!system_arguments.name.empty()) return choose_system(system_arguments).system;
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

struct LoadedSamples {
  Samples samples;
  /// [B] log importance weights: the file's, or -U/kT - log q from its log q and the energies;
  /// undefined without log q
  torch::Tensor log_weights;
  Units units;
  std::vector<int64_t> species;
  nlohmann::json system;  ///< the file's system spec, may be null
  bool molecular = false;
};

/// Throws when --system names another system than the one the file's frames were made with
/// (the file's energies would be used, and --system silently ignored).
void check_system_matches(const Dataset& data, const fs::path& file,
                          const SystemArguments& system_arguments) {
  if (system_arguments.name.empty() || !data.system.is_object()) return;
  const nlohmann::json chosen = choose_system(system_arguments).system->spec();
  const nlohmann::json recorded = make_system(data.system)->spec();
  check(chosen == recorded,
        fmt::format("{}: its frames are of system {}, not of --system {} ({})", file.string(),
                    recorded.dump(), system_arguments.name, chosen.dump()));
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

LoadedSamples load_samples(const fs::path& file, const EvalOptions& options, Role role) {
  Dataset data = load_dataset(file);
  check(role == Role::reference || !options.weights || data.has_log_q(),
        fmt::format("psm eval --weights: {} has no log q (draw it with psm sample --likelihood)",
                    file.string()));
  check_system_matches(data, file, options.system);
  if (options.n > 0) {
    check(options.n <= data.num_frames(), fmt::format("--n {}: {} has only {} frames", options.n,
                                                      file.string(), data.num_frames()));
    data = data.select(torch::arange(options.n, torch::kInt64));
  }
  const std::unique_ptr<System> system =
      data.has_energies() ? nullptr : energy_system(data, file, options.system);
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

class EvalCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    app.add_option("--samples", options_.samples,
                   "Samples to evaluate (psm .npz, rMD17, sGDML, extxyz)")
        ->required()
        ->check(CLI::ExistingFile);
    app.add_option("--reference", options_.reference, "Reference samples (same formats)")
        ->required()
        ->check(CLI::ExistingFile);
    app.add_option("--system", options_.system.name,
                   "System that computes energies for files without them (see `psm systems`); "
                   "default: the system recorded in the file");
    app.add_option("--system-option", options_.system.options,
                   "key=value option of --system (repeatable)");
    app.add_option("--out", options_.out,
                   "Output directory for metrics.json, report.md and plots (default: "
                   "<samples stem>_eval beside the samples)");
    app.add_option("--n", options_.n, "Use the first N frames of each file (0 = all)")
        ->check(non_negative_number);
    app.add_option("--equivariant-n", options_.equivariant_n,
                   "Also compute the equivariant W2 on the first N frames (O(N^2) alignments; "
                   "small systems, N of a few hundred; 0 = skip)")
        ->check(non_negative_number);
    app.add_option("--xtb-frames", options_.xtb_frames,
                   "Molecules: GFN2-xTB energies of this many frames per set (evenly spaced) for "
                   "the xTB energy W1 (0 = skip)")
        ->capture_default_str()
        ->check(non_negative_number);
    app.add_flag("--no-plots", options_.no_plots, "Skip the histograms (they need gnuplot)");
    app.add_flag("--weights", options_.weights,
                 "Also the metrics of the samples reweighted to the Boltzmann distribution "
                 "(their log importance weights, from `psm sample --likelihood`)");
    app.add_option("--min-ess", options_.min_ess,
                   "Effective sample size (fraction) below which the weights are reported as "
                   "degenerate and not used")
        ->capture_default_str()
        ->check(unit_interval);
  }

  int run(const GlobalOptions&) override {
    check_directory_writable(output_directory());
    const LoadedSamples loaded = load_samples(options_.samples, options_, Role::samples);
    check(!options_.weights || loaded.log_weights.defined(),
          fmt::format("psm eval --weights: {} has log q but no energies to weight it with",
                      options_.samples.string()));
    const LoadedSamples loaded_reference =
        load_samples(options_.reference, options_, Role::reference);
    const Samples& samples = loaded.samples;
    const Samples& reference = loaded_reference.samples;
    const Units units = loaded.units;
    check(units == loaded_reference.units,
          fmt::format("{} is in {} units but {} in {}", options_.samples.string(), to_string(units),
                      options_.reference.string(), to_string(loaded_reference.units)));
    check(samples.positions.size(1) == reference.positions.size(1),
          fmt::format("{} has {} atoms per frame but {} has {}", options_.samples.string(),
                      samples.positions.size(1), options_.reference.string(),
                      reference.positions.size(1)));
    check(loaded.species == loaded_reference.species,
          fmt::format("{} and {} list different species ({} vs {})", options_.samples.string(),
                      options_.reference.string(), chemical_formula(loaded.species),
                      chemical_formula(loaded_reference.species)));
    std::optional<MolecularReportOptions> molecular;
    if (loaded_reference.molecular) {
      molecular = MolecularReportOptions{.species = loaded_reference.species,
                                         .potential_frames = options_.xtb_frames};
      if (options_.xtb_frames > 0) {
        molecular->potential = xtb_reference_potential(
            loaded_reference.species, loaded_reference.system, [](const std::string& why) {
              fmt::print(stderr, "psm eval: warning: no xTB energy W1: {}\n", why);
            });
      }
    }
    const fs::path out = output_directory();
    bool plots = !options_.no_plots;
    if (plots && !find_gnuplot()) {
      fmt::print(stderr, "psm eval: warning: gnuplot not found on PATH; no plots drawn\n");
      plots = false;
    }
    const std::string name = options_.samples.stem().string();
    const auto rows =
        write_report(out, reference, {{name, samples}},
                     {.title = fmt::format("{} vs {}", name, options_.reference.stem().string()),
                      .units = units,
                      .metrics = {.equivariant_samples = options_.equivariant_n},
                      .plots = plots,
                      .molecular = molecular,
                      .context = {{"command", "psm eval"},
                                  {"samples", options_.samples.string()},
                                  {"reference", options_.reference.string()},
                                  {"n", options_.n},
                                  {"xtb_frames", options_.xtb_frames}}});
    print_table(rows.front().metrics, units);
    if (rows.front().molecular) print_molecular_table(*rows.front().molecular);
    if (options_.weights) {
      const WeightedMetrics weighted =
          compute_weighted_metrics(samples, loaded.log_weights, reference, {}, options_.min_ess);
      print_weighted_table(weighted, units);
      write_text_atomically(out / "weighted_metrics.json", weighted.to_json().dump(2) + "\n");
      fmt::print("wrote {}\n", (out / "weighted_metrics.json").string());
    }
    fmt::print("wrote {}\n", (out / "report.md").string());
    return 0;
  }

 private:
  fs::path output_directory() const {
    return options_.out.empty()
               ? options_.samples.parent_path() / (options_.samples.stem().string() + "_eval")
               : options_.out;
  }

  static void print_table(const Metrics& m, Units units) {
    const std::string e = energy_unit(units), l = length_unit(units);
    const auto row = [](const std::string& name, const std::string& value) {
      fmt::print("{:<40} {}\n", name, value);
    };
    // Unset only for molecules without energies (energy_system).
    const auto optional = [](const std::optional<double>& value) {
      return value ? fmt::format("{:.6g}", *value) : std::string("- (no energies)");
    };
    row("n_eval (samples / reference)", fmt::format("{} / {}", m.n_generated, m.n_reference));
    row(fmt::format("energy W1 ({})", e), optional(m.energy_w1));
    row(fmt::format("energy W2 ({})", e), optional(m.energy_w2));
    row(fmt::format("energy W2^2 ({}^2)", e), optional(m.energy_w2_squared));
    row("distance TVD", fmt::format("{:.6g}", m.distance_tvd));
    row(fmt::format("distance W2 ({})", l), fmt::format("{:.6g}", m.distance_w2));
    row("outlier fraction", optional(m.outlier_fraction));
    if (m.virial) {
      row(fmt::format("virial kT ({}), from the forces", e),
          fmt::format("{:.6g} ± {:.2g}", m.virial->kT, m.virial->standard_error));
    }
    if (m.equivariant_w2) {
      row(fmt::format("equivariant W2 ({}), n = {}", l, m.equivariant_samples),
          fmt::format("{:.6g}", *m.equivariant_w2));
    }
  }

  static void print_weighted_table(const WeightedMetrics& w, Units units) {
    const std::string e = energy_unit(units);
    const auto row = [](const std::string& name, const std::string& value) {
      fmt::print("{:<40} {}\n", name, value);
    };
    fmt::print("\nreweighted to the Boltzmann distribution (importance weights exp(-U/kT) / q)\n");
    row("effective sample size (Kish)",
        fmt::format("{:.4f} of {} ({:.1f} samples), largest weight {:.3g}", w.ess_fraction,
                    w.samples, w.ess_fraction * static_cast<double>(w.samples), w.max_weight));
    const auto mean = [](double value, const std::optional<double>& error) {
      return fmt::format("{:.6g} ± {:.2g}", value, error.value_or(0.0));
    };
    if (w.mean_energy_unweighted) {
      row(fmt::format("mean energy ({}), unweighted", e),
          mean(*w.mean_energy_unweighted, w.mean_energy_unweighted_standard_error));
      row(fmt::format("mean energy ({}), reference", e),
          mean(*w.mean_energy_reference, w.mean_energy_reference_standard_error));
    }
    if (w.degenerate) {
      row("weighted metrics",
          fmt::format("none: degenerate weights (ESS below {:.3g})", w.min_ess_fraction));
      return;
    }
    if (w.mean_energy) {
      row(fmt::format("mean energy ({}), reweighted", e),
          mean(*w.mean_energy, w.mean_energy_standard_error));
    }
    const Metrics& m = *w.metrics;
    const auto optional = [](const std::optional<double>& value) {
      return value ? fmt::format("{:.6g}", *value) : std::string("- (no energies)");
    };
    row(fmt::format("energy W1 ({}), reweighted", e), optional(m.energy_w1));
    row(fmt::format("energy W2 ({}), reweighted", e), optional(m.energy_w2));
    row("distance TVD, reweighted", fmt::format("{:.6g}", m.distance_tvd));
    row(fmt::format("distance W2 ({}), reweighted", length_unit(units)),
        fmt::format("{:.6g}", m.distance_w2));
    row("outlier fraction, reweighted", optional(m.outlier_fraction));
  }

  static void print_molecular_table(const MolecularMetrics& m) {
    const auto row = [](const std::string& name, const std::string& value) {
      fmt::print("{:<40} {}\n", name, value);
    };
    // Bond and torsion metrics describe the intact samples; absent when none is.
    const auto mean_and_max = [&](const std::optional<double>& mean,
                                  const std::optional<double>& max) {
      if (mean) return fmt::format("{:.6g} / {:.6g}", *mean, *max);
      return std::string(m.intact_fraction == 0 ? "none (no intact sample)"
                                                : "none (no rotatable bond)");
    };
    row(fmt::format("bond length JS mean / max (nats), {}", m.bonds.size(0)),
        mean_and_max(m.bond_length_js_mean, m.bond_length_js_max));
    row(fmt::format("torsion JS mean / max (nats), {}", m.torsions.size(0)),
        mean_and_max(m.torsion_js_mean, m.torsion_js_max));
    row("h(r) MAE (1/Å)", fmt::format("{:.6g}", m.distance_density_mae));
    row("intact bond graph fraction", fmt::format("{:.6g}", m.intact_fraction));
    if (m.search_limited > 0) {
      row("of the others, isomorphism search gave up",
          fmt::format("{} samples (counted not intact)", m.search_limited));
    }
    row("wrong bonds per sample (by element pair)", fmt::format("{:.4g}", m.wrong_bonds_mean));
    if (!m.bond_width_ratio.empty()) {
      std::vector<std::string> ratios;
      for (const auto& [type, ratio] : m.bond_width_ratio) {
        ratios.push_back(fmt::format("{} {:.3g}", type, ratio));
      }
      row("bond width / reference's, by bond type", fmt::format("{}", fmt::join(ratios, ", ")));
    }
    if (m.potential_energy) {
      const PotentialEnergyW1& e = *m.potential_energy;
      row(fmt::format("{} energy W1 (kcal/mol)", e.potential), fmt::format("{:.6g}", e.w1));
      row(fmt::format("{} frames (samples / reference)", e.potential),
          fmt::format("{} / {}, {} samples failed", e.generated, e.reference, e.failed_generated));
    }
  }

  EvalOptions options_;
};

}  // namespace

std::unique_ptr<Command> make_eval_command() { return std::make_unique<EvalCommand>(); }

}  // namespace psm::cli
