#pragma once
// One set of samples against a reference: the metrics, histograms and report of `psm eval`,
// from datasets already loaded (the Python module's eval takes the same path).
//
//   const SampleEvaluation result = evaluate_samples({load_dataset(a), a}, {load_dataset(b), b},
//   out);

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "psm/eval/report.h"
#include "psm/eval/weighted_metrics.h"
#include "psm/io/dataset.h"
#include "psm/systems/potential.h"

namespace psm {

/// A dataset with the file it came from: named in messages, its stem in the report's title.
struct SourcedDataset {
  Dataset data;
  std::filesystem::path source;
};

struct SampleEvaluationOptions {
  /// Computes energies for a set without them; null: the system the set names (a molecule with
  /// neither gets no energy metrics). A set whose frames name another system is an error.
  std::shared_ptr<const System> system{};
  std::string system_name{};  ///< what the user called `system`, for that error
  int64_t n = 0;              ///< the first n frames of each set; 0: all
  int64_t equivariant_n = 0;  ///< frames for the equivariant W2; 0: skip
  int64_t xtb_frames = 200;   ///< molecules: frames per set for the GFN2-xTB energy W1; 0: skip
  bool plots = true;          ///< histograms, when gnuplot is found (a warning otherwise)
  /// Also the metrics of the samples reweighted to the Boltzmann distribution, from their log
  /// importance weights (the set's, or -U/kT - log q from its log q and energies).
  bool weights = false;
  double min_ess = kDefaultMinEssFraction;  ///< ESS fraction below which weights are degenerate
  nlohmann::json context = nlohmann::json::object();  ///< recorded in metrics.json
};

struct SampleEvaluation {
  ModelMetrics row;                         ///< the samples' row of the report
  std::optional<WeightedMetrics> weighted;  ///< with options.weights
};

/// Writes metrics.json, report.md and the plots of `samples` against `reference` into `out`
/// (write_report), with options.weights also weighted_metrics.json and the samples reweighted
/// as a second row of the report (unless the weights are degenerate), and returns the metrics.
/// Generated frames the potential cannot evaluate
/// count as outliers; in the reference they are errors. Notes go to stderr. Throws psm::Error
/// naming the sources on different units, atom counts or species, --n beyond a set, or
/// options.weights for samples without log q or energies.
SampleEvaluation evaluate_samples(SourcedDataset samples, SourcedDataset reference,
                                  const std::filesystem::path& out,
                                  const SampleEvaluationOptions& options = {});

}  // namespace psm
