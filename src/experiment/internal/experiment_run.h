#pragma once
// The state that the stages of `psm run` share (pipeline.h describes the stages and their files):
// the experiment, its system, the reference data, and one slot per model that the training,
// sampling and evaluation stages fill in turn. Internal to the experiment layer.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "psm/diffusion/loss.h"
#include "psm/eval/report.h"
#include "psm/eval/weighted_metrics.h"
#include "psm/experiment/pipeline.h"
#include "psm/io/dataset.h"
#include "psm/simulate/simulation.h"
#include "psm/systems/potential.h"

namespace psm::stages {

namespace fs = std::filesystem;

// Seed streams of the stages, so that each draws independently of the others.
inline constexpr uint64_t kPoolStream = 0x706f6f6c;    // "pool"
inline constexpr uint64_t kTestStream = 0x74657374;    // "test"
inline constexpr uint64_t kSetStream = 0x73657473;     // "sets"
inline constexpr uint64_t kSampleStream = 0x736d706c;  // "smpl"

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

ExperimentSystem system_from_spec(const nlohmann::json& spec, const Temperature& temperature);
ExperimentSystem system_from_data(const Dataset& pool);

/// One model of the experiment, a (training set, variant) pair, and what the stages made of it.
struct ModelSlot {
  size_t set = 0;         ///< index into ExperimentConfig::sets
  size_t variant = 0;     ///< index into ExperimentConfig::variants
  bool selected = false;  ///< made by this run (RunOptions::only); others are only read
  /// The rank that samples it and, under ModelSpread::models, trains it: the selected models
  /// are dealt to the ranks in turn.
  int rank = 0;
  /// Trained now or by an earlier run: a model this run does not make still gets its loss plot
  /// and its samples into the report when an earlier run made them.
  std::optional<fs::path> checkpoint{};
  std::optional<Dataset> samples{};  ///< generated now or by an earlier run
  std::string failure{};             ///< why sampling failed; empty where it did not
};

/// A training set's rows of the report, as the evaluation stage leaves them.
struct SetEvaluation {
  /// The noise floor, then each model with samples, each followed by its samples reweighted
  /// when they have importance weights that are not degenerate
  std::vector<ModelMetrics> rows;
  std::vector<NamedWeightedMetrics> weighted;  ///< each model whose samples have weights
  /// Each variant's loss options, from its checkpoint; unset without one.
  std::vector<std::optional<LossOptions>> losses;
  /// "set/variant (how far it got)" of models without samples: not trained, partial (at which
  /// step of how many), or trained and not sampled
  std::vector<std::string> missing;
  std::vector<std::string> failed;  ///< "set/variant (why)" of models whose sampling failed
};

/// What the evaluation stage leaves for the report.
struct Evaluation {
  std::string floor_name;         ///< the noise floor's row: mcmc, md or pool
  std::string floor_description;  ///< what that row is, for the report's introduction
  std::string energies_note;      ///< where the energy metrics come from; may be empty
  bool molecular = false;         ///< the molecular tables apply
  std::vector<SetEvaluation> sets;
};

/// Everything the stages share; each stage reads what the earlier ones left.
struct ExperimentRun {
  const ExperimentConfig& experiment;
  const RunOptions& options;
  std::optional<ExperimentSystem> system{};  ///< set by the reference stage at the latest
  Dataset pool;                              ///< reference stage
  Dataset test;                              ///< reference stage
  std::vector<fs::path> set_files{};         ///< sets stage, one per set
  std::vector<int64_t> set_frames{};         ///< sets stage; 0 for a set not made yet
  std::vector<ModelSlot> models{};           ///< set-major: models[set * variants + variant]
  Evaluation evaluation{};                   ///< evaluation stage
  ExperimentResult result{};                 ///< report stage

  const TrainingSetSpec& set_of(const ModelSlot& slot) const { return experiment.sets[slot.set]; }
  const std::string& variant_of(const ModelSlot& slot) const {
    return experiment.variants[slot.variant];
  }
  /// sets/<name>.npz of the run directory: where the sets stage writes the training set `set`.
  fs::path set_file(const TrainingSetSpec& set) const;
  /// Whether this run makes any model of set `set`.
  bool any_selected(size_t set) const;
  /// Whether this rank takes part in training `slot` / samples it.
  bool trains_here(const ModelSlot& slot) const;
  bool samples_here(const ModelSlot& slot) const;
  /// Prints a line of the run's log (say), prefixed "[rank R] " on ranks other than 0.
  void say(const std::string& line) const;
};

/// Checks the reference files and the --only choices, then makes (or checks) the run directory
/// and builds the system of [system]. Nothing is written before the checks pass, so that a
/// mistyped name leaves no run directory behind.
ExperimentRun prepare_run(const ExperimentConfig& experiment, const RunOptions& options);

/// On ranks other than 0, before the first shared stage: the paths of the training sets and,
/// without [system], the system described by the pool, from the files rank 0 wrote.
void follow_data_stages(ExperimentRun& run);

// The stages, in order. Each prints its progress and leaves its files in the run directory.
void reference_stage(ExperimentRun& run);  ///< reference/pool.npz, reference/test.npz
void sets_stage(ExperimentRun& run);       ///< sets/<set>.npz
void train_stage(ExperimentRun& run);      ///< models/<set>/<variant>/
void sample_stage(ExperimentRun& run);     ///< samples/<set>_<variant>.npz
void evaluate_stage(ExperimentRun& run);   ///< report/<set>/
void report_stage(ExperimentRun& run);     ///< report.md, metrics.json

// Helpers of the stages.

/// Prints a line of the run's log on stdout, flushed.
void say(const std::string& line);
double seconds_since(std::chrono::steady_clock::time_point start);
std::string read_text(const fs::path& path);

/// "kT = 1" or "T = 500 K (kT = 0.99360 kcal/mol)".
std::string describe_temperature(const ExperimentSystem& system);

/// Loads `file` when it exists, else makes it with `make` and saves it (and drops the state of
/// the simulation that made it, if any). `what` names it in `log`.
Dataset cached_dataset(const fs::path& file, const std::string& what,
                       const std::function<Dataset()>& make,
                       const std::function<void(const std::string&)>& log = say);

/// The settings of a reference simulation at `kT` ([reference] overrides, the molecule's start).
SimulationSettings reference_settings(const ExperimentRun& run, double kT, int64_t samples,
                                      uint64_t seed);

/// Frames simulated by the system's sampler into `file`, resumably (see reference_stage).
Dataset simulated(const ExperimentSystem& system, SimulationSettings settings,
                  const fs::path& file);

}  // namespace psm::stages
