#pragma once
// Sampling a trained score model: integrate from N(0, σ_max² P) at σ_max down to σ_min on a
// descending σ grid, with the reverse SDE or the probability-flow ODE of the variance-exploding
// process (Karras et al. 2022, "EDM", with σ(t) = t, s(t) = 1):
//
//   reverse SDE, Euler-Maruyama:  x <- x + (σ_i² - σ_{i+1}²) s(x, σ_i) + sqrt(σ_i² - σ_{i+1}²) z
//   probability-flow ODE, Heun:   dx/dσ = -σ s(x, σ), trapezoidal corrector on every step
//                                 (EDM Algorithm 1)
//   EDM's stochastic sampler:     at levels σ_i in [churn_sigma_min, churn_sigma_max], first
//                                 raise the noise to σ̂ = (1 + γ) σ_i, γ = min(churn / steps,
//                                 √2 - 1), by adding sqrt(σ̂² - σ_i²) churn_noise z, then a Heun
//                                 step from σ̂ to σ_{i+1} (EDM Algorithm 2); churn = 0 is heun
//   DPM-Solver++(2M):             the exponential integrator of the same ODE in λ = -log σ with
//                                 the denoiser D(x, σ) = x + σ² s(x, σ), second order from the
//                                 previous step's D (Lu et al. 2022), one evaluation per step:
//                                 x <- (σ_{i+1}/σ_i) x + (1 - σ_{i+1}/σ_i) D̃,
//                                 D̃ = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}, r = h_{i-1} / h_i,
//                                 first order (D̃ = D_i) on the first step
//   adaptive Heun:                Heun steps in log σ whose size is set by the difference of
//                                 the Heun and Euler results (an embedded pair): the RMS of it
//                                 over the batch in units of σ_{i+1} is kept near `tolerance`;
//                                 `steps` then only sets the first step (log(σ_max/σ_min)/steps)
//
// With corrector_steps > 0 each step is followed by that many Langevin corrector steps at the
// new level (predictor-corrector sampling, Song et al. 2021):
//
//   x <- x + ε s(x, σ) + sqrt(2 ε) z,   ε = min(2 (snr ||z|| / ||s(x, σ)||)², c σ²)
//
// (norms are batch medians, c is corrector_max_step) which relaxes x towards the model's p_σ at
// fixed σ before the next step, at levels σ >= corrector_sigma_min. The unadjusted step heats a
// mode of variance v to v / (1 - ε / 2v); every mode of p_σ has v >= σ² (-∇² log p_σ <= I / σ²),
// so the cap bounds that heating by 1 / (1 - c / 2) whatever the data's stiffness (the annealed
// Langevin step of Song & Ermon 2019 is also proportional to σ²). The snr rule alone does not
// bound it: its step follows the mean stiffness of the data, not the largest.
// When denoise_final, the last level is followed by one noise-free Euler step from σ_min to 0,
// x <- x + σ_min² s(x, σ_min) (Tweedie's posterior mean; EDM's Euler last step). Noise z and the
// start are CoM-free when com_free. A variance-preserving model is sampled through
// as_variance_exploding() (schedule.h).

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include "psm/core/communicator.h"
#include "psm/diffusion/schedule.h"
#include "psm/diffusion/score.h"

namespace psm {

enum class Solver {
  euler_maruyama,  ///< reverse SDE; one score evaluation per step; O(1/steps) bias
  heun,            ///< probability-flow ODE, deterministic given the start; two per step
  edm,             ///< EDM's stochastic Heun sampler (churn in a σ band); two per step
  dpm_solver_2m,   ///< DPM-Solver++(2M), second-order multistep ODE solver; one per step
  adaptive_heun,   ///< probability-flow ODE, Heun with step-size control; two per step
};

struct SamplerOptions {
  Solver solver = Solver::heun;
  int64_t steps = 100;  ///< integration steps from σ_max to σ_min (grid of steps + 1 levels)
  SigmaGrid grid = SigmaGrid::edm;
  double rho = 7.0;                ///< SigmaGrid::edm exponent
  double sigma_min = 0.01;         ///< length units, as the training schedule
  double sigma_max = 10.0;         ///< length units, as the training schedule
  bool denoise_final = true;       ///< finish with the Euler step from σ_min to 0
  int64_t corrector_steps = 0;     ///< Langevin corrector steps after each step (0: none)
  double snr = 0.16;               ///< corrector signal-to-noise ratio (sets its step size)
  double corrector_sigma_min = 0;  ///< corrector steps only at levels σ >= this
  /// Largest corrector step in units of σ² (heats any mode by at most 1 / (1 - c / 2))
  double corrector_max_step = std::numeric_limits<double>::infinity();
  /// Solver::edm: total churn S_churn over the grid (γ = min(churn / steps, √2 - 1) per step)
  double churn = 0;
  double churn_sigma_min = 0;  ///< Solver::edm: churn at levels σ_i >= this ...
  double churn_sigma_max = std::numeric_limits<double>::infinity();  ///< ... and <= this
  double churn_noise = 1.0;  ///< Solver::edm: S_noise, the added noise's scale (EDM: 1.003-1.007)
  /// Solver::adaptive_heun: the RMS step error kept near this fraction of the next σ
  double tolerance = 0.02;
  int64_t batch_size = 256;  ///< configurations integrated together
  uint64_t seed = 0;         ///< chunk c draws from make_generator(derive_seed(seed, S), c)
  bool com_free = true;

