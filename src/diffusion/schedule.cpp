#include "psm/diffusion/schedule.h"

#include <fmt/format.h>

#include <cmath>

#include "psm/core/error.h"
#include "psm/core/value_registry.h"

namespace psm {

namespace {
const ValueRegistry<SigmaDistribution> kDistributionNames(
    "sigma distribution", {{"log_uniform", SigmaDistribution::log_uniform},
                           {"log_normal", SigmaDistribution::log_normal}});
const ValueRegistry<SigmaGrid> kGridNames("sigma grid", {{"geometric", SigmaGrid::geometric},
                                                         {"edm", SigmaGrid::edm}});
const ValueRegistry<NoiseProcess> kProcessNames("noise process",
                                                {{"ve", NoiseProcess::variance_exploding},
                                                 {"vp", NoiseProcess::variance_preserving}});
}  // namespace

void NoiseSchedule::validate(const std::string& context) const {
  check(sigma_min > 0 && sigma_min < sigma_max,
        fmt::format("{}: need 0 < sigma_min < sigma_max (got {} and {})", context, sigma_min,
                    sigma_max));
  check(p_std > 0, fmt::format("{}: p_std must be positive (got {})", context, p_std));
}

torch::Tensor sample_training_sigmas(const NoiseSchedule& schedule, int64_t n,
                                     torch::Generator& rng, const torch::TensorOptions& options) {
  const auto on_rng = options.device(rng.device());
  const double log_min = std::log(schedule.sigma_min);
  const double log_max = std::log(schedule.sigma_max);
  torch::Tensor log_sigma;
  switch (schedule.distribution) {
    case SigmaDistribution::log_uniform:
      log_sigma = log_min + (log_max - log_min) * torch::rand({n}, rng, on_rng);
      break;
    case SigmaDistribution::log_normal:
      log_sigma = (schedule.p_mean + schedule.p_std * torch::randn({n}, rng, on_rng))
                      .clamp(log_min, log_max);
      break;
  }
  return log_sigma.exp().to(options.device());
}

torch::Tensor sigma_grid(SigmaGrid grid, double sigma_max, double sigma_min, int64_t steps,
                         double rho, const torch::TensorOptions& options) {
  check(steps >= 1, fmt::format("sigma grid: steps must be >= 1 (got {})", steps));
  check(sigma_min > 0 && sigma_min < sigma_max,
        fmt::format("sigma grid: need 0 < sigma_min < sigma_max (got {} and {})", sigma_min,
                    sigma_max));
  const torch::Tensor fraction =
      torch::arange(steps + 1, options.dtype(torch::kFloat64)) / static_cast<double>(steps);
  torch::Tensor sigmas;
  switch (grid) {
    case SigmaGrid::geometric:
      sigmas = sigma_max * torch::pow(sigma_min / sigma_max, fraction);
      break;
    case SigmaGrid::edm: {
      check(rho > 0, fmt::format("sigma grid: rho must be positive (got {})", rho));
      const double top = std::pow(sigma_max, 1.0 / rho);
      const double bottom = std::pow(sigma_min, 1.0 / rho);
      sigmas = (top + fraction * (bottom - top)).pow(rho);
      break;
    }
  }
  // Pin the ends exactly: the pow round trip is off by an ulp.
  sigmas[0] = sigma_max;
  sigmas[steps] = sigma_min;
  return sigmas.to(options);
}

double suggest_sigma_max(const torch::Tensor& positions, bool com_free) {
  check(positions.dim() == 3 && positions.size(0) >= 1,
        "suggest_sigma_max: positions must be a non-empty [F, N, D] tensor");
  const int64_t frames = std::min<int64_t>(positions.size(0), 2000);
  const torch::Tensor flat =
      project(positions.slice(0, 0, frames).to(torch::kFloat64), com_free).reshape({frames, -1});
  const double largest_distance = torch::cdist(flat, flat).max().item<double>();
  const double largest_norm = flat.norm(2, 1).max().item<double>();
  return std::max(largest_distance, largest_norm);
}

ProcessScales process_scales(NoiseProcess process, const torch::Tensor& sigma) {
  switch (process) {
    case NoiseProcess::variance_exploding:
      return {torch::ones_like(sigma), sigma};
    case NoiseProcess::variance_preserving: {
      const torch::Tensor alpha = (1 + sigma.square()).rsqrt();
      return {alpha, sigma * alpha};
    }
  }
  throw Error("invalid NoiseProcess value");
}

ScoreFn as_variance_exploding(ScoreFn variance_preserving_model) {
  return [model = std::move(variance_preserving_model)](const torch::Tensor& y,
                                                        const torch::Tensor& sigma) {
    const torch::Tensor alpha =
        process_scales(NoiseProcess::variance_preserving, sigma).alpha.view({-1, 1, 1});
    return alpha * model(alpha * y, sigma).to(y.dtype());
  };
}

std::string to_string(SigmaDistribution value) { return kDistributionNames.name_of(value); }
std::string to_string(SigmaGrid value) { return kGridNames.name_of(value); }
std::string to_string(NoiseProcess value) { return kProcessNames.name_of(value); }

SigmaDistribution sigma_distribution_from_string(const std::string& name) {
  return kDistributionNames.get(name);
}
SigmaGrid sigma_grid_from_string(const std::string& name) { return kGridNames.get(name); }
NoiseProcess noise_process_from_string(const std::string& name) { return kProcessNames.get(name); }

}  // namespace psm
