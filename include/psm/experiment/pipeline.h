#pragma once
// `psm run`: the whole experiment of an ExperimentConfig, as stages that each leave files in
// the run directory and are skipped when their files exist (an interrupted run resumes; a
// half-trained model continues from its checkpoint):
//
//   experiment.toml                      the configuration (a changed one is refused)
//   reference/pool.npz, reference/test.npz
//   sets/<set>.npz                       training sets, with provenance
//   models/<set>/<variant>/              checkpoint.pt, metrics.jsonl, config.toml
//   samples/<set>_<variant>.npz          generated configurations with energies
//   report/<set>/                        metrics.json, report.md, histograms, loss plots (and
//                                        for molecules the molecular metrics and their plots)
//   report.md, metrics.json              every set's table
//
// The report is recomputed on every run (it is cheap and depends on all of the above). With
// RunOptions::only, stages 2-4 run for the chosen models only, and the report covers the models
// that have samples.
//
// Under several MPI ranks (RunOptions::ranks) rank 0 makes the reference, the training sets and
// the report; the models are shared as RunOptions::spread says, and the samples of model i (in
// the order of the report, counting the models this run makes) are drawn by rank i mod ranks.
// The ranks must see one file system: they meet at the files of the run directory.

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "psm/core/communicator.h"
#include "psm/eval/metrics.h"
#include "psm/eval/molecular.h"
#include "psm/experiment/experiment_config.h"

namespace psm {

/// How the ranks of a run share its models.
enum class ModelSpread {
  models,  ///< whole models: rank i mod ranks trains model i alone, as one process would
  data,    ///< every model trained data-parallel by all ranks (as `psm train` under mpirun)
};
std::string to_string(ModelSpread value);
/// "models" or "data"; throws psm::Error listing them.
ModelSpread model_spread_from_string(const std::string& name);

struct RunOptions {
  std::filesystem::path out;  ///< run directory
  bool fresh = false;         ///< delete the run directory's stages and redo them
  bool progress = true;       ///< progress bars on stderr
  bool plots = true;          ///< PNG plots through gnuplot
  /// Runs only these models: "SET" (every variant of a set) or "SET/VARIANT". Empty: all. The
  /// report then shows every model whose samples exist, so that an experiment can be run in
  /// pieces (one set per machine or per day) into one run directory.
  std::vector<std::string> only{};
  /// Stops after the reference and the (selected) training sets: the data can be made on a CPU
  /// and the models trained elsewhere, on a GPU say, in the same run directory.
  bool data_only = false;
  /// Where simulation, training and sampling run. Files hold CPU tensors, so a run started on
  /// one device resumes on another.
  torch::Device device = torch::kCPU;
  Communicator ranks{};  ///< the MPI ranks that share the run (see above)
  ModelSpread spread = ModelSpread::models;
};

/// One row of the result: a model (or the independent reference) on one training set.
struct ExperimentRow {
  std::string set;
  /// A variant name, or the noise floor against the test set: "mcmc" or, for molecules, "md"
  /// (an independent MCMC or Langevin MD set) or, for a pool read from files, "pool" (a random
  /// subset of the pool)
  std::string model;
  Metrics metrics;
  std::optional<MolecularMetrics> molecular{};  ///< for molecules (real elements, Å, kcal/mol)
};

struct ExperimentResult {
  std::vector<ExperimentRow> rows;
  std::filesystem::path report;  ///< report.md; empty when the run stopped before it (data_only)
};

/// Runs (or resumes) every stage. Throws psm::Error on a failed stage, naming it; the files of
/// the stages done so far are kept. On ranks other than 0 the result is empty.
ExperimentResult run_experiment(const ExperimentConfig& experiment, const RunOptions& options);

}  // namespace psm
