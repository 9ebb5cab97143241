#pragma once
// Sample-quality metrics of importance-weighted samples (diffusion/importance_weights.h): what
// the model's samples say about the Boltzmann distribution once reweighted. Below a threshold
// of Kish's effective sample size the weights are degenerate (a few samples carry all the
// weight) and the weighted metrics are not computed.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>

#include "psm/eval/metrics.h"

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
  std::optional<Metrics> metrics{};     ///< compute_metrics of the weighted samples
  std::optional<double> mean_energy{};  ///< Σ w U, the reweighted estimate of <U>
  std::optional<double> mean_energy_unweighted{};
  std::optional<double> mean_energy_reference{};

  nlohmann::json to_json() const;
};

/// Reweighted metrics of `generated` (its own weights field is ignored) with log weights [B]
/// against `reference`; the energy means when both sets have energies.
WeightedMetrics compute_weighted_metrics(const Samples& generated, const torch::Tensor& log_weights,
                                         const Samples& reference, MetricsOptions options = {},
                                         double min_ess_fraction = kDefaultMinEssFraction);

}  // namespace psm
