#pragma once
// Importance weights that turn samples of a model q into averages over the Boltzmann
// distribution p ∝ exp(-U / kT): w = exp(-U / kT) / q, self-normalised, so neither
// normaliser is needed. Kish's effective sample size says how many independent Boltzmann samples
// the weighted set is worth; below a threshold the weights are degenerate (a few samples carry
// all the weight) and weighted averages are not to be trusted.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>

#include "psm/eval/metrics.h"

namespace psm {

/// log w = -U / kT - log q [B] float64: energies [B] (energy units; NaN or +inf where the
/// potential failed, e.g. clashing atoms: weight 0, log w = -inf), kT > 0 in the same units,
/// log_q [B] finite (nats). Throws psm::Error on mismatched shapes or a non-finite log q.
torch::Tensor log_importance_weights(const torch::Tensor& energies, double kT,
                                     const torch::Tensor& log_q);

/// w / Σ w [B] float64 from log weights (the largest subtracted first, so no overflow).
/// Throws psm::Error when every weight is zero (all log w = -inf) or one is NaN or +inf.
torch::Tensor normalised_importance_weights(const torch::Tensor& log_weights);

/// Kish's effective sample size as a fraction of the samples: (Σ w)² / (n Σ w²), in (0, 1];
/// 1 for equal weights, 1/n when one sample carries all the weight.
double kish_ess_fraction(const torch::Tensor& log_weights);

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
