#include "experiment/internal/experiment_run.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "psm/core/atomic_file.h"
#include "psm/core/elements.h"
#include "psm/core/error.h"
#include "psm/core/remove_tree.h"
#include "psm/data/thermal_check.h"

namespace psm::stages {

namespace {

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

/// One slot per (set, variant), set-major, selected by RunOptions::only ("SET" or
/// "SET/VARIANT"; all when empty).
std::vector<ModelSlot> model_slots(const ExperimentConfig& experiment,
                                   const std::vector<std::string>& only) {
  const size_t variants = experiment.variants.size();
  std::vector<ModelSlot> slots;
  for (size_t i = 0; i < experiment.sets.size(); ++i) {
    for (size_t v = 0; v < variants; ++v) {
      slots.push_back({.set = i, .variant = v, .selected = only.empty()});
    }
  }
  std::vector<std::string> set_names;
  for (const auto& set : experiment.sets) set_names.push_back(set.name);
  for (const auto& choice : only) {
    const size_t slash = choice.find('/');
    const std::string set_name = choice.substr(0, slash);
    const auto set = std::ranges::find(set_names, set_name);
    check(set != set_names.end(), fmt::format("--only {}: no set named '{}' (sets: {})", choice,
                                              set_name, fmt::join(set_names, ", ")));
    const auto first = slots.begin() + (set - set_names.begin()) * variants;
    if (slash == std::string::npos) {
      for (auto slot = first; slot != first + variants; ++slot) slot->selected = true;
      continue;
    }
    const std::string variant = choice.substr(slash + 1);
    const auto found = std::ranges::find(experiment.variants, variant);
    check(found != experiment.variants.end(),
          fmt::format("--only {}: no variant '{}' (variants: {})", choice, variant,
                      fmt::join(experiment.variants, ", ")));
    (first + (found - experiment.variants.begin()))->selected = true;
  }
  return slots;
}

/// What a configuration computes: the tree without `threads`, which only says how fast.
nlohmann::json computed_part(nlohmann::json tree) {
  tree.erase("threads");
  return tree;
}

/// The part of a configuration that the reference and the training sets depend on.
nlohmann::json data_part(const nlohmann::json& tree) {
  nlohmann::json part = nlohmann::json::object();
  for (const char* key : {"seed", "system", "reference", "sets"}) {
    if (tree.contains(key)) part[key] = tree[key];
  }
  return part;
}

/// True when the run directory holds data at most: no model and no samples yet.
bool holds_only_data(const fs::path& out) {
  for (const char* stage : {"models", "samples"}) {
    if (fs::exists(out / stage) && !fs::is_empty(out / stage)) return false;
  }
  return true;
}

/// Makes the run directory, or checks that an existing one belongs to this configuration. Until
/// a model exists only the data's part has to agree: the data made by `--data-only` can be
/// trained on with a network, a schedule or a sampler chosen afterwards.
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
      const Config made = Config::from_toml_string(read_text(marker), marker.string());
      if (holds_only_data(options.out)) {
        check(data_part(made.tree) == data_part(experiment.config.tree),
              fmt::format("{} was made with other data (seed, [system], [reference] or "
                          "[[sets]]): pass --fresh to redo it, or choose another --out",
                          options.out.string()));
      } else {
        check(computed_part(made.tree) == computed_part(experiment.config.tree),
              fmt::format("{} was made with another configuration: pass --fresh to redo it, or "
                          "choose another --out",
                          options.out.string()));
      }
    }
  }
  fs::create_directories(options.out);
  write_text_atomically(marker, toml);
}

/// The sampler state beside a simulated dataset file while it is being made.
fs::path state_file_of(const fs::path& file) { return fs::path(file).replace_extension(".state"); }

}  // namespace

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

bool ExperimentRun::any_selected(size_t set) const {
  return std::ranges::any_of(
      models, [&](const ModelSlot& slot) { return slot.set == set && slot.selected; });
}

fs::path ExperimentRun::set_file(const TrainingSetSpec& set) const {
  return options.out / "sets" / (set.name + ".npz");
}

bool ExperimentRun::trains_here(const ModelSlot& slot) const {
  return slot.selected && (options.spread == ModelSpread::data || samples_here(slot));
}

bool ExperimentRun::samples_here(const ModelSlot& slot) const {
  return slot.selected && slot.rank == options.ranks.rank();
}

void ExperimentRun::say(const std::string& line) const {
  stages::say(options.ranks.is_root() ? line
                                      : fmt::format("[rank {}] {}", options.ranks.rank(), line));
}

