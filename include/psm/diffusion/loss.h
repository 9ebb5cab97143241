#pragma once
// The training loss of METHOD.md: one code path for DSM, PSM and the hybrid.
//
//   x_σ    = α (x_0 + σ ε),  ε ~ N(0, P)                 (α = 1 for variance exploding)
//   target = [w(σ) P F(x_0) / kT + (1 - w(σ)) (-ε / σ)] / α
//   loss_b = λ(σ) α² ||P s_θ(x_σ, σ) - target||² / d_eff,  loss = mean_b loss_b
//
// w ≡ 0 is plain denoising score matching, w ≡ 1 pure potential score matching, and the
// hybrid w = 1 / (1 + (σ / σ_c)^p) moves from PSM at small σ, where its target is precise, to
// DSM at large σ. The α² makes the variance-preserving loss equal to the variance-exploding
// loss of the equivalent model (schedule.h). Dividing by d_eff reports a loss per coordinate.

#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "psm/diffusion/schedule.h"
#include "psm/diffusion/score.h"
#include "psm/io/dataset.h"

namespace psm {

/// The crossover rule w(σ).
enum class Crossover {
  dsm,     ///< w = 0: no forces needed
  psm,     ///< w = 1: on data from another temperature its large-σ score is off by kT_data / kT
  hybrid,  ///< w = 1 / (1 + (σ / σ_c)^exponent)
};

/// λ(σ), the weight of each noise level in the loss.
enum class LossWeighting {
  sigma_squared,  ///< λ = σ²: noise-prediction scale, ||σ s_θ + ε||² for DSM (default)
  unit,           ///< λ = 1: keeps weight at small σ, where PSM targets are precise
  edm,  ///< λ = σ² (σ² + σ_data²) / σ_data²: EDM's denoiser weighting in score units
  /// λ = 1 / (w² / σ_c² + (1 - w)² / σ²), the inverse variance of the target per coordinate:
  /// every noise level counts alike. σ² for DSM; σ_c² (constant) where PSM's target holds.
  target_variance,
};

struct LossOptions {
  NoiseSchedule schedule{};
  NoiseProcess process = NoiseProcess::variance_exploding;
  Crossover crossover = Crossover::hybrid;
  /// Hybrid crossover σ_c (length units). Unset: resolve_loss_options() estimates it from the
  /// force labels (estimate_sigma_c).
  std::optional<double> sigma_c{};
  double crossover_exponent = 4.0;  ///< p in w = 1 / (1 + (σ / σ_c)^p)
  LossWeighting weighting = LossWeighting::sigma_squared;
  double sigma_data = 1.0;  ///< LossWeighting::edm: data std per coordinate, length units
  bool com_free = true;     ///< project data, noise, forces and scores onto the CoM-free space
};

struct LossOutput {
  torch::Tensor loss;        ///< scalar, differentiable: mean of per_sample
  torch::Tensor per_sample;  ///< [B] λ-weighted loss per configuration, detached
  torch::Tensor sigma;       ///< [B] the noise levels drawn (for loss per σ band)
};

/// The thermal length at the target kT, where the PSM and DSM target variances cross
/// (METHOD.md): σ_c² = d_eff kT kT_data / E||P F||² = d_eff kT / E[tr H], using
/// E||F||² = kT_data E[tr H] for frames drawn at kT_data. Without kT_data (frames drawn at the
/// target) this is d_eff kT² / E||P F||². Estimating with kT² on frames drawn too hot would
/// give a length sqrt(kT / kT_data) too short, and a hybrid that is almost DSM.
/// @param forces [F, N, D] float64, energy/length; kT in the same energy units.
/// @param sampled_kT the k_B T the frames were drawn at, when it is not kT
double estimate_sigma_c(const torch::Tensor& forces, double kT, bool com_free,
                        std::optional<double> sampled_kT = std::nullopt);

/// `options` made ready for `dataset`: validates them, checks that PSM and hybrid have force
/// labels, and fills an unset hybrid σ_c with estimate_sigma_c(dataset.forces, dataset.kT,
/// com_free, dataset.sampled_kT).
/// Throws psm::Error naming the offending option.
LossOptions resolve_loss_options(LossOptions options, const Dataset& dataset);

/// w(σ) [B] for sigma [B]. Throws psm::Error for a hybrid without σ_c.
torch::Tensor crossover_weight(const torch::Tensor& sigma, const LossOptions& options);

/// λ(σ) [B] for sigma [B].
torch::Tensor loss_weight(const torch::Tensor& sigma, const LossOptions& options);

/// The regression target [B, N, D] (1/length) for forces F(x_0) [B, N, D] (may be undefined
/// when w ≡ 0), noise ε [B, N, D] (already in the space), sigma [B] and kT.
torch::Tensor score_target(const torch::Tensor& forces, const torch::Tensor& noise,
                           const torch::Tensor& sigma, double kT, const LossOptions& options);

/// The loss on given noise levels and noise. x0 [B, N, D] float64 (length), forces [B, N, D]
/// float64 (energy/length; may be undefined for Crossover::dsm), sigma [B], noise [B, N, D]
/// (projected here), kT the target temperature (energy units, Dataset::kT).
LossOutput diffusion_loss(const ScoreFn& model, const torch::Tensor& x0,
                          const torch::Tensor& forces, const torch::Tensor& sigma,
                          const torch::Tensor& noise, double kT, const LossOptions& options);

/// The loss with σ and ε drawn from `rng`, in that order: σ = sample_training_sigmas(schedule,
/// B, rng), then ε = gaussian_noise(x0.sizes(), rng, x0.options(), com_free).
LossOutput diffusion_loss(const ScoreFn& model, const torch::Tensor& x0,
                          const torch::Tensor& forces, double kT, const LossOptions& options,
                          torch::Generator& rng);

std::string to_string(Crossover value);
std::string to_string(LossWeighting value);
/// Parsers for config values; throw psm::Error listing the known names.
Crossover crossover_from_string(const std::string& name);
LossWeighting loss_weighting_from_string(const std::string& name);

}  // namespace psm
