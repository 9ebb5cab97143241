// The stages that judge the models: evaluate (each set's metrics and report) and report (the
// summary of every set).

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fstream>

#include "experiment/internal/experiment_run.h"
#include "psm/core/atomic_file.h"
#include "psm/core/random.h"
#include "psm/data/subsets.h"
#include "psm/data/thermal_check.h"
#include "psm/diffusion/schedule.h"
#include "psm/eval/evaluation_inputs.h"
#include "psm/eval/plots.h"
#include "psm/simulate/presets.h"
#include "psm/train/callbacks.h"
#include "psm/train/checkpoint.h"
#include "psm/train/run_config.h"

namespace psm::stages {

namespace {

/// Band losses against the step from a MetricLogger file, one curve per sigma band.
std::vector<LineSeries> band_loss_curves(const fs::path& metrics_file, const SigmaBands& bands) {
  std::vector<LineSeries> curves(bands.count());
  for (int64_t b = 0; b < bands.count(); ++b) curves[b].label = "band " + bands.label(b);
  std::ifstream in(metrics_file);
  std::string line;
  while (std::getline(in, line)) {
    const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object() || !record.contains("band_losses")) continue;
    const auto& losses = record["band_losses"];
    for (int64_t b = 0; b < bands.count() && b < static_cast<int64_t>(losses.size()); ++b) {
      if (!losses[b].is_number()) continue;
      curves[b].x.push_back(record["step"].get<double>());
      curves[b].y.push_back(losses[b].get<double>());
    }
  }
  return curves;
}

/// The test set's thermometers, as the reference stage kept them in its provenance
/// (record_thermal_check), as a paragraph; empty when it has none (MCMC, files).
std::string thermometer_note(const Dataset& test) {
  const nlohmann::json& provenance = test.provenance;
  if (!provenance.contains("thermometers") || !provenance.contains("at_equilibrium")) return "";
  std::vector<std::string> readings;
  for (const auto& [name, reading] : provenance["thermometers"].items()) {
    const nlohmann::json &kT = reading["kT"], &error = reading["standard_error"];
    readings.push_back(
        kT.is_number() && error.is_number()
            ? fmt::format("{} {:.4g} ± {:.2g}", name, kT.get<double>(), error.get<double>())
            : fmt::format("{} not finite", name));
  }
  return fmt::format(
      "Thermometers of the test set's MD (kT {:.4g}): {}; {}.\n\n", test.frames_kT(),
      fmt::join(readings, ", "),
      provenance["at_equilibrium"].get<bool>()
          ? fmt::format("every one within {:g} standard errors", kThermalCheckSigmas)
          : fmt::format("**not at equilibrium**: some are beyond {:g} standard errors, and the "
                        "reference's bond widths with them",
                        kThermalCheckSigmas));
}

/// Where the σ_c of `set`'s hybrid models comes from.
std::string sigma_c_source(const ExperimentConfig& experiment, const TrainingSetSpec& set) {
  if (set.sigma_c) return "the set's sigma_c";
  const nlohmann::json given = experiment.training.value("diffusion", nlohmann::json::object())
                                   .value("sigma_c", nlohmann::json());
  return given.is_number() ? "diffusion.sigma_c" : "estimated from the training forces";
}

/// "hybrid: σ_c = 0.3 (the set's sigma_c)." for each trained model of `set` that crosses over,
/// as a paragraph; empty when none does. `losses`: each variant's, from its checkpoint.
std::string crossover_note(const ExperimentConfig& experiment, const TrainingSetSpec& set,
                           const std::vector<std::optional<LossOptions>>& losses) {
  std::vector<std::string> notes;
  for (size_t v = 0; v < losses.size(); ++v) {
    if (!losses[v] || losses[v]->crossover != Crossover::hybrid || !losses[v]->sigma_c) continue;
    notes.push_back(fmt::format("{}: σ_c = {:.3g} ({}).", experiment.variants[v],
                                *losses[v]->sigma_c, sigma_c_source(experiment, set)));
  }
  return notes.empty() ? "" : fmt::format("{}\n\n", fmt::join(notes, " "));
}

/// The reference potential of the molecular report: GFN2-xTB for a molecule read from files.
/// Null when eval.xtb_frames is 0, when psm was built without xtb, or when the system has its own
/// potential: the energy metrics then compare its energies of every frame already.
std::shared_ptr<const System> molecular_potential(const ExperimentConfig& experiment,
                                                  const ExperimentSystem& system) {
  if (experiment.xtb_frames == 0 || system.system) return nullptr;
  return xtb_reference_potential(system.species, nullptr, [](const std::string& why) {
    say(fmt::format("  note: no xTB energy W1: {}", why));
  });
}

/// Where the energy metrics come from, as a sentence of the report; empty for model systems.
std::string energies_note(const ExperimentSystem& system) {
  if (!system.system) {
    return " No potential evaluates the reference data's level of theory, so generated samples "
           "have no energy metrics (–); the molecular metrics compare them.";
  }
  if (!system.molecular()) return "";
  return fmt::format(
      " Energies are the system's own ({}) of every frame, generated ones included; samples it "
      "cannot evaluate are left out of energy W1 and W2 and count as outliers.",
      system.system->name());
}

/// The loss plots of the variants of `set` with a checkpoint, as figures of its report.
std::vector<Figure> loss_figures(const ExperimentRun& run, size_t set, const fs::path& dir,
                                 const std::vector<std::optional<LossOptions>>& losses) {
  std::vector<Figure> figures;
  for (const ModelSlot& slot : run.models) {
    if (slot.set != set || !losses[slot.variant]) continue;
    const LossOptions& loss = *losses[slot.variant];
    const std::string& variant = run.variant_of(slot);
    const SigmaBands bands(loss.schedule.sigma_min, loss.schedule.sigma_max);
    const std::string png = "loss_" + variant + ".png";
    plot_lines(dir / png, band_loss_curves(slot.checkpoint->parent_path() / "metrics.jsonl", bands),
               {.title = fmt::format("training loss per noise band: {} on {}", variant,
                                     run.set_of(slot).name),
                .x_label = "training step",
                .y_label = "loss"});
    figures.push_back({fmt::format("training loss per noise band ({})", variant), png});
  }
  return figures;
}

/// How far the model of `slot`, which has no samples, got: "not trained", "partial: step 1000 of
/// 8000" (a later `psm run --only` resumes it) or "trained, not sampled".
std::string training_status(const ExperimentRun& run, const ModelSlot& slot) {
  if (!slot.checkpoint) return "not trained";
  const int64_t step = read_checkpoint_info(*slot.checkpoint).step;
  const int64_t steps =
      read_run_config(training_config(run.experiment, run.set_of(slot),
                                      run.set_files[slot.set].string(), run.variant_of(slot)))
          .trainer.steps;
  return step < steps ? fmt::format("partial: step {} of {}", step, steps)
                      : std::string("trained, not sampled");
}

/// The weights of the last of `models` (its ESS and energy means) into result.weighted and, unless
/// they are degenerate, the samples reweighted as the next row.
void add_reweighted(std::vector<NamedSamples>& models, const torch::Tensor& log_weights,
                    const Samples& reference, const ExperimentConfig& experiment,
                    SetEvaluation& result) {
  const NamedSamples& model = models.back();
  WeightedMetrics weighted = compute_weighted_metrics(model.samples, log_weights, reference,
                                                      experiment.metrics, experiment.min_ess);
  std::optional<NamedSamples> reweighted = reweighted_samples(model, log_weights, weighted);
  result.weighted.push_back({model.name, std::move(weighted)});
  if (reweighted) models.push_back(std::move(*reweighted));
}

}  // namespace

