#pragma once
// Sample-quality metrics of importance-weighted samples (diffusion/importance_weights.h): what
// the model's samples say about the Boltzmann distribution once reweighted. Below a threshold
// of Kish's effective sample size the weights are degenerate (a few samples carry all the
// weight) and the weighted metrics are not computed.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "psm/core/units.h"
#include "psm/eval/metrics.h"
#include "psm/eval/report.h"

namespace psm {

/// Below this fraction the weights are reported as degenerate (5 %: 100 effective samples of
/// 2,000).
constexpr double kDefaultMinEssFraction = 0.05;

/// The reweighted metrics of one generated set.
struct WeightedMetrics {
  int64_t samples = 0;
  double ess_fraction = 0;      ///< kish_ess_fraction
  double min_ess_fraction = 0;  ///< the threshold it was judged against
  double max_weight = 0;        ///< the largest normalised weight
  /// ESS fraction below the threshold: `metrics` and the means are left out
  bool degenerate = true;
  std::optional<Metrics> metrics{};  ///< compute_metrics of the weighted samples
  /// Σ w U, the reweighted estimate of <U>, with the self-normalised estimator's standard error
  /// sqrt(Σ w² (U - Σ w U)²) (delta method)
  std::optional<double> mean_energy{};
  std::optional<double> mean_energy_standard_error{};
  std::optional<double> mean_energy_unweighted{};  ///< with standard error std / sqrt(n)
  std::optional<double> mean_energy_unweighted_standard_error{};
  std::optional<double> mean_energy_reference{};  ///< with standard error std / sqrt(n)
  std::optional<double> mean_energy_reference_standard_error{};

  nlohmann::json to_json() const;
};

/// Reweighted metrics of `generated` (its own weights field is ignored) with log weights [B]
/// against `reference`; the energy means when both sets have energies.
WeightedMetrics compute_weighted_metrics(const Samples& generated, const torch::Tensor& log_weights,
                                         const Samples& reference, MetricsOptions options = {},
                                         double min_ess_fraction = kDefaultMinEssFraction);

/// `model` with its samples weighted by the normalised importance weights exp(log_weights),
/// named "<name> reweighted": a report row (write_report) beside the unweighted one. None when
/// `weighted` (its compute_weighted_metrics) found the weights degenerate.
std::optional<NamedSamples> reweighted_samples(const NamedSamples& model,
                                               const torch::Tensor& log_weights,
                                               const WeightedMetrics& weighted);

struct NamedWeightedMetrics {
  std::string name;
  WeightedMetrics metrics;
};

/// A Markdown table, one row per weighted set: n, Kish ESS (fraction and samples), the largest
/// normalised weight, and the mean energy unweighted, reweighted and of the reference, each with
/// its standard error; degenerate weights are marked as such.
std::string importance_weights_table(const std::vector<NamedWeightedMetrics>& rows, Units units);

}  // namespace psm
