#include "psm/eval/importance_weights.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "psm/core/error.h"

namespace psm {

torch::Tensor log_importance_weights(const torch::Tensor& energies, double kT,
                                     const torch::Tensor& log_q) {
  check(std::isfinite(kT) && kT > 0,
        fmt::format("importance weights: kT must be positive, got {}", kT));
  check(energies.defined() && log_q.defined() && energies.dim() == 1 &&
            log_q.sizes() == energies.sizes(),
        "importance weights: energies and log q must be [B], one per sample");
  const torch::Tensor log_density = log_q.to(torch::kFloat64);
  check(torch::isfinite(log_density).all().item<bool>(),
        "importance weights: log q holds NaN or Inf");
  const torch::Tensor energy = energies.to(log_density.options());
  const torch::Tensor failed = torch::isnan(energy) | torch::isposinf(energy);
  return torch::where(failed, torch::full_like(energy, -std::numeric_limits<double>::infinity()),
                      -energy / kT - log_density);
}

torch::Tensor normalised_importance_weights(const torch::Tensor& log_weights) {
  check(log_weights.defined() && log_weights.dim() == 1 && log_weights.numel() > 0,
        "importance weights: log weights must be [B] with B >= 1");
  const torch::Tensor log_w = log_weights.to(torch::kFloat64);
  check(!(torch::isnan(log_w) | torch::isposinf(log_w)).any().item<bool>(),
        "importance weights: log weights hold NaN or +Inf");
  const double largest = log_w.max().item<double>();
  check(std::isfinite(largest), "importance weights: every weight is zero");
  const torch::Tensor w = (log_w - largest).exp();
  return w / w.sum();
}

double kish_ess_fraction(const torch::Tensor& log_weights) {
  const torch::Tensor w = normalised_importance_weights(log_weights);
  return 1.0 / (static_cast<double>(w.numel()) * w.square().sum().item<double>());
}

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
