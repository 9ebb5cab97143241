#include "psm/eval/weighted_metrics.h"

#include <fmt/format.h>

#include "psm/core/error.h"
#include "psm/diffusion/importance_weights.h"

namespace psm {

nlohmann::json WeightedMetrics::to_json() const {
  const auto optional = [](const std::optional<double>& value) {
    return value ? nlohmann::json(*value) : nlohmann::json();
  };
  return {{"samples", samples},
          {"ess_fraction", ess_fraction},
          {"min_ess_fraction", min_ess_fraction},
          {"max_weight", max_weight},
          {"degenerate", degenerate},
          {"metrics", metrics ? metrics->to_json() : nlohmann::json()},
          {"mean_energy", optional(mean_energy)},
          {"mean_energy_unweighted", optional(mean_energy_unweighted)},
          {"mean_energy_reference", optional(mean_energy_reference)}};
}

WeightedMetrics compute_weighted_metrics(const Samples& generated, const torch::Tensor& log_weights,
                                         const Samples& reference, MetricsOptions options,
                                         double min_ess_fraction) {
  check(min_ess_fraction >= 0 && min_ess_fraction <= 1,
        fmt::format("importance weights: the ESS threshold must be in [0, 1], got {}",
                    min_ess_fraction));
  check(log_weights.defined() && log_weights.dim() == 1 &&
            log_weights.size(0) == generated.positions.size(0),
        fmt::format("importance weights: {} log weights for {} samples",
                    log_weights.defined() ? log_weights.numel() : 0, generated.positions.size(0)));
  const torch::Tensor w = normalised_importance_weights(log_weights);
  WeightedMetrics out;
  out.samples = w.numel();
  out.ess_fraction = kish_ess_fraction(log_weights);
  out.min_ess_fraction = min_ess_fraction;
  out.max_weight = w.max().item<double>();
  out.degenerate = out.ess_fraction < min_ess_fraction;
  const bool energies = generated.energies.defined() && reference.energies.defined();
  if (energies) {
    const torch::Tensor known = ~torch::isnan(generated.energies);
    out.mean_energy_unweighted = generated.energies.masked_select(known).mean().item<double>();
    out.mean_energy_reference = reference.energies.mean().item<double>();
  }
  if (out.degenerate) return out;
  Samples weighted = generated;
  weighted.weights = w;
  out.metrics = compute_metrics(weighted, reference, options);
  if (energies) {
    // Frames without an energy have weight 0; 0 x NaN must not spoil the sum.
    out.mean_energy =
        (w * torch::nan_to_num(generated.energies.to(torch::kFloat64), 0.0)).sum().item<double>();
  }
  return out;
}

}  // namespace psm
