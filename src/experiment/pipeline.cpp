#include "psm/experiment/pipeline.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <unordered_set>

#include "psm/core/atomic_file.h"
#include "psm/core/elements.h"
#include "psm/core/error.h"
#include "psm/core/progress.h"
#include "psm/core/random.h"
#include "psm/core/remove_tree.h"
#include "psm/data/force_check.h"
#include "psm/data/subsets.h"
#include "psm/diffusion/schedule.h"
#include "psm/eval/plots.h"
#include "psm/eval/report.h"
#include "psm/io/dataset.h"
#include "psm/io/npy.h"
#include "psm/simulate/presets.h"
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
        remove_tree(options.out / stage);
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

/// The sampler state beside a simulated dataset file while it is being made.
fs::path state_file_of(const fs::path& file) { return fs::path(file).replace_extension(".state"); }

/// Loads `file` when it exists, else makes it with `make` and saves it. The saved file
/// supersedes the state of the simulation that made it, if any.
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
  fs::remove(state_file_of(file));
  say(fmt::format("  {:<28} {} frames in {:.0f} s -> {}", what, data.num_frames(),
                  seconds_since(start), file.string()));
  return data;
}

/// The system the stages work on: built from [system], or, without it, described by the pool's
/// frames and without a potential (energies and forces then come from the data only).
struct ExperimentSystem {
  std::unique_ptr<System> system;  ///< with its potential; null without [system]
  std::string name;
  std::vector<int64_t> species;
  int64_t dim = 3;
  Units units = Units::reduced;
  double kT = 1.0;
  std::optional<double> kelvin{};  ///< the temperature in K, for molecules

  int64_t num_atoms() const { return static_cast<int64_t>(species.size()); }
  /// Real elements in Å and kcal/mol: the molecular metrics apply.
  bool molecular() const { return is_molecular(units, dim, species); }
};

ExperimentSystem system_from_spec(const nlohmann::json& spec, const Temperature& temperature) {
  ExperimentSystem out;
  out.system = make_system(spec);
  out.species = out.system->species();
  // "xtb" alone does not say which molecule.
  out.name = out.system->units() == Units::kcal_mol_angstrom
                 ? fmt::format("{} ({})", chemical_formula(out.species), out.system->name())
                 : out.system->name();
  out.dim = out.system->dim();
  out.units = out.system->units();
  out.kT = temperature.kT;
  out.kelvin = temperature.kelvin;
  return out;
}

ExperimentSystem system_from_data(const Dataset& pool) {
  return {.system = nullptr,
          .name = chemical_formula(pool.species),
          .species = pool.species,
          .dim = pool.dim(),
          .units = pool.units,
          .kT = pool.kT,
          .kelvin = pool.temperature_kelvin};
}

/// "kT = 1" or "T = 500 K (kT = 0.99360 kcal/mol)".
std::string describe_temperature(const ExperimentSystem& system) {
  if (system.kelvin) {
    return fmt::format("T = {:g} K (kT = {:.5f} {})", *system.kelvin, system.kT,
                       energy_unit(system.units));
  }
  return fmt::format("kT = {:g}", system.kT);
}

/// Frames simulated at `kT` by the system's sampler, with their temperature in K for molecules
/// (as `psm simulate` writes them). After its burn-in the sampler saves its state beside `file`
/// (state_file_of) about every 5 % of the frames, and an interrupted run resumes from there: a
/// long reference (hours of xTB MD for a peptide) loses little to an interruption.
Dataset simulated(const ExperimentSystem& system, SimulationSettings settings,
                  const fs::path& file) {
  settings.checkpoint = state_file_of(file);
  settings.checkpoint_every = std::max<int64_t>(1, settings.samples / 20);
  settings.resume = fs::exists(settings.checkpoint);
  if (settings.resume) say(fmt::format("  resuming from {}", settings.checkpoint.string()));
  fs::create_directories(file.parent_path());
  Dataset data;
  try {
    data = simulate(*system.system, settings).dataset;
  } catch (const Error& e) {
    const bool about_state = std::string(e.what()).find(settings.checkpoint.string()) == 0;
    if (!settings.resume || !about_state) throw;
    throw Error(
        fmt::format("{} (the state of an interrupted run: delete it, or pass --fresh)", e.what()));
  }
  if (system.units == Units::kcal_mol_angstrom) {
    data.temperature_kelvin = settings.kT / constants::boltzmann_kcal_mol_per_kelvin;
  }
  return data;
}

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

