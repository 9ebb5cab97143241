#pragma once
// Noise levels: the variance-exploding forward process x_σ = x_0 + σ ε (ε ~ N(0, P)), the
// distribution training draws σ from, the descending σ grids samplers integrate on, and the
// variance-preserving process as an option.
//
// Variance preserving: x_t = α_t x_0 + s_t ε with α_t² + s_t² = 1. Dividing by α_t gives the
// variance-exploding process at σ = s_t / α_t, so psm parameterises it by that σ:
// α = 1 / sqrt(1 + σ²), s = σ α. Training distributions and grids are then shared, the model is
// called as model(x_t, σ), its score is ∇ log p_t(x_t) = ∇ log p_σ(x_t / α) / α, and the
// regression targets are the variance-exploding ones divided by α: DSM -ε / s_t, PSM
// F(x_0) / (α_t kT) (METHOD.md). as_variance_exploding() turns such a model into the
// variance-exploding score the samplers integrate.

#include <torch/types.h>

#include <cstdint>
#include <string>

#include "psm/diffusion/score.h"

namespace psm {

/// How training draws σ.
enum class SigmaDistribution {
  log_uniform,  ///< ln σ uniform on [ln σ_min, ln σ_max]
  log_normal,   ///< ln σ ~ N(p_mean, p_std²) (EDM), clipped to [σ_min, σ_max]
};

/// Spacing of the sampling grid σ_0 = σ_max > ... > σ_n = σ_min.
enum class SigmaGrid {
  geometric,  ///< σ_i = σ_max (σ_min / σ_max)^(i / n)
  edm,  ///< σ_i = (σ_max^(1/ρ) + i / n (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ (Karras et al. 2022)
};

enum class NoiseProcess { variance_exploding, variance_preserving };

/// σ range and training distribution. σ in length units (Å or reduced), like the positions.
struct NoiseSchedule {
  /// Small compared with thermal fluctuations (bond-length widths are ~0.03-0.05 Å at 300 K).
  double sigma_min = 0.01;
  /// Large compared with the data's extent, so that x_σmax is close to the N(0, σ_max² P)
  /// prior: suggest_sigma_max() gives the usual choice.
  double sigma_max = 10.0;
  SigmaDistribution distribution = SigmaDistribution::log_uniform;
  double p_mean = -1.2;  ///< log_normal: mean of ln σ (EDM default)
  double p_std = 1.2;    ///< log_normal: std of ln σ (EDM default)

  /// Throws psm::Error naming `context` (a config section) on 0 < σ_min < σ_max violated or
  /// p_std <= 0.
  void validate(const std::string& context) const;
};

/// n training noise levels [n] (dtype and device of `options`) drawn from `rng`.
torch::Tensor sample_training_sigmas(const NoiseSchedule& schedule, int64_t n,
                                     torch::Generator& rng,
                                     const torch::TensorOptions& options = torch::kFloat64);

/// The descending grid σ_max = σ_0 > σ_1 > ... > σ_steps = σ_min: [steps + 1] (`options`).
/// rho is used by SigmaGrid::edm only (7 in EDM).
torch::Tensor sigma_grid(SigmaGrid grid, double sigma_max, double sigma_min, int64_t steps,
                         double rho = 7.0, const torch::TensorOptions& options = torch::kFloat64);

/// A σ_max large compared with the data's extent: the largest distance between two training
/// configurations, max_ij ||P x_i - P x_j|| (Song & Ermon 2020), or from a configuration to the
/// prior's centre, max_i ||P x_i||, whichever is larger. The reverse SDE forgets the start's
/// mismatch with p_σmax; the probability-flow ODE carries it through (for a Gaussian the sample
/// mean is off by about ||mean|| / σ_max standard deviations), so for the ODE a few times more
/// is safer. positions [F, N, D] float64; at most the first 2000 frames are used.
double suggest_sigma_max(const torch::Tensor& positions, bool com_free);

/// α and s of the forward process at σ (each shaped like sigma): VE α = 1, s = σ;
/// VP α = 1 / sqrt(1 + σ²), s = σ α.
struct ProcessScales {
  torch::Tensor alpha;
  torch::Tensor s;
};
ProcessScales process_scales(NoiseProcess process, const torch::Tensor& sigma);

/// The variance-exploding score of a model trained on the variance-preserving process:
/// s_VE(y, σ) = α s_VP(α y, σ).
ScoreFn as_variance_exploding(ScoreFn variance_preserving_model);

std::string to_string(SigmaDistribution value);
std::string to_string(SigmaGrid value);
std::string to_string(NoiseProcess value);
/// Parsers for config values; throw psm::Error listing the known names.
SigmaDistribution sigma_distribution_from_string(const std::string& name);
SigmaGrid sigma_grid_from_string(const std::string& name);
NoiseProcess noise_process_from_string(const std::string& name);

}  // namespace psm
