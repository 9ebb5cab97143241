#pragma once
// The exact log-density of a score model, through its probability-flow ODE (Song et al. 2021,
// "Score-based generative modeling through SDEs", appendix D.2; Chen et al. 2018, FFJORD).
//
// Along dx/dσ = -σ s(x, σ) the instantaneous change of variables gives
// d log p_σ(x(σ)) / dσ = -∇·(-σ s) = σ ∇·s(x, σ), so a configuration x at σ_min has
//
//   log q(x) = log N(x(σ_max); 0, σ_max² P) - ∫_{σ_min}^{σ_max} σ ∇·s(x(σ), σ) dσ,
//
// with x(σ) the ODE solution from x(σ_min) = x up to σ_max. The prior is the start of the
// samplers (sampler.h), so for samples that the probability-flow ODE drew without the final
// denoising step, q is the density they were drawn from, up to the integration error.
//
// The samplers end with the denoising step y = D(x) = x + σ_min² s(x, σ_min) (Tweedie's
// formula), which removes the noise σ_min leaves on stiff bonds and contacts. With `denoised`
// the configurations are such outputs y, and by the change of variables
//
//   log q_D(y) = log q(x) - log |det ∂D/∂x|,   x = D⁻¹(y),
//
// with x found by fixed-point iteration x ← y - σ_min² s(x, σ_min) (a contraction while
// σ_min² ‖∂s/∂x‖ < 1) and the determinant from the full Jacobian of the score (d
// vector-Jacobian products per configuration, once, whatever the divergence method).
//
// Convention: q is a density on the space the diffusion lives in, with respect to Lebesgue
// measure in an orthonormal basis of it: the (N - 1) D-dimensional centre-of-mass-free
// subspace when com_free (N D-dimensional otherwise), in the frames' length unit, so log q is
// in nats and shifts by -d ln(c) when lengths are scaled by c. The prior's normaliser is
// (2π σ_max²)^(-d/2) with that d, as GaussianMixture's (analytic.h).
//
// The divergence within the space, tr(P J P) with J the Jacobian of the score, is exact (one
// vector-Jacobian product per coordinate of the configuration, each batched over the
// configurations, after one forward pass) or Hutchinson's unbiased estimate vᵀ J v with
// Rademacher probes v projected onto the space, drawn once per configuration and integration.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "psm/diffusion/schedule.h"
#include "psm/diffusion/score.h"

namespace psm {

enum class DivergenceMethod {
  exact,       ///< d vector-Jacobian products per evaluation
  hutchinson,  ///< `probes` vector-Jacobian products per evaluation, unbiased, noisy
};

/// Up to this many dimensions of the diffusion's space, the divergence is exact by default:
/// every system of the project's presets (LJ55: 162, the tetrapeptide: 123) is below it.
constexpr int64_t kExactDivergenceMaxDim = 256;

struct LikelihoodOptions {
  int64_t steps = 100;  ///< Heun steps from σ_min to σ_max (grid of steps + 1 levels)
  SigmaGrid grid = SigmaGrid::edm;
  double rho = 7.0;         ///< SigmaGrid::edm exponent
  double sigma_min = 0.01;  ///< length units, as the training schedule
  double sigma_max = 10.0;  ///< length units, as the training schedule
  /// none: exact up to kExactDivergenceMaxDim dimensions, Hutchinson above
  std::optional<DivergenceMethod> divergence{};
  int64_t probes = 1;  ///< Rademacher probes per configuration (Hutchinson)
  /// Also integrate on every other level of the grid (half the steps, 50 % more cost) and
  /// report |log q_n - log q_(n/2)| / 3, Richardson's estimate of Heun's error in log q_n.
  bool error_estimate = true;
  int64_t batch_size = 256;  ///< configurations integrated together
  uint64_t seed = 0;         ///< Hutchinson probes: chunk c draws from its own seeded stream
  bool com_free = true;
  /// The configurations are outputs of the samplers' final denoising step at σ_min (see above).
  bool denoised = false;

  /// Throws psm::Error naming `context` on an impossible value (steps must be even when
  /// error_estimate).
  void validate(const std::string& context) const;
};

/// The method `options` asks for, or its default for a space of `effective_dim` dimensions.
DivergenceMethod divergence_method(const LikelihoodOptions& options, int64_t effective_dim);

/// Score evaluations per configuration, each with its vector-Jacobian products (see above).
int64_t likelihood_evaluations(const LikelihoodOptions& options);

/// ∇·s(x, σ) within the space the diffusion lives in, [B] float64.
/// @param x      [B, N, D] float64 positions, length units
/// @param sigma  [B] float64 noise levels
/// @param probes [K, B, N, D] Rademacher probes already projected onto the space (Hutchinson;
///               the mean of vᵀ J v over them), undefined for the exact divergence
/// Also returns the score s(x, σ) [B, N, D] (projected, no gradient).
struct ScoreAndDivergence {
  torch::Tensor score;
  torch::Tensor divergence;
};
ScoreAndDivergence score_and_divergence(const ScoreFn& score, const torch::Tensor& x,
                                        const torch::Tensor& sigma, bool com_free,
                                        const torch::Tensor& probes = {});

/// The samplers' final denoising step y = x + σ² s(x, σ) of x [B, N, D] (float64), projected,
/// and log |det ∂y/∂x| [B] within the space (d vector-Jacobian products per configuration).
/// The log-determinant is NaN where the step folds space (determinant <= 0).
struct DenoisingStep {
  torch::Tensor positions;
  torch::Tensor log_det;
};
DenoisingStep denoising_step(const ScoreFn& score, const torch::Tensor& x, double sigma,
                             bool com_free);

/// x [B, N, D] with x + σ² s(x, σ) = y, by fixed-point iteration from x = y until no
/// coordinate moves by more than `tolerance` (length units). Throws psm::Error counting the
/// configurations that do not converge in `max_iterations`.
torch::Tensor invert_denoising_step(const ScoreFn& score, const torch::Tensor& y, double sigma,
                                    bool com_free, double tolerance = 1e-7,
                                    int64_t max_iterations = 200);

struct LogDensity {
  torch::Tensor log_q;  ///< [B] float64, nats (see the convention above)
  /// [B] float64, nats: Richardson's estimate of the integration error; undefined without
  /// error_estimate
  torch::Tensor error{};
};

/// Called after each chunk's integration steps with the steps done and the total.
using LikelihoodProgress = std::function<void(int64_t done, int64_t total)>;

/// log q of each configuration x [B, N, D] (float64, any device), integrated in chunks of
/// options.batch_size; with options.denoised, log q_D of the denoised configurations.
/// Configurations are projected onto the space first, so log q is invariant under translations
/// (com_free), and under rotations and relabellings of identical atoms when the score is
/// equivariant. Throws psm::Error on a wrong shape or non-finite input.
LogDensity log_density(const ScoreFn& score, const torch::Tensor& x,
                       const LikelihoodOptions& options, const LikelihoodProgress& progress = {});

nlohmann::json to_json(const LikelihoodOptions& options);
std::string to_string(DivergenceMethod value);
/// "exact" or "hutchinson"; throws psm::Error listing them.
DivergenceMethod divergence_method_from_string(const std::string& name);

}  // namespace psm
