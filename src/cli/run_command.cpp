// `psm run [CONFIG.toml]`: the whole experiment pipeline (reference data, training sets, DSM /
// PSM / hybrid training, sampling, evaluation, report). Without a config it runs the default job,
// a small LJ13 experiment.

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "psm/cli/commands.h"
#include "psm/core/atomic_file.h"
#include "psm/core/config.h"
#include "psm/core/device.h"
#include "psm/core/run_lock.h"
#include "psm/eval/plots.h"
#include "psm/eval/report.h"
#include "psm/experiment/experiment_config.h"
#include "psm/experiment/pipeline.h"

namespace psm::cli {

namespace {

class RunCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    app.add_option("config", config_path_,
                   "Experiment configuration (TOML); default: the built-in LJ13 quick job "
                   "(configs/lj13_quick.toml)")
        ->check(CLI::ExistingFile);
    app.add_option("--set", overrides_, "Override a config value, key.path=value (repeatable)");
    app.add_option("--out", out_, "Run directory (default: runs/<name>)");
    app.add_flag("--fresh", fresh_, "Redo every stage instead of reusing existing outputs");
    app.add_option("--only", only_,
                   "Make only these models: SET or SET/VARIANT (repeatable); the report shows "
                   "every model with samples, so an experiment can be run in pieces");
    app.add_flag("--data-only", data_only_,
                 "Make the reference and the training sets, then stop (on a CPU, say, before "
                 "training on a GPU in the same run directory)");
    app.add_option("--spread", spread_,
                   "Under mpirun / srun: models (each model trained and sampled by one rank, "
                   "the models dealt to the ranks in turn) or data (each model trained "
                   "data-parallel by all ranks)")
        ->capture_default_str()
        ->check(CLI::IsMember({"models", "data"}));
    app.add_flag("--progress,!--no-progress", progress_, "Progress bars on stderr");
    app.add_flag("--plots,!--no-plots", plots_, "PNG plots through gnuplot");
  }

  bool runs_on_ranks() const override { return true; }

  int run(const GlobalOptions& global) override {
    const torch::Device device = parse_device(global.device);
    Config config =
        config_path_.empty() ? default_experiment_config() : Config::from_toml_file(config_path_);
    for (const auto& assignment : overrides_) config.set(assignment);
    const ExperimentConfig experiment = read_experiment_config(config);
    if (global.threads == 0 && experiment.threads > 0) torch::set_num_threads(experiment.threads);
    const bool plots = plots_ && find_gnuplot().has_value();
    if (plots_ && !plots && global.world.is_root())
      fmt::print("note: gnuplot not found, so no plots (--no-plots hides this)\n");

    const std::filesystem::path out =
        out_.empty() ? std::filesystem::path("runs") / experiment.name : out_;
    // Rank 0 owns the run directory; the others read and write in it as the stages say.
    std::optional<RunLock> lock;
    if (global.world.is_root()) {
      check_directory_writable(out);
      lock = lock_run_directory(out);
    }
    const ExperimentResult result =
        run_experiment(experiment, {.out = out,
                                    .fresh = fresh_,
                                    .progress = progress_,
                                    .plots = plots,
                                    .only = only_,
                                    .data_only = data_only_,
                                    .device = device,
                                    .ranks = global.world,
                                    .spread = model_spread_from_string(spread_)});
    if (data_only_ || !global.world.is_root()) return 0;
    print_table(result.rows);
    fmt::print("\nreport: {}\n", result.report.string());
    return 0;
  }

 private:
  /// The summary: energy metrics and outliers for model systems; for molecules the energy W1 and
  /// W2 and outliers (– where no potential gives generated energies), the distance TVD and the
  /// molecular metrics (and the xTB energy W1 of molecules read from files, when computed).
  static void print_table(const std::vector<ExperimentRow>& rows) {
    const bool molecular = !rows.empty() && rows.front().molecular.has_value();
    if (!molecular) {
      fmt::print("\n{:<12} {:<8} {:>10} {:>10} {:>12} {:>10} {:>9} {:>9}\n", "set", "model",
                 "energy W1", "energy W2", "energy W2^2", "dist TVD", "outliers", "virial kT");
      for (const auto& row : rows) {
        const Metrics& m = row.metrics;
        fmt::print("{:<12} {:<8} {:>10} {:>10} {:>12} {:>10.4g} {:>9} {:>9}\n", row.set, row.model,
                   format_optional(m.energy_w1), format_optional(m.energy_w2),
                   format_optional(m.energy_w2_squared), m.distance_tvd,
                   format_optional(m.outlier_fraction),
                   format_optional(m.virial ? std::optional(m.virial->kT) : std::nullopt));
      }
      fmt::print(
          "(virial kT: the temperature the samples' forces imply; the reference's kT for "
          "Boltzmann samples)\n");
      return;
    }
    const bool xtb = std::ranges::any_of(
        rows, [](const auto& row) { return row.molecular->potential_energy.has_value(); });
    fmt::print("\n{:<12} {:<8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9} {:>7} {:>7}{}\n", "set",
               "model", "energy W1", "energy W2", "outliers", "dist TVD", "bond JS", "torsion JS",
               "h(r) MAE", "intact", "wrong b", xtb ? fmt::format(" {:>8}", "xTB W1") : "");
    for (const auto& row : rows) {
      const MolecularMetrics& m = *row.molecular;
      fmt::print(
          "{:<12} {:<8} {:>10} {:>10} {:>9} {:>9.4g} {:>9} {:>10} {:>9.4g} {:>7.3g} {:>7.3g}",
          row.set, row.model, format_optional(row.metrics.energy_w1),
          format_optional(row.metrics.energy_w2), format_optional(row.metrics.outlier_fraction),
          row.metrics.distance_tvd, format_optional(m.bond_length_js_mean),
          format_optional(m.torsion_js_mean), m.distance_density_mae, m.intact_fraction,
          m.wrong_bonds_mean);
      if (xtb) {
        fmt::print(" {:>8}", m.potential_energy ? fmt::format("{:.4g}", m.potential_energy->w1)
                                                : std::string("–"));
      }
      fmt::print("\n");
    }
    fmt::print(
        "(energy W1 and W2 in {}; JS in nats, mean over bonds and torsions; h(r) MAE in 1/Å; "
        "wrong b: bonds too many or too few per sample)\n",
        energy_unit(Units::kcal_mol_angstrom));
  }

  std::filesystem::path config_path_;
  std::vector<std::string> overrides_;
  std::filesystem::path out_;
  std::vector<std::string> only_;
  bool fresh_ = false;
  bool data_only_ = false;
  std::string spread_ = "models";
  bool progress_ = true;
  bool plots_ = true;
};

}  // namespace

std::unique_ptr<Command> make_run_command() { return std::make_unique<RunCommand>(); }

}  // namespace psm::cli