void follow_data_stages(ExperimentRun& run) {
  for (const TrainingSetSpec& set : run.experiment.sets) {
    run.set_files.push_back(run.set_file(set));
  }
  if (!run.system)
    run.system = system_from_data(load_dataset(run.options.out / "reference" / "pool.npz"));
}

ExperimentRun prepare_run(const ExperimentConfig& experiment, const RunOptions& options) {
  check_reference_files(experiment.reference);
  ExperimentRun run{.experiment = experiment,
                    .options = options,
                    .pool = {},
                    .test = {},
                    .models = model_slots(experiment, options.only)};
  int next_rank = 0;
  for (ModelSlot& slot : run.models) {
    if (slot.selected) slot.rank = next_rank++ % options.ranks.size();
  }
  if (options.ranks.is_root()) prepare_directory(experiment, options);
  if (experiment.system.is_object()) {
    run.system = system_from_spec(experiment.system, *experiment.temperature);
  }
  return run;
}

void say(const std::string& line) {
  fmt::print("{}\n", line);
  std::fflush(stdout);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string describe_temperature(const ExperimentSystem& system) {
  if (system.kelvin) {
    return fmt::format("T = {:g} K (kT = {:.5f} {})", *system.kelvin, system.kT,
                       energy_unit(system.units));
  }
  return fmt::format("kT = {:g}", system.kT);
}

Dataset cached_dataset(const fs::path& file, const std::string& what,
                       const std::function<Dataset()>& make,
                       const std::function<void(const std::string&)>& log) {
  if (fs::exists(file)) {
    Dataset data = load_dataset(file);
    log(fmt::format("  {:<28} {} frames (exists: {})", what, data.num_frames(), file.string()));
    return data;
  }
  const auto start = std::chrono::steady_clock::now();
  Dataset data = make();
  fs::create_directories(file.parent_path());
  save_dataset(file, data);
  fs::remove(state_file_of(file));
  log(fmt::format("  {:<28} {} frames in {:.0f} s -> {}", what, data.num_frames(),
                  seconds_since(start), file.string()));
  return data;
}

SimulationSettings reference_settings(const ExperimentRun& run, double kT, int64_t samples,
                                      uint64_t seed) {
  const ReferenceSpec& spec = run.experiment.reference;
  SimulationSettings settings;
  settings.kT = kT;
  settings.samples = samples;
  settings.sampler = spec.sampler;
  settings.chains = spec.chains;
  settings.burn_in = spec.burn_in;
  settings.thin = spec.thin;
  settings.leapfrog_steps = spec.leapfrog_steps;
  set_langevin_time_from_user(settings, run.system->units, spec.time_step, std::nullopt);
  settings.seed = seed;
  // A molecule starts from its file's geometry (lattice placements of its atoms would be no
  // molecule); other systems from the sampler's default.
  settings.initial_positions = run.experiment.start;
  settings.progress = run.options.progress;
  settings.device = run.options.device;
  return settings;
}

/// After its burn-in the sampler saves its state beside `file` (state_file_of) about every 5 %
/// of the frames, and an interrupted run resumes from there: a long reference (hours of xTB MD
/// for a peptide) loses little to an interruption. Molecules' frames get their temperature in K
/// (as `psm simulate` writes them).
Dataset simulated(const ExperimentSystem& system, SimulationSettings settings,
                  const fs::path& file) {
  settings.checkpoint = state_file_of(file);
  settings.checkpoint_every = std::max<int64_t>(1, settings.samples / 20);
  settings.resume = fs::exists(settings.checkpoint);
  if (settings.resume) say(fmt::format("  resuming from {}", settings.checkpoint.string()));
  fs::create_directories(file.parent_path());
  SimulationOutcome outcome;
  try {
    outcome = simulate(*system.system, settings);
  } catch (const Error& e) {
    const bool about_state = std::string(e.what()).find(settings.checkpoint.string()) == 0;
    if (!settings.resume || !about_state) throw;
    throw Error(
        fmt::format("{} (the state of an interrupted run: delete it, or pass --fresh)", e.what()));
  }
  Dataset data = std::move(outcome.dataset);
  if (system.units == Units::kcal_mol_angstrom) {
    data.temperature_kelvin = settings.kT / constants::boltzmann_kcal_mol_per_kelvin;
  }
  const ThermalCheck thermal = check_thermal_equilibrium(data, outcome.kinetic_series);
  record_thermal_check(thermal, data.provenance);
  for (const std::string& line : describe_thermal_check(thermal)) {
    say(fmt::format("  thermometers  {}", line));
  }
  return data;
}

}  // namespace psm::stages