void evaluate_stage(ExperimentRun& run) {
  say("[5/5] evaluation");
  const ExperimentConfig& experiment = run.experiment;
  const ExperimentSystem& system = *run.system;
  const bool from_files = !experiment.reference.pool_files.empty();
  const Samples reference = samples_for_metrics(run.test, system.system.get());
  // The noise floor: frames of the pool (independent of the test set) against the test set, as
  // many as the test set has. Drawn at random: consecutive pool frames come from few chains (or
  // one trajectory) and are correlated.
  const Dataset floor =
      limited_subset(run.pool, std::min(run.pool.num_frames(), run.test.num_frames()),
                     derive_seed(experiment.seed, kTestStream));
  // Named after how the independent set was made: MCMC (model systems) or Langevin MD
  // (molecules), or drawn from the pool files.
  const bool dynamics = system.system && sampler_preset(*system.system).sampler == "langevin";
  Evaluation& evaluation = run.evaluation;
  evaluation.floor_name = from_files ? "pool" : dynamics ? "md" : "mcmc";
  evaluation.floor_description =
      from_files ? fmt::format("{} random frames of the training pool (reference/pool.npz)",
                               floor.num_frames())
                 : fmt::format("an independent {} set of the test set's size",
                               dynamics ? "Langevin MD" : "MCMC");
  evaluation.energies_note = energies_note(system);
  std::optional<MolecularReportOptions> molecular;
  if (system.molecular()) {
    molecular = MolecularReportOptions{.species = system.species,
                                       .potential = molecular_potential(experiment, system),
                                       .potential_frames = experiment.xtb_frames};
  }
  evaluation.molecular = molecular.has_value();
  for (size_t i = 0; i < experiment.sets.size(); ++i) {
    const TrainingSetSpec& set = experiment.sets[i];
    const fs::path dir = run.options.out / "report" / set.name;
    fs::create_directories(dir);
    SetEvaluation result;
    std::vector<NamedSamples> models{
        {evaluation.floor_name, samples_for_metrics(floor, system.system.get())}};
    for (const ModelSlot& slot : run.models) {
      if (slot.set != i) continue;
      result.losses.push_back(slot.checkpoint
                                  ? std::optional(read_checkpoint_info(*slot.checkpoint).loss)
                                  : std::nullopt);
      const std::string name = set.name + "/" + run.variant_of(slot);
      if (slot.samples) {
        models.push_back(
            {run.variant_of(slot), samples_for_metrics(*slot.samples, system.system.get())});
        if (slot.samples->log_weights.defined()) {
          add_reweighted(models, slot.samples->log_weights, reference, experiment, result);
        }
      } else if (slot.failure.empty()) {
        result.missing.push_back(fmt::format("{} ({})", name, training_status(run, slot)));
      } else {
        result.failed.push_back(fmt::format("{} ({})", name, slot.failure));
      }
    }
    ReportOptions report;
    report.title =
        fmt::format("{}: training set {} ({})", experiment.name, set.name, to_string(set.kind));
    report.units = system.units;
    report.metrics = experiment.metrics;
    report.plots = run.options.plots;
    report.molecular = molecular;
    report.context = {
        {"experiment", experiment.name}, {"set", set.name}, {"kind", to_string(set.kind)}};
    if (run.options.plots) report.extra_figures = loss_figures(run, i, dir, result.losses);
    result.rows = write_report(dir, reference, models, report);
    evaluation.sets.push_back(std::move(result));
  }
}

