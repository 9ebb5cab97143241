#include "psm/experiment/pipeline.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>

#include "psm/core/atomic_file.h"
#include "psm/core/error.h"
#include "psm/core/progress.h"
#include "psm/core/random.h"
#include "psm/data/subsets.h"
#include "psm/eval/plots.h"
#include "psm/eval/report.h"
#include "psm/io/dataset.h"
#include "psm/simulate/simulation.h"
#include "psm/systems/labelling.h"
#include "psm/train/callbacks.h"
#include "psm/train/checkpoint.h"
#include "psm/train/run_config.h"
#include "psm/train/trainer.h"

namespace psm {

namespace fs = std::filesystem;

namespace {

// Seed streams of the stages, so that each draws independently of the others.
constexpr uint64_t kPoolStream = 0x706f6f6c;    // "pool"
constexpr uint64_t kTestStream = 0x74657374;    // "test"
constexpr uint64_t kSetStream = 0x73657473;     // "sets"
constexpr uint64_t kSampleStream = 0x736d706c;  // "smpl"

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void say(const std::string& line) {
  fmt::print("{}\n", line);
  std::fflush(stdout);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Makes the run directory, or checks that an existing one belongs to this configuration.
void prepare_directory(const ExperimentConfig& experiment, const RunOptions& options) {
  const fs::path marker = options.out / "experiment.toml";
  const std::string toml = experiment.config.to_toml();
  if (fs::exists(options.out) && !fs::is_empty(options.out)) {
    check(fs::exists(marker),
          fmt::format("{} exists and is not a psm run directory (no experiment.toml): choose "
                      "another --out",
                      options.out.string()));
    if (options.fresh) {
      for (const char* stage : {"reference", "sets", "models", "samples", "report"}) {
        fs::remove_all(options.out / stage);
      }
      for (const char* file : {"report.md", "metrics.json"}) fs::remove(options.out / file);
    } else {
      check(read_text(marker) == toml,
            fmt::format("{} was made with another configuration: pass --fresh to redo it, or "
                        "choose another --out",
                        options.out.string()));
    }
  }
  fs::create_directories(options.out);
  write_text_atomically(marker, toml);
}

/// Loads `file` when it exists, else makes it with `make` and saves it.
template <class Make>
Dataset cached_dataset(const fs::path& file, const std::string& what, const Make& make) {
  if (fs::exists(file)) {
    Dataset data = load_dataset(file);
    say(fmt::format("  {:<28} {} frames (exists: {})", what, data.num_frames(), file.string()));
    return data;
  }
  const auto start = std::chrono::steady_clock::now();
  Dataset data = make();
  fs::create_directories(file.parent_path());
  save_dataset(file, data);
  say(fmt::format("  {:<28} {} frames in {:.0f} s -> {}", what, data.num_frames(),
                  seconds_since(start), file.string()));
  return data;
}

/// The first `frames` frames of a reference file, after checking that it holds samples of
/// `system` at `kT`; labelled with the system's energies and forces when it lacks them.
Dataset matching_reference(const Dataset& data, const std::string& file, const System& system,
                           double kT, int64_t frames) {
  check(data.num_atoms() == system.num_atoms() && data.dim() == system.dim(),
        fmt::format("{}: {} atoms in {}-D, but {} has {} in {}-D", file, data.num_atoms(),
                    data.dim(), system.name(), system.num_atoms(), system.dim()));
  check(std::abs(data.sampled_kT.value_or(data.kT) - kT) <= 1e-9 * kT,
        fmt::format("{}: sampled at kT = {:g}, the experiment's kT is {:g}", file,
                    data.sampled_kT.value_or(data.kT), kT));
  check(data.num_frames() >= frames,
        fmt::format("{}: {} frames, the experiment asks for {}", file, data.num_frames(), frames));
  Dataset selected = data.select(torch::arange(frames));
  if (!selected.has_forces() || !selected.has_energies()) {
    check(label_dataset(system, selected) == 0,
          fmt::format("{}: some frames have non-finite energies or forces", file));
  }
  return selected;
}

SimulationSettings reference_settings(const ExperimentConfig& experiment, double kT,
                                      int64_t samples, uint64_t seed, bool progress) {
  const ReferenceSpec& spec = experiment.reference;
  SimulationSettings settings;
  settings.kT = kT;
  settings.samples = samples;
  settings.chains = spec.chains;
  settings.burn_in = spec.burn_in;
  settings.thin = spec.thin;
  settings.seed = seed;
  settings.progress = progress;
  return settings;
}

Dataset make_training_set(const ExperimentConfig& experiment, const TrainingSetSpec& set,
                          size_t index, const System& system, const Dataset& pool, bool progress) {
  const uint64_t seed = derive_seed(derive_seed(experiment.seed, kSetStream), index);
  if (set.kind == "limited") return limited_subset(pool, set.frames, seed);
  if (set.kind == "temperature") {
    const SimulationOutcome hot =
        simulate(system, reference_settings(experiment, *set.kT_data, set.frames, seed, progress));
    return temperature_biased_subset(hot.dataset, experiment.kT, std::nullopt, seed);
  }
  if (set.kind == "basin") {
    BasinOptions basin;
    basin.frames = set.frames;
    basin.kT = set.kT_data;
    basin.seed = seed;
    return basin_biased_subset(system, pool, basin);
  }
  const Dataset selected = energy_selected_subset(pool, {.quantile = set.quantile});
  return limited_subset(selected, std::min(set.frames, selected.num_frames()), seed);
}

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

/// Trains (or finishes training) one model into `dir`; returns its checkpoint.
fs::path train_model(const ExperimentConfig& experiment, const fs::path& set_file,
                     const std::string& variant, const fs::path& dir, const RunOptions& options) {
  const fs::path checkpoint = dir / "checkpoint.pt";
  const Config config = training_config(experiment, set_file.string(), variant);
  const RunConfig run = read_run_config(config);
  const bool exists = fs::exists(checkpoint);
  if (exists && read_checkpoint_info(checkpoint).step >= run.trainer.steps) {
    say(fmt::format("  {:<28} trained (exists: {})", variant, checkpoint.string()));
    return checkpoint;
  }
  fs::create_directories(dir);
  const std::string config_text = config.to_toml();
  write_text_atomically(dir / "config.toml", config_text);
  const Dataset data = load_dataset(set_file);
  Trainer trainer(data, run.network, run.loss, run.trainer,
                  {.config_toml = config_text, .data_source = set_file.string()});
  if (exists) trainer.resume(checkpoint);
  add_run_directory_callbacks(trainer, dir, options.progress);
  const int64_t first_step = trainer.step_count();
  const auto start = std::chrono::steady_clock::now();
  trainer.train();
  say(fmt::format("  {:<28} {} steps in {:.0f} s{} -> {}", variant,
                  trainer.step_count() - first_step, seconds_since(start),
                  exists ? fmt::format(" (resumed at step {})", first_step) : "",
                  checkpoint.string()));
  return checkpoint;
}

/// Samples a trained model into `file`, labelled with the system's energies and forces.
Dataset sample_model(const ExperimentConfig& experiment, const fs::path& checkpoint,
                     const System& system, uint64_t seed, const std::string& what, bool progress) {
  const TrainedModel trained = load_trained_model(checkpoint);
  SamplerOptions sampler = experiment.sampler;
  sampler.sigma_min = trained.info.loss.schedule.sigma_min;
  sampler.sigma_max = trained.info.loss.schedule.sigma_max;
  sampler.com_free = trained.info.loss.com_free;
  sampler.seed = seed;
  std::unique_ptr<ProgressBar> bar;
  Dataset samples;
  samples.positions =
      sample_diffusion(trained.score(), experiment.sample_count, system.num_atoms(), system.dim(),
                       sampler, torch::kFloat64, [&](int64_t done, int64_t total) {
                         if (!bar) {
                           bar = std::make_unique<ProgressBar>("sample " + what, total, progress);
                         }
                         bar->update(done);
                       });
  if (bar) bar->finish();
  check(torch::isfinite(samples.positions).all().item<bool>(),
        fmt::format("{}: sampling produced non-finite positions (try more sample.steps)",
                    checkpoint.string()));
  samples.species = system.species();
  samples.units = system.units();
  samples.kT = experiment.kT;
  samples.system = system.spec();
  samples.provenance = {{"command", "psm run"},
                        {"checkpoint", checkpoint.string()},
                        {"solver", to_string(sampler.solver)},
                        {"steps", sampler.steps},
                        {"seed", seed}};
  const int64_t clashes = label_dataset(system, samples);
  if (clashes > 0) {
    say(fmt::format("  note: {} of {} samples of {} have non-finite energies (clashing atoms)",
                    clashes, samples.num_frames(), what));
  }
  return samples;
}

/// Energies for the metrics: the stored ones, or computed (non-finite ones kept: they are
/// outliers and count against the model).
Samples samples_for_metrics(const Dataset& data, const System& system) {
  const torch::Tensor energies = data.has_energies()
                                     ? data.energies
                                     : torch::nan_to_num(batched_energies(system, data.positions),
                                                         std::numeric_limits<double>::max());
  return {data.positions.to(torch::kFloat64), energies.to(torch::kFloat64)};
}

}  // namespace

ExperimentResult run_experiment(const ExperimentConfig& experiment, const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  prepare_directory(experiment, options);
  const std::unique_ptr<System> system = make_system(experiment.system);
  const fs::path out = options.out;

  say(fmt::format("[1/5] reference samples of {} at kT = {:g}", system->name(), experiment.kT));
  const ReferenceSpec& spec = experiment.reference;
  const Dataset pool = cached_dataset(out / "reference" / "pool.npz", "training pool", [&] {
    if (!spec.pool_file.empty()) {
      return matching_reference(load_dataset(spec.pool_file), spec.pool_file, *system,
                                experiment.kT, spec.samples);
    }
    return simulate(*system,
                    reference_settings(experiment, experiment.kT, spec.samples,
                                       derive_seed(experiment.seed, kPoolStream), options.progress))
        .dataset;
  });
  const Dataset test = cached_dataset(out / "reference" / "test.npz", "test set", [&] {
    if (!spec.test_file.empty()) {
      return matching_reference(load_dataset(spec.test_file), spec.test_file, *system,
                                experiment.kT, spec.test_samples);
    }
    const uint64_t seed = derive_seed(derive_seed(experiment.seed, kTestStream), spec.test_seed);
    return simulate(*system, reference_settings(experiment, experiment.kT, spec.test_samples, seed,
                                                options.progress))
        .dataset;
  });

  say("[2/5] training sets");
  std::vector<fs::path> set_files;
  for (size_t i = 0; i < experiment.sets.size(); ++i) {
    const TrainingSetSpec& set = experiment.sets[i];
    set_files.push_back(out / "sets" / (set.name + ".npz"));
    cached_dataset(set_files.back(), set.name + " (" + set.kind + ")", [&] {
      return make_training_set(experiment, set, i, *system, pool, options.progress);
    });
  }

  say("[3/5] training");
  std::vector<std::vector<fs::path>> checkpoints(experiment.sets.size());
  for (size_t i = 0; i < experiment.sets.size(); ++i) {
    say(fmt::format("  set {}", experiment.sets[i].name));
    for (const auto& variant : experiment.variants) {
      checkpoints[i].push_back(train_model(experiment, set_files[i], variant,
                                           out / "models" / experiment.sets[i].name / variant,
                                           options));
    }
  }

  say("[4/5] sampling");
  std::vector<std::vector<Dataset>> generated(experiment.sets.size());
  for (size_t i = 0; i < experiment.sets.size(); ++i) {
    for (size_t v = 0; v < experiment.variants.size(); ++v) {
      const std::string what = experiment.sets[i].name + "_" + experiment.variants[v];
      const uint64_t seed = derive_seed(derive_seed(experiment.seed, kSampleStream), i * 1000 + v);
      generated[i].push_back(cached_dataset(out / "samples" / (what + ".npz"), what, [&] {
        return sample_model(experiment, checkpoints[i][v], *system, seed, what, options.progress);
      }));
    }
  }

  say("[5/5] evaluation");
  ExperimentResult result;
  const Samples reference = samples_for_metrics(test, *system);
  // The noise floor: an independent MCMC set of the test set's size against the test set.
  // Drawn at random: consecutive pool frames come from few chains and are correlated.
  const Dataset floor = limited_subset(pool, std::min(pool.num_frames(), test.num_frames()),
                                       derive_seed(experiment.seed, kTestStream));
  std::string summary = fmt::format("# psm run: {}\n\n", experiment.name);
  summary += fmt::format(
      "System {} at kT = {:g}; {} generated samples per model against {} independent reference "
      "samples (reference/test.npz). The row `mcmc` is an independent MCMC set of the same size: "
      "the noise floor.\n\n",
      system->name(), experiment.kT, experiment.sample_count, test.num_frames());
  nlohmann::json all_metrics = nlohmann::json::object();
  for (size_t i = 0; i < experiment.sets.size(); ++i) {
    const TrainingSetSpec& set = experiment.sets[i];
    const fs::path dir = out / "report" / set.name;
    fs::create_directories(dir);
    std::vector<NamedSamples> models{{"mcmc", samples_for_metrics(floor, *system)}};
    for (size_t v = 0; v < experiment.variants.size(); ++v) {
      models.push_back({experiment.variants[v], samples_for_metrics(generated[i][v], *system)});
    }
    ReportOptions report;
    report.title = fmt::format("{}: training set {} ({})", experiment.name, set.name, set.kind);
    report.units = system->units();
    report.metrics = experiment.metrics;
    report.plots = options.plots;
    report.context = {{"experiment", experiment.name}, {"set", set.name}, {"kind", set.kind}};
    if (options.plots) {
      for (size_t v = 0; v < experiment.variants.size(); ++v) {
        const CheckpointInfo info = read_checkpoint_info(checkpoints[i][v]);
        const SigmaBands bands(info.loss.schedule.sigma_min, info.loss.schedule.sigma_max);
        const std::string png = "loss_" + experiment.variants[v] + ".png";
        plot_lines(dir / png,
                   band_loss_curves(checkpoints[i][v].parent_path() / "metrics.jsonl", bands),
                   {.title = fmt::format("training loss per noise band: {} on {}",
                                         experiment.variants[v], set.name),
                    .x_label = "training step",
                    .y_label = "loss"});
        report.extra_figures.push_back(
            {fmt::format("training loss per noise band ({})", experiment.variants[v]), png});
      }
    }
    const std::vector<ModelMetrics> rows = write_report(dir, reference, models, report);
    summary += fmt::format("## {} ({}, {} frames)\n\n{}\n[report]({}/report.md)\n\n", set.name,
                           set.kind, set.frames, metrics_table(rows, system->units()),
                           (fs::path("report") / set.name).string());
    for (const auto& row : rows) {
      result.rows.push_back({set.name, row.name, row.metrics});
      all_metrics[set.name][row.name] = row.metrics.to_json();
    }
  }
  result.report = out / "report.md";
  write_text_atomically(result.report, summary);
  write_text_atomically(out / "metrics.json", all_metrics.dump(2) + "\n");
  say(fmt::format("done in {:.0f} s", seconds_since(start)));
  return result;
}

}  // namespace psm
