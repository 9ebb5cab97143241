#pragma once
// Distributions whose noised scores are known in closed form, for tests and for validating
// samplers: Gaussian mixtures (a harmonic system is the one-component case), on configurations
// [N, D], optionally in the centre-of-mass-free subspace.
//
// Noising convolves with N(0, σ² P), P the projection onto the space the diffusion lives in
// (remove_mean when CoM-free, identity otherwise). A component N(μ, Σ) with Σ = P Σ P becomes
// N(μ, Σ + σ² P). Densities are with respect to Lebesgue measure on that d_eff-dimensional space
// (d_eff = (N - 1) D CoM-free), so normalisers carry (2π)^(d_eff/2), not (2π)^(N D / 2): with
// components of different widths the difference changes the mixture's responsibilities.

#include <torch/types.h>

#include <cstdint>

#include "psm/diffusion/score.h"

namespace psm {

class GaussianMixture {
 public:
  /// @param weights      [K] float64, positive; normalised here
  /// @param means        [K, N, D] float64, length units; projected onto the space here
  /// @param covariances  [K, N D, N D] float64, length², of the flattened configuration (index
  ///                     n D + d); symmetric, positive definite on the space and, when com_free,
  ///                     zero outside it (Σ = P Σ P). Throws psm::Error otherwise.
  GaussianMixture(torch::Tensor weights, torch::Tensor means, torch::Tensor covariances,
                  bool com_free);

  /// Components N(μ_k, std_k² P): isotropic within the space. stds [K] float64, length.
  static GaussianMixture isotropic(const torch::Tensor& weights, const torch::Tensor& means,
                                   const torch::Tensor& stds, bool com_free);

  /// The Boltzmann distribution of the harmonic potential U(x) = ½ (x - x_min)ᵀ K (x - x_min) at
  /// temperature kT: N(x_min, kT K⁺), K⁺ the inverse of K within the space.
  /// @param stiffness [N D, N D] float64, energy/length²; symmetric, positive definite on the
  ///                  space (only P K P is used)
  /// @param minimum   [N, D] float64, length
  static GaussianMixture harmonic(const torch::Tensor& stiffness, const torch::Tensor& minimum,
                                  double kT, bool com_free);

  int64_t num_components() const { return log_weights_.size(0); }
  int64_t num_atoms() const { return num_atoms_; }
  int64_t dim() const { return dim_; }
  bool com_free() const { return com_free_; }
  int64_t effective_dim() const { return psm::effective_dim(num_atoms_, dim_, com_free_); }

  /// log p_σ(x) [B] for x [B, N, D] (projected first) and sigma [B] (0 allowed).
  torch::Tensor log_prob(const torch::Tensor& x, const torch::Tensor& sigma) const;
  /// ∇_x log p_σ(x) [B, N, D], within the space.
  torch::Tensor score(const torch::Tensor& x, const torch::Tensor& sigma) const;
  /// Posterior component probabilities p(k | x_σ = x) [B, K].
  torch::Tensor responsibilities(const torch::Tensor& x, const torch::Tensor& sigma) const;
  /// n independent draws from p [n, N, D].
  torch::Tensor sample(int64_t n, torch::Generator& rng) const;
  /// One draw of x_0 ~ p(x_0 | x_σ = x_sigma) per row: a component from the responsibilities,
  /// then that component's Gaussian posterior. x_sigma [B, N, D], sigma [B] -> [B, N, D].
  torch::Tensor sample_posterior(const torch::Tensor& x_sigma, const torch::Tensor& sigma,
                                 torch::Generator& rng) const;
  /// The exact noised score as a ScoreFn (holds a copy of this mixture).
  ScoreFn score_fn() const;

 private:
  struct Terms {
    torch::Tensor coords;     ///< [K, B, d_eff] (x - μ_k) in component k's eigenbasis
    torch::Tensor variance;   ///< [K, B, d_eff] λ + σ²
    torch::Tensor log_joint;  ///< [K, B] log π_k + log N_k(x; σ)
  };
  Terms terms(const torch::Tensor& x, const torch::Tensor& sigma) const;

  int64_t num_atoms_;
  int64_t dim_;
  bool com_free_;
  torch::Tensor log_weights_;  ///< [K]
  torch::Tensor means_;        ///< [K, d], d = N D
  torch::Tensor eigenvalues_;  ///< [K, d_eff] of Σ_k on the space, positive
  torch::Tensor basis_;        ///< [K, d, d_eff] the matching orthonormal eigenvectors, columns
};

}  // namespace psm