void report_stage(ExperimentRun& run) {
  const ExperimentConfig& experiment = run.experiment;
  const ExperimentSystem& system = *run.system;
  const Evaluation& evaluation = run.evaluation;
  std::string summary = fmt::format("# psm run: {}\n\n", experiment.name);
  summary += fmt::format(
      "System {} at {}; {} generated samples per model against {} independent reference "
      "samples (reference/test.npz). The row `{}` is {} against the same test set: the noise "
      "floor.{}\n\n",
      system.name, describe_temperature(system), experiment.sample_count, run.test.num_frames(),
      evaluation.floor_name, evaluation.floor_description, evaluation.energies_note);
  summary += thermometer_note(run.test);
  nlohmann::json all_metrics = nlohmann::json::object();
  for (size_t i = 0; i < experiment.sets.size(); ++i) {
    const TrainingSetSpec& set = experiment.sets[i];
    const SetEvaluation& result = evaluation.sets[i];
    const std::string frames =
        run.set_frames[i] > 0 ? fmt::format("{} frames", run.set_frames[i]) : "not made yet";
    summary += fmt::format(
        "## {} ({}, {})\n\n{}\n{}{}{}{}{}[report]({}/report.md)\n\n", set.name, to_string(set.kind),
        frames, metrics_table(result.rows, system.units),
        result.weighted.empty()
            ? ""
            : fmt::format("Importance weights exp(−U/kT) / q(x) of the models' samples (log q "
                          "by the probability-flow ODE); the rows \"reweighted\" above use them, "
                          "unless the Kish ESS is below {:.3g} (degenerate).\n\n{}\n",
                          experiment.min_ess,
                          importance_weights_table(result.weighted, system.units)),
        evaluation.molecular ? molecular_table(result.rows) + "\n" : "",
        crossover_note(experiment, set, result.losses),
        result.missing.empty() ? ""
                               : fmt::format("Not run yet: {} (`psm run --only`).\n\n",
                                             fmt::join(result.missing, ", ")),
        result.failed.empty()
            ? ""
            : fmt::format("Sampling failed, no row: {}.\n\n", fmt::join(result.failed, "; ")),
        (fs::path("report") / set.name).string());
    for (const auto& row : result.rows) {
      run.result.rows.push_back({set.name, row.name, row.metrics, row.molecular});
      nlohmann::json& entry = all_metrics[set.name][row.name];
      entry = row.metrics.to_json();
      if (row.molecular) entry["molecular"] = row.molecular->to_json(system.species);
    }
    for (const auto& [name, weighted] : result.weighted) {
      all_metrics[set.name][name]["importance_weights"] = weighted.to_json();
    }
  }
  run.result.report = run.options.out / "report.md";
  write_text_atomically(run.result.report, summary);
  write_text_atomically(run.options.out / "metrics.json", all_metrics.dump(2) + "\n");
}

}  // namespace psm::stages
