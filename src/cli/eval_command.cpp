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
#include "psm/eval/report.h"
#include "psm/eval/sample_evaluation.h"
#include "psm/io/dataset.h"
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
    SampleEvaluationOptions evaluation{.n = options_.n,
                                       .equivariant_n = options_.equivariant_n,
                                       .xtb_frames = options_.xtb_frames,
                                       .plots = !options_.no_plots,
                                       .weights = options_.weights,
                                       .min_ess = options_.min_ess,
                                       .context = {{"command", "psm eval"},
                                                   {"samples", options_.samples.string()},
                                                   {"reference", options_.reference.string()},
                                                   {"n", options_.n},
                                                   {"xtb_frames", options_.xtb_frames}}};
    if (!options_.system.name.empty()) {
      evaluation.system = choose_system(options_.system).system;
      evaluation.system_name = options_.system.name;
    }
    Dataset samples = load_dataset(options_.samples);
    Dataset reference = load_dataset(options_.reference);
    const Units units = samples.units;
    const SampleEvaluation result = evaluate_samples({std::move(samples), options_.samples},
                                                     {std::move(reference), options_.reference},
                                                     output_directory(), evaluation);
    print_table(result.row.metrics, units);
    if (result.row.molecular) print_molecular_table(*result.row.molecular);
    if (result.weighted) {
      print_weighted_table(*result.weighted, units);
      fmt::print("wrote {}\n", (output_directory() / "weighted_metrics.json").string());
    }
    fmt::print("wrote {}\n", (output_directory() / "report.md").string());
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
