#include "psm/diffusion/loss.h"

#include <fmt/format.h>

#include <cmath>

#include "psm/core/error.h"
#include "psm/core/value_registry.h"

namespace psm {

namespace {
const ValueRegistry<Crossover> kCrossoverNames("crossover", {{"dsm", Crossover::dsm},
                                                             {"psm", Crossover::psm},
                                                             {"hybrid", Crossover::hybrid}});
const ValueRegistry<LossWeighting> kWeightingNames("loss weighting",
                                                   {{"sigma_squared", LossWeighting::sigma_squared},
                                                    {"unit", LossWeighting::unit},
                                                    {"edm", LossWeighting::edm},
                                                    {"target_variance",
                                                     LossWeighting::target_variance}});

torch::Tensor per_configuration(const torch::Tensor& values) { return values.view({-1, 1, 1}); }
}  // namespace

double estimate_sigma_c(const torch::Tensor& forces, double kT, bool com_free,
                        std::optional<double> sampled_kT) {
  check(forces.defined() && forces.dim() == 3 && forces.size(0) > 0,
        "estimate_sigma_c: forces must be a non-empty [F, N, D] tensor");
  const double data_kT = sampled_kT.value_or(kT);
  check(kT > 0 && data_kT > 0,
        fmt::format("estimate_sigma_c: kT must be positive (got {} and {})", kT, data_kT));
  const double mean_square =
      project(forces.to(torch::kFloat64), com_free).square().sum({1, 2}).mean().item<double>();
  check(mean_square > 0, "estimate_sigma_c: all force labels are zero");
  const auto d_eff = static_cast<double>(effective_dim(forces.size(1), forces.size(2), com_free));
  return std::sqrt(d_eff * kT * data_kT / mean_square);
}

LossOptions resolve_loss_options(LossOptions options, const Dataset& dataset) {
  options.schedule.validate("loss.schedule");
  check(
      options.crossover_exponent > 0,
      fmt::format("loss.crossover_exponent must be positive (got {})", options.crossover_exponent));
  check(options.sigma_data > 0,
        fmt::format("loss.sigma_data must be positive (got {})", options.sigma_data));
  check(!options.sigma_c || *options.sigma_c > 0,
        fmt::format("loss.sigma_c must be positive (got {})", options.sigma_c.value_or(0)));
  if (options.crossover != Crossover::dsm) {
    check(dataset.has_forces(),
          fmt::format("loss.crossover = {} needs force labels, and the dataset has none (use "
                      "crossover = dsm)",
                      to_string(options.crossover)));
  }
  const bool needs_sigma_c =
      options.crossover == Crossover::hybrid ||
      (options.weighting == LossWeighting::target_variance && options.crossover == Crossover::psm);
  if (needs_sigma_c && !options.sigma_c) {
    options.sigma_c =
        estimate_sigma_c(dataset.forces, dataset.kT, options.com_free, dataset.sampled_kT);
  }
  return options;
}

torch::Tensor crossover_weight(const torch::Tensor& sigma, const LossOptions& options) {
  switch (options.crossover) {
    case Crossover::dsm:
      return torch::zeros_like(sigma);
    case Crossover::psm:
      return torch::ones_like(sigma);
    case Crossover::hybrid:
      check(options.sigma_c.has_value(),
            "loss: the hybrid crossover needs sigma_c (set it, or call resolve_loss_options to "
            "estimate it from the force labels)");
      return 1.0 / (1.0 + (sigma / *options.sigma_c).pow(options.crossover_exponent));
  }
  throw Error("invalid Crossover value");
}

torch::Tensor loss_weight(const torch::Tensor& sigma, const LossOptions& options) {
  switch (options.weighting) {
    case LossWeighting::sigma_squared:
      return sigma.square();
    case LossWeighting::unit:
      return torch::ones_like(sigma);
    case LossWeighting::edm: {
      const double data2 = options.sigma_data * options.sigma_data;
      return sigma.square() * (sigma.square() + data2) / data2;
    }
    case LossWeighting::target_variance: {
      // Per coordinate, Var[-ε/σ] = 1/σ² and Var[F/kT] ≈ 1/σ_c² (the definition of σ_c).
      const torch::Tensor w = crossover_weight(sigma, options);
      const torch::Tensor psm_variance = options.crossover == Crossover::dsm
                                             ? torch::zeros_like(sigma)
                                             : w.square() / (*options.sigma_c * *options.sigma_c);
      return 1.0 / (psm_variance + (1 - w).square() / sigma.square());
    }
  }
  throw Error("invalid LossWeighting value");
}

torch::Tensor score_target(const torch::Tensor& forces, const torch::Tensor& noise,
                           const torch::Tensor& sigma, double kT, const LossOptions& options) {
  check(forces.defined() || options.crossover == Crossover::dsm,
        fmt::format("loss: crossover {} needs force labels", to_string(options.crossover)));
  const torch::Tensor w = per_configuration(crossover_weight(sigma, options));
  const torch::Tensor sigma_b = per_configuration(sigma);
  // With w ≡ 0 the force term is multiplied by zero: a dataset without forces enters as zeros.
  const torch::Tensor potential_score =
      forces.defined() ? project(forces.to(noise.dtype()), options.com_free) / kT
                       : torch::zeros_like(noise);
  const torch::Tensor target = w * potential_score + (1 - w) * (-noise / sigma_b);
  return target / per_configuration(process_scales(options.process, sigma).alpha);
}

LossOutput diffusion_loss(const ScoreFn& model, const torch::Tensor& x0,
                          const torch::Tensor& forces, const torch::Tensor& sigma,
                          const torch::Tensor& noise, double kT, const LossOptions& options) {
  check(x0.dim() == 3 && x0.size(0) > 0, "loss: x0 must be a non-empty [B, N, D] tensor");
  check(noise.sizes() == x0.sizes(), "loss: noise must have the shape of x0");
  check(!forces.defined() || forces.sizes() == x0.sizes(),
        "loss: forces must have the shape of x0");
  check(sigma.dim() == 1 && sigma.size(0) == x0.size(0), "loss: sigma must be [B]");
  check(kT > 0, fmt::format("loss: kT must be positive (got {})", kT));

  const torch::Tensor sigma_x = sigma.to(x0.options());
  const torch::Tensor eps = project(noise.to(x0.options()), options.com_free);
  const torch::Tensor alpha = process_scales(options.process, sigma_x).alpha;
  const torch::Tensor x_noisy =
      per_configuration(alpha) * (project(x0, options.com_free) + per_configuration(sigma_x) * eps);
  const torch::Tensor target = score_target(forces, eps, sigma_x, kT, options);
  const torch::Tensor prediction =
      project(model(x_noisy, sigma_x).to(target.dtype()), options.com_free);

  const auto d_eff = static_cast<double>(effective_dim(x0.size(1), x0.size(2), options.com_free));
  const torch::Tensor residual = (prediction - target).square().sum({1, 2}) / d_eff;
  const torch::Tensor per_sample = loss_weight(sigma_x, options) * alpha.square() * residual;
  return {per_sample.mean(), per_sample.detach(), sigma_x};
}

LossOutput diffusion_loss(const ScoreFn& model, const torch::Tensor& x0,
                          const torch::Tensor& forces, double kT, const LossOptions& options,
                          torch::Generator& rng) {
  check(x0.dim() == 3, "loss: x0 must be [B, N, D]");
  const torch::Tensor sigma =
      sample_training_sigmas(options.schedule, x0.size(0), rng, x0.options());
  const torch::Tensor noise = gaussian_noise(x0.sizes(), rng, x0.options(), options.com_free);
  return diffusion_loss(model, x0, forces, sigma, noise, kT, options);
}

std::string to_string(Crossover value) { return kCrossoverNames.name_of(value); }
std::string to_string(LossWeighting value) { return kWeightingNames.name_of(value); }
Crossover crossover_from_string(const std::string& name) { return kCrossoverNames.get(name); }
LossWeighting loss_weighting_from_string(const std::string& name) {
  return kWeightingNames.get(name);
}

}  // namespace psm