  /// Throws psm::Error naming `context` (a config section) on an impossible value.
  void validate(const std::string& context) const;
};

/// Called after every step with the steps done and the total, over all chunks.
using SamplerProgress = std::function<void(int64_t done, int64_t total)>;

/// Score evaluations per configuration: steps (Euler-Maruyama, DPM-Solver) or 2 steps (Heun,
/// EDM), plus corrector_steps per step, plus one for the final denoising step. For
/// adaptive_heun the count of its first step size; the actual one depends on the score.
int64_t score_evaluations(const SamplerOptions& options);

/// Integrates x [B, N, D] (float64, at σ_max: e.g. σ_max times gaussian_noise) down the grid of
/// `options`; returns the samples [B, N, D]. The SDE draws its noise from `rng`. `on_step`
/// receives the number of steps done (steps, plus one for the denoising step). No gradients.
torch::Tensor integrate_reverse(const ScoreFn& score, torch::Tensor x,
                                const SamplerOptions& options, torch::Generator& rng,
                                const std::function<void(int64_t)>& on_step = {});

/// `count` samples [count, num_atoms, dim] (dtype and device of `tensor_options`, float64
/// advised), integrated in chunks of options.batch_size, each from its own seeded generator.
/// Several `ranks` share the chunks out in contiguous blocks (a chunk's samples do not depend on
/// which rank integrates it) and rank 0 returns all samples, on the CPU when ranks.size() > 1;
/// the other ranks return an undefined tensor. Spread a small count by a smaller batch_size.
torch::Tensor sample_diffusion(const ScoreFn& score, int64_t count, int64_t num_atoms, int64_t dim,
                               const SamplerOptions& options,
                               const torch::TensorOptions& tensor_options = torch::kFloat64,
                               const SamplerProgress& progress = {},
                               const Communicator& ranks = Communicator());

/// Partial diffusion: each frame of `frames` [B, N, D] (float64 advised) is noised to
/// options.sigma_max and integrated back down to σ_min. With σ_max below the data's scale the
/// result depends only on the learned score at σ <= σ_max, which locates where a model goes
/// wrong (a good score returns frames distributed like the data).
/// `ranks` share the chunks as in sample_diffusion (every rank passes all `frames`).
torch::Tensor renoise_and_integrate(const ScoreFn& score, const torch::Tensor& frames,
                                    const SamplerOptions& options,
                                    const SamplerProgress& progress = {},
                                    const Communicator& ranks = Communicator());

/// The samples [B, ...] whose values are all finite, in order. A sample that diverged (an
/// overflow where a learned score is wild) is left out rather than spoiling every metric.
torch::Tensor finite_samples(const torch::Tensor& samples);

/// Every option, by its field name, with solver and grid by name; an infinite
/// corrector_max_step or churn_sigma_max is null (JSON has no infinity).
nlohmann::json to_json(const SamplerOptions& options);
/// Reads what to_json wrote; absent keys keep their defaults. Throws psm::Error naming `source`
/// on an unknown key, a value of the wrong type or an impossible option.
SamplerOptions sampler_options_from_json(const nlohmann::json& json, const std::string& source);

std::string to_string(Solver value);
/// "euler_maruyama" (or "sde"), "heun" (or "ode"), "edm", "dpm_solver_2m" (or "dpm2") and
/// "adaptive_heun" (or "adaptive"); throws psm::Error listing them.
Solver solver_from_string(const std::string& name);

}  // namespace psm
