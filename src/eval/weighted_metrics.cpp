#include "psm/eval/weighted_metrics.h"

#include <fmt/format.h>

#include <cmath>
#include <tuple>
#include <utility>

#include "psm/core/error.h"
#include "psm/diffusion/importance_weights.h"

namespace psm {

nlohmann::json WeightedMetrics::to_json() const {
  const auto optional = [](const std::optional<double>& value) {
    return value ? nlohmann::json(*value) : nlohmann::json();
  };
  return {
      {"samples", samples},
      {"ess_fraction", ess_fraction},
      {"min_ess_fraction", min_ess_fraction},
      {"max_weight", max_weight},
      {"degenerate", degenerate},
      {"metrics", metrics ? metrics->to_json() : nlohmann::json()},
      {"mean_energy", optional(mean_energy)},
      {"mean_energy_standard_error", optional(mean_energy_standard_error)},
      {"mean_energy_unweighted", optional(mean_energy_unweighted)},
      {"mean_energy_unweighted_standard_error", optional(mean_energy_unweighted_standard_error)},
      {"mean_energy_reference", optional(mean_energy_reference)},
      {"mean_energy_reference_standard_error", optional(mean_energy_reference_standard_error)}};
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
    const auto mean_and_error = [](const torch::Tensor& values) {
      const double n = static_cast<double>(values.numel());
      return std::pair{values.mean().item<double>(),
                       n > 1 ? values.std().item<double>() / std::sqrt(n) : 0.0};
    };
    std::tie(out.mean_energy_unweighted, out.mean_energy_unweighted_standard_error) =
        mean_and_error(generated.energies.masked_select(~torch::isnan(generated.energies)));
    std::tie(out.mean_energy_reference, out.mean_energy_reference_standard_error) =
        mean_and_error(reference.energies);
  }
  if (out.degenerate) return out;
  Samples weighted = generated;
  weighted.weights = w;
  out.metrics = compute_metrics(weighted, reference, options);
  if (energies) {
    // Frames without an energy have weight 0; 0 x NaN must not spoil the sum.
    const torch::Tensor energy = torch::nan_to_num(generated.energies.to(torch::kFloat64), 0.0);
    const double mean = (w * energy).sum().item<double>();
    out.mean_energy = mean;
    out.mean_energy_standard_error =
        std::sqrt((w.square() * (energy - mean).square()).sum().item<double>());
  }
  return out;
}

std::optional<NamedSamples> reweighted_samples(const NamedSamples& model,
                                               const torch::Tensor& log_weights,
                                               const WeightedMetrics& weighted) {
  if (weighted.degenerate) return std::nullopt;
  NamedSamples out{model.name + " reweighted", model.samples};
  out.samples.weights = normalised_importance_weights(log_weights);
  return out;
}

std::string importance_weights_table(const std::vector<NamedWeightedMetrics>& rows, Units units) {
  const std::string e = energy_unit(units);
  std::string table = fmt::format(
      "| samples | n | ESS fraction | effective samples | largest weight | mean energy ({e}) | "
      "reweighted ({e}) | reference ({e}) |\n"
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
      fmt::arg("e", e));
  const auto mean = [](const std::optional<double>& value, const std::optional<double>& error) {
    return value ? fmt::format("{:.4f} ± {:.2g}", *value, error.value_or(0.0)) : std::string("–");
  };
  for (const auto& [name, w] : rows) {
    table += fmt::format(
        "| {} | {} | {:.3f}{} | {:.0f} | {:.3g} | {} | {} | {} |\n", name, w.samples,
        w.ess_fraction,
        w.degenerate ? fmt::format(" (degenerate: below {:.3g})", w.min_ess_fraction) : "",
        w.ess_fraction * static_cast<double>(w.samples), w.max_weight,
        mean(w.mean_energy_unweighted, w.mean_energy_unweighted_standard_error),
        mean(w.mean_energy, w.mean_energy_standard_error),
        mean(w.mean_energy_reference, w.mean_energy_reference_standard_error));
  }
  return table;
}

}  // namespace psm
