#include "psm/diffusion/importance_weights.h"

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

}  // namespace psm