SimulationSettings reference_settings(const ExperimentConfig& experiment, double kT,
                                      int64_t samples, uint64_t seed, const RunOptions& options) {
  const ReferenceSpec& spec = experiment.reference;
  SimulationSettings settings;
  settings.kT = kT;
  settings.samples = samples;
  settings.chains = spec.chains;
  settings.burn_in = spec.burn_in;
  settings.thin = spec.thin;
  settings.seed = seed;
  // A molecule starts from its file's geometry (lattice placements of its atoms would be no
  // molecule); other systems from the sampler's default.
  settings.initial_positions = experiment.start;
  settings.progress = options.progress;
  settings.device = options.device;
  return settings;
}

/// Kinds temperature and basin sample new frames: read_experiment_config lets them through only
/// with a [system], whose potential they use.
Dataset make_training_set(const ExperimentConfig& experiment, const TrainingSetSpec& set,
                          size_t index, const ExperimentSystem& system, const Dataset& pool,
                          const fs::path& file, const RunOptions& options) {
  const uint64_t seed = derive_seed(derive_seed(experiment.seed, kSetStream), index);
  if (set.kind == "limited") {
    check(set.frames <= pool.num_frames(),
          fmt::format("set {}: frames = {} exceeds the pool's {} frames", set.name, set.frames,
                      pool.num_frames()));
    return limited_subset(pool, set.frames, seed);
  }
  if (set.kind == "temperature") {
    const Dataset hot = simulated(
        system, reference_settings(experiment, *set.kT_data, set.frames, seed, options), file);
    return temperature_biased_subset(hot, system.kT, std::nullopt, seed);
  }
  if (set.kind == "basin") {
    BasinOptions basin;
    basin.frames = set.frames;
    basin.kT = set.kT_data;
    basin.seed = seed;
    return basin_biased_subset(*system.system, pool, basin);
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

/// Trains (or finishes training) one model into `dir`; returns its checkpoint.
fs::path train_model(const ExperimentConfig& experiment, const TrainingSetSpec& set,
                     const fs::path& set_file, const std::string& variant, const fs::path& dir,
                     const RunOptions& options) {
  const fs::path checkpoint = dir / "checkpoint.pt";
  const Config config = training_config(experiment, set, set_file.string(), variant);
  const RunConfig run = read_run_config(config);
  const bool exists = fs::exists(checkpoint);
  if (exists && read_checkpoint_info(checkpoint).step >= run.trainer.steps) {
    say(fmt::format("  {:<28} trained (exists: {})", variant, checkpoint.string()));
    return checkpoint;
  }
  fs::create_directories(dir);
  const std::string config_text = config.to_toml();
  write_text_atomically(dir / "config.toml", config_text);
  const Dataset data = load_dataset(set_file).to(options.device);
  // diffusion.sigma_max has a fixed default; say so when it does not cover the data, as psm train.
  const double extent = suggest_sigma_max(data.positions, run.loss.com_free);
  if (run.loss.schedule.sigma_max < extent) {
    say(
        fmt::format("  note: diffusion.sigma_max = {:g} is below the largest distance between "
                    "training configurations, {:.3g} (Song & Ermon's choice of sigma_max); raise "
                    "it if samples miss modes",
                    run.loss.schedule.sigma_max, extent));
  }
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

/// Every sample of a model diverged: the run reports the model as failed and goes on.
class SamplesDiverged : public Error {
  using Error::Error;
};

/// Beside a model's samples file: why its sampling failed, so that reruns report the failure
/// rather than sample again (--fresh clears it).
fs::path failure_marker(const fs::path& samples_file) {
  return fs::path(samples_file).replace_extension(".failed");
}

/// Samples a trained model into `file`, labelled with the system's energies and forces.
/// Without a potential (no [system]) the samples have positions only.
Dataset sample_model(const ExperimentConfig& experiment, const fs::path& checkpoint,
                     const ExperimentSystem& system, uint64_t seed, const std::string& what,
                     const RunOptions& options) {
  const TrainedModel trained = load_trained_model(checkpoint, options.device);
  SamplerOptions sampler = experiment.sampler;
  sampler.sigma_min = trained.info.loss.schedule.sigma_min;
  sampler.sigma_max = trained.info.loss.schedule.sigma_max;
  sampler.com_free = trained.info.loss.com_free;
  sampler.seed = seed;
  std::unique_ptr<ProgressBar> bar;
  Dataset samples;
  samples.positions =
      sample_diffusion(trained.score(), experiment.sample_count, system.num_atoms(), system.dim,
                       sampler, torch::dtype(torch::kFloat64).device(options.device),
                       [&](int64_t done, int64_t total) {
                         if (!bar) {
                           bar = std::make_unique<ProgressBar>("sample " + what, total,
                                                               options.progress);
                         }
                         bar->update(done);
                       })
          .cpu();
  if (bar) bar->finish();
  const int64_t drawn = samples.positions.size(0);
  samples.positions = finite_samples(samples.positions);
  const int64_t diverged = drawn - samples.positions.size(0);
  if (diverged == drawn) {
    throw SamplesDiverged(
        "every sample diverged (non-finite positions): try more sample.steps, or retrain");
  }
  if (diverged > 0) {
    say(
        fmt::format("  note: {} of {} samples of {} diverged (non-finite positions) and are left "
                    "out; the report counts the rest (try more sample.steps)",
                    diverged, drawn, what));
  }
  samples.species = system.species;
  samples.units = system.units;
  samples.kT = system.kT;
  samples.temperature_kelvin = system.kelvin;
  if (system.system) samples.system = system.system->spec();
  samples.provenance = {{"command", "psm run"},
                        {"checkpoint", checkpoint.string()},
                        {"solver", to_string(sampler.solver)},
                        {"steps", sampler.steps},
                        {"corrector_steps", sampler.corrector_steps},
                        {"snr", sampler.snr},
                        {"corrector_sigma_min", sampler.corrector_sigma_min},
                        {"corrector_max_step", sampler.corrector_max_step},
                        {"seed", seed},
                        {"diverged", diverged}};
  if (!system.system) return samples;
  const int64_t failed = label_dataset(*system.system, samples);
  if (failed > 0) {
    say(fmt::format("  note: {} of {} samples of {} have no finite energy (clashing atoms{})",
                    failed, samples.num_frames(), what,
                    system.units == Units::kcal_mol_angstrom ? ", or xtb failed on them" : ""));
  }
  return samples;
}

/// Energies for the metrics: the stored ones, or computed, or none without a potential. Infinite
/// energies (overlapping particles) become the largest double and count against the model in
/// energy W1 and W2; frames the potential cannot evaluate stay NaN, which the metrics leave out
/// of W1 and W2 and count as outliers.
Samples samples_for_metrics(const Dataset& data, const ExperimentSystem& system) {
  torch::Tensor energies = data.energies;
  if (!data.has_energies() && system.system) {
    energies = energies_or_nan(*system.system, data.positions);
  }
  return {data.positions.to(torch::kFloat64),
          energies.defined() ? energies.to(torch::kFloat64) : energies,
          data.has_forces() ? data.forces.to(torch::kFloat64) : torch::Tensor()};
}

/// The reference potential of the molecular report: GFN2-xTB for a molecule read from files.
/// Null when eval.xtb_frames is 0, when psm was built without xtb, or when the system has its own
/// potential: the energy metrics then compare its energies of every frame already.
std::shared_ptr<const System> molecular_potential(const ExperimentConfig& experiment,
                                                  const ExperimentSystem& system) {
  if (experiment.xtb_frames == 0 || system.system) return nullptr;
  try {
    return make_system({{"name", "xtb"}, {"species", system.species}});
  } catch (const Error& error) {
    say(fmt::format("  note: no xTB energy W1: {}", error.what()));
    return nullptr;
  }
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

/// Checks before anything is written, so that a mistyped path leaves no run directory behind.
void check_reference_files(const ReferenceSpec& spec) {
  for (const auto& [files, key] :
       {std::pair{&spec.pool_files, "pool"}, {&spec.test_files, "test"}}) {
    for (const auto& file : *files) {
      check(fs::is_regular_file(file),
            fmt::format("{}: reference.{} file not found (relative paths start at "
                        "reference.directory, else at the current directory)",
                        file, key));
    }
  }
}

/// selected[set][variant]: whether this run makes that model (RunOptions::only; all when empty).
/// Checked before anything is written, so that a mistyped name leaves no run directory behind.
std::vector<std::vector<bool>> selected_models(const ExperimentConfig& experiment,
                                               const std::vector<std::string>& only) {
  const auto& sets = experiment.sets;
  const auto& variants = experiment.variants;
  std::vector<std::vector<bool>> selected(sets.size(),
                                          std::vector<bool>(variants.size(), only.empty()));
  std::vector<std::string> set_names;
  for (const auto& set : sets) set_names.push_back(set.name);
  for (const auto& choice : only) {
    const size_t slash = choice.find('/');
    const std::string set_name = choice.substr(0, slash);
    const auto set = std::ranges::find(set_names, set_name);
    check(set != set_names.end(), fmt::format("--only {}: no set named '{}' (sets: {})", choice,
                                              set_name, fmt::join(set_names, ", ")));
    std::vector<bool>& chosen = selected[set - set_names.begin()];
    if (slash == std::string::npos) {
      std::fill(chosen.begin(), chosen.end(), true);
      continue;
    }
    const std::string variant = choice.substr(slash + 1);
    const auto found = std::ranges::find(variants, variant);
    check(found != variants.end(), fmt::format("--only {}: no variant '{}' (variants: {})", choice,
                                               variant, fmt::join(variants, ", ")));
    chosen[found - variants.begin()] = true;
  }
  return selected;
}

bool any_selected(const std::vector<bool>& variants) {
  return std::ranges::find(variants, true) != variants.end();
}

}  // namespace

ExperimentResult run_experiment(const ExperimentConfig& experiment, const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  check_reference_files(experiment.reference);
  const std::vector<std::vector<bool>> selected = selected_models(experiment, options.only);
  prepare_directory(experiment, options);
  const fs::path out = options.out;
  const ReferenceSpec& spec = experiment.reference;
  std::optional<ExperimentSystem> system;
  if (experiment.system.is_object()) {
    system = system_from_spec(experiment.system, *experiment.temperature);
  }

  say(system ? fmt::format("[1/5] reference samples of {} at {}", system->name,
                           describe_temperature(*system))
             : "[1/5] reference samples");
  const Dataset pool = cached_dataset(out / "reference" / "pool.npz", "training pool", [&] {
    if (!spec.pool_files.empty()) {
      const Dataset frames = read_frame_files(spec.pool_files, {}, spec.labels);
      if (system) return matching_reference(frames, spec.pool_files, *system, spec.samples);
      // Without [system] the pool's frames define the system.
      return matching_reference(frames, spec.pool_files, system_from_data(frames), spec.samples);
    }
    return simulated(*system,
                     reference_settings(experiment, system->kT,
                                        spec.samples.value_or(ReferenceSpec::default_samples),
                                        derive_seed(experiment.seed, kPoolStream), options),
                     out / "reference" / "pool.npz");
  });
  if (!system) system = system_from_data(pool);
  if (!spec.pool_files.empty()) say(fmt::format("  pool from files{}", dropped_frames(pool)));
  if (pool.has_forces() && pool.num_frames() >= 2) {  // the check needs a spread of frames
    say("  force check: " + describe_force_check(virial_temperature(pool), pool.frames_kT()));
  }
  const Dataset test = cached_dataset(out / "reference" / "test.npz", "test set", [&] {
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
        reference_settings(experiment, system->kT,
                           spec.test_samples.value_or(ReferenceSpec::default_test_samples), seed,
                           options),
        out / "reference" / "test.npz");
  });
  if (!spec.test_files.empty()) say(fmt::format("  test set from files{}", dropped_frames(test)));

  say("[2/5] training sets");
  std::vector<fs::path> set_files;
  std::vector<int64_t> set_frames;
  for (size_t i = 0; i < experiment.sets.size(); ++i) {
    const TrainingSetSpec& set = experiment.sets[i];
    set_files.push_back(out / "sets" / (set.name + ".npz"));
    if (!any_selected(selected[i]) && !fs::exists(set_files.back())) {
      set_frames.push_back(0);
      continue;
    }
    set_frames.push_back(cached_dataset(set_files.back(), set.name + " (" + set.kind + ")", [&] {
                           return make_training_set(experiment, set, i, *system, pool,
                                                    set_files.back(), options);
                         }).num_frames());
  }

  if (options.data_only) {
    say(fmt::format("stopped after the training sets (data only): {}", out.string()));
    return {};
  }

  say("[3/5] training");
  // A model this run does not make still gets its checkpoint (for the loss plot) and its samples
  // into the report when an earlier run made them.
  std::vector<std::vector<std::optional<fs::path>>> checkpoints(experiment.sets.size());
  for (size_t i = 0; i < experiment.sets.size(); ++i) {
    if (any_selected(selected[i])) say(fmt::format("  set {}", experiment.sets[i].name));
    for (size_t v = 0; v < experiment.variants.size(); ++v) {
      const fs::path dir = out / "models" / experiment.sets[i].name / experiment.variants[v];
      if (selected[i][v]) {
        checkpoints[i].push_back(train_model(experiment, experiment.sets[i], set_files[i],
                                             experiment.variants[v], dir, options));
      } else if (fs::exists(dir / "checkpoint.pt")) {
        checkpoints[i].push_back(dir / "checkpoint.pt");
      } else {
        checkpoints[i].push_back(std::nullopt);
      }
    }
  }

  say("[4/5] sampling");
  std::vector<std::vector<std::optional<Dataset>>> generated(experiment.sets.size());
  // Why a model's sampling failed; empty where it did not.
  std::vector<std::vector<std::string>> why_failed(
      experiment.sets.size(), std::vector<std::string>(experiment.variants.size()));
  for (size_t i = 0; i < experiment.sets.size(); ++i) {
    for (size_t v = 0; v < experiment.variants.size(); ++v) {
      const std::string what = experiment.sets[i].name + "_" + experiment.variants[v];
      const fs::path file = out / "samples" / (what + ".npz");
      const fs::path marker = failure_marker(file);
      generated[i].push_back(std::nullopt);
      if (fs::exists(marker)) {
        why_failed[i][v] = read_text(marker);
        if (selected[i][v]) {
          say(fmt::format("  {:<28} failed before: {} ({})", what, why_failed[i][v],
                          marker.string()));
        }
        continue;
      }
      if (!selected[i][v] && !fs::exists(file)) continue;
      const uint64_t seed = derive_seed(derive_seed(experiment.seed, kSampleStream), i * 1000 + v);
      try {
        generated[i].back() = cached_dataset(file, what, [&] {
          return sample_model(experiment, *checkpoints[i][v], *system, seed, what, options);
        });
      } catch (const SamplesDiverged& diverged) {
        write_text_atomically(marker, diverged.what());
        say(fmt::format("  {:<28} failed: {}", what, diverged.what()));
        why_failed[i][v] = diverged.what();
      }
    }
  }

  say("[5/5] evaluation");
  ExperimentResult result;
  const Samples reference = samples_for_metrics(test, *system);
  // The noise floor: frames of the pool (independent of the test set) against the test set, as
  // many as the test set has. Drawn at random: consecutive pool frames come from few chains (or
  // one trajectory) and are correlated.
  const Dataset floor = limited_subset(pool, std::min(pool.num_frames(), test.num_frames()),
                                       derive_seed(experiment.seed, kTestStream));
  // Named after how the independent set was made: MCMC (model systems) or Langevin MD
  // (molecules), or drawn from the pool files.
  const bool dynamics = system->system && sampler_preset(*system->system).sampler == "langevin";
  const std::string floor_name = !spec.pool_files.empty() ? "pool" : dynamics ? "md" : "mcmc";
  std::optional<MolecularReportOptions> molecular;
  if (system->molecular()) {
    molecular = MolecularReportOptions{.species = system->species,
                                       .potential = molecular_potential(experiment, *system),
                                       .potential_frames = experiment.xtb_frames};
  }
  std::string energies_note;
  if (!system->system) {
    energies_note =
        " No potential evaluates the reference data's level of theory, so generated samples have "
        "no energy metrics (–); the molecular metrics compare them.";
  } else if (molecular) {
    energies_note = fmt::format(
        " Energies are the system's own ({}) of every frame, generated ones included; samples it "
        "cannot evaluate are left out of energy W1 and W2 and count as outliers.",
        system->system->name());
  }
  std::string summary = fmt::format("# psm run: {}\n\n", experiment.name);
  summary += fmt::format(
      "System {} at {}; {} generated samples per model against {} independent reference "
      "samples (reference/test.npz). The row `{}` is {} against the same test set: the noise "
      "floor.{}\n\n",
      system->name, describe_temperature(*system), experiment.sample_count, test.num_frames(),
      floor_name,
      spec.pool_files.empty()
          ? fmt::format("an independent {} set of the test set's size",
                        dynamics ? "Langevin MD" : "MCMC")
          : fmt::format("{} random frames of the training pool (reference/pool.npz)",
                        floor.num_frames()),
      energies_note);
  nlohmann::json all_metrics = nlohmann::json::object();
  for (size_t i = 0; i < experiment.sets.size(); ++i) {
    const TrainingSetSpec& set = experiment.sets[i];
    const fs::path dir = out / "report" / set.name;
    fs::create_directories(dir);
    std::vector<NamedSamples> models{{floor_name, samples_for_metrics(floor, *system)}};
    std::vector<std::string> missing, failed;
    for (size_t v = 0; v < experiment.variants.size(); ++v) {
      if (generated[i][v]) {
        models.push_back({experiment.variants[v], samples_for_metrics(*generated[i][v], *system)});
        continue;
      }
      const std::string model = set.name + "/" + experiment.variants[v];
      if (why_failed[i][v].empty()) {
        missing.push_back(model);
      } else {
        failed.push_back(fmt::format("{} ({})", model, why_failed[i][v]));
      }
    }
    ReportOptions report;
    report.title = fmt::format("{}: training set {} ({})", experiment.name, set.name, set.kind);
    report.units = system->units;
    report.metrics = experiment.metrics;
    report.plots = options.plots;
    report.molecular = molecular;
    report.context = {{"experiment", experiment.name}, {"set", set.name}, {"kind", set.kind}};
    std::vector<std::optional<LossOptions>> losses;
    for (const auto& checkpoint : checkpoints[i]) {
      losses.push_back(checkpoint ? std::optional(read_checkpoint_info(*checkpoint).loss)
                                  : std::nullopt);
    }
    if (options.plots) {
      for (size_t v = 0; v < experiment.variants.size(); ++v) {
        if (!losses[v]) continue;
        const SigmaBands bands(losses[v]->schedule.sigma_min, losses[v]->schedule.sigma_max);
        const std::string png = "loss_" + experiment.variants[v] + ".png";
        plot_lines(dir / png,
                   band_loss_curves(checkpoints[i][v]->parent_path() / "metrics.jsonl", bands),
                   {.title = fmt::format("training loss per noise band: {} on {}",
                                         experiment.variants[v], set.name),
                    .x_label = "training step",
                    .y_label = "loss"});
        report.extra_figures.push_back(
            {fmt::format("training loss per noise band ({})", experiment.variants[v]), png});
      }
    }
    const std::vector<ModelMetrics> rows = write_report(dir, reference, models, report);
    const std::string frames =
        set_frames[i] > 0 ? fmt::format("{} frames", set_frames[i]) : "not made yet";
    summary += fmt::format(
        "## {} ({}, {})\n\n{}\n{}{}{}{}[report]({}/report.md)\n\n", set.name, set.kind, frames,
        metrics_table(rows, system->units), molecular ? molecular_table(rows) + "\n" : "",
        crossover_note(experiment, set, losses),
        missing.empty()
            ? ""
            : fmt::format("Not run yet: {} (`psm run --only`).\n\n", fmt::join(missing, ", ")),
        failed.empty() ? ""
                       : fmt::format("Sampling failed, no row: {}.\n\n", fmt::join(failed, "; ")),
        (fs::path("report") / set.name).string());
    for (const auto& row : rows) {
      result.rows.push_back({set.name, row.name, row.metrics, row.molecular});
      nlohmann::json& entry = all_metrics[set.name][row.name];
      entry = row.metrics.to_json();
      if (row.molecular) entry["molecular"] = row.molecular->to_json(system->species);
    }
  }
  result.report = out / "report.md";
  write_text_atomically(result.report, summary);
  write_text_atomically(out / "metrics.json", all_metrics.dump(2) + "\n");
  say(fmt::format("done in {:.0f} s", seconds_since(start)));
  return result;
}

}  // namespace psm
