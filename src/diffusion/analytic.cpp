#include "psm/diffusion/analytic.h"

#include <fmt/format.h>

#include <cmath>
#include <numbers>

#include "psm/core/error.h"

namespace psm {

namespace {

/// P as a [N D, N D] float64 matrix on the flattened configuration, on `device`.
torch::Tensor space_projection(int64_t num_atoms, int64_t dim, bool com_free,
                               torch::Device device) {
  const auto options = torch::TensorOptions().dtype(torch::kFloat64).device(device);
  const torch::Tensor identity = torch::eye(num_atoms * dim, options);
  if (!com_free) return identity;
  return identity - torch::kron(torch::full({num_atoms, num_atoms}, 1.0 / num_atoms, options),
                                torch::eye(dim, options));
}

double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-300);
}

/// Picks one component per batch element from all [K, B, d]: rows[b] = all[index[b], b].
torch::Tensor select_component(const torch::Tensor& all, const torch::Tensor& index) {
  const torch::Tensor gather_index = index.view({1, -1, 1}).expand({1, all.size(1), all.size(2)});
  return all.gather(0, gather_index).squeeze(0);
}

}  // namespace

GaussianMixture::GaussianMixture(torch::Tensor weights, torch::Tensor means,
                                 torch::Tensor covariances, bool com_free)
    : com_free_(com_free) {
  check(weights.dim() == 1 && weights.size(0) > 0,
        "GaussianMixture: weights must be a non-empty [K] tensor");
  const int64_t k = weights.size(0);
  check(means.dim() == 3 && means.size(0) == k,
        fmt::format("GaussianMixture: means must be [K={}, N, D]", k));
  num_atoms_ = means.size(1);
  dim_ = means.size(2);
  const int64_t d = num_atoms_ * dim_;
  check(!com_free || num_atoms_ > 1, "GaussianMixture: a CoM-free mixture needs N > 1 atoms");
  check(covariances.dim() == 3 && covariances.size(0) == k && covariances.size(1) == d &&
            covariances.size(2) == d,
        fmt::format("GaussianMixture: covariances must be [K={}, N D={}, N D={}]", k, d, d));
  weights = weights.to(torch::kFloat64);
  check((weights > 0).all().item<bool>(), "GaussianMixture: weights must be positive");
  log_weights_ = (weights / weights.sum()).log();
  means_ = project(means.to(torch::kFloat64), com_free).reshape({k, d});

  covariances = covariances.to(torch::kFloat64);
  const torch::Tensor p = space_projection(num_atoms_, dim_, com_free, covariances.device());
  check(relative_difference(covariances.transpose(1, 2), covariances) < 1e-10,
        "GaussianMixture: covariances must be symmetric");
  check(relative_difference(p.matmul(covariances).matmul(p), covariances) < 1e-8,
        "GaussianMixture: CoM-free covariances must vanish outside the CoM-free subspace");
  // Σ and I - P commute, so Σ - (I - P) has Σ's eigenvalues on the space and -1 on the
  // centre-of-mass directions: in ascending order the last d_eff eigenvectors span the space.
  const auto [eigenvalues, eigenvectors] =
      torch::linalg_eigh(covariances - (torch::eye(d, p.options()) - p), "L");
  const int64_t outside = d - effective_dim();
  check((eigenvalues.slice(1, 0, outside) < -0.5).all().item<bool>() &&
            (eigenvalues.slice(1, outside) > 0).all().item<bool>(),
        "GaussianMixture: covariances must be positive definite on the diffusion space");
  eigenvalues_ = eigenvalues.slice(1, outside).contiguous();
  basis_ = eigenvectors.slice(2, outside).contiguous();
}

GaussianMixture GaussianMixture::isotropic(const torch::Tensor& weights, const torch::Tensor& means,
                                           const torch::Tensor& stds, bool com_free) {
  check(stds.dim() == 1 && stds.size(0) == weights.size(0),
        "GaussianMixture::isotropic: stds must be [K], one per weight");
  check(means.dim() == 3, "GaussianMixture::isotropic: means must be [K, N, D]");
  const torch::Tensor p = space_projection(means.size(1), means.size(2), com_free, means.device());
  const torch::Tensor variances = stds.to(torch::kFloat64).square().view({-1, 1, 1});
  return GaussianMixture(weights, means, variances * p, com_free);
}

GaussianMixture GaussianMixture::harmonic(const torch::Tensor& stiffness,
                                          const torch::Tensor& minimum, double kT, bool com_free) {
  check(kT > 0, "GaussianMixture::harmonic: kT must be positive");
  check(minimum.dim() == 2, "GaussianMixture::harmonic: minimum must be [N, D]");
  const int64_t d = minimum.size(0) * minimum.size(1);
  check(stiffness.dim() == 2 && stiffness.size(0) == d && stiffness.size(1) == d,
        fmt::format("GaussianMixture::harmonic: stiffness must be [N D={}, N D={}]", d, d));
  const torch::Tensor p =
      space_projection(minimum.size(0), minimum.size(1), com_free, minimum.device());
  const torch::Tensor outside = torch::eye(d, p.options()) - p;
  // (P K P + (I - P))⁻¹ = K⁺ + (I - P), K⁺ the inverse of K on the space.
  const torch::Tensor k_space = p.matmul(stiffness.to(torch::kFloat64)).matmul(p);
  torch::Tensor covariance = kT * (torch::linalg_inv(k_space + outside) - outside);
  covariance = 0.5 * (covariance + covariance.t());
  return GaussianMixture(torch::ones({1}, p.options()), minimum.unsqueeze(0),
                         covariance.unsqueeze(0), com_free);
}

GaussianMixture::Terms GaussianMixture::terms(const torch::Tensor& x,
                                              const torch::Tensor& sigma) const {
  check(x.dim() == 3 && x.size(1) == num_atoms_ && x.size(2) == dim_,
        fmt::format("GaussianMixture: x must be [B, N={}, D={}]", num_atoms_, dim_));
  check(sigma.dim() == 1 && sigma.size(0) == x.size(0), "GaussianMixture: sigma must be [B]");
  const int64_t batch = x.size(0);
  const torch::Tensor flat = project(x.to(torch::kFloat64), com_free_).reshape({1, batch, -1});
  const torch::Tensor sigma2 = sigma.to(torch::kFloat64).square().view({1, -1, 1});
  Terms t;
  t.coords = torch::matmul(flat - means_.unsqueeze(1), basis_);
  t.variance = eigenvalues_.unsqueeze(1) + sigma2;
  const torch::Tensor quadratic = (t.coords.square() / t.variance).sum(-1);
  const torch::Tensor log_det = t.variance.log().sum(-1);
  const double log_2pi = std::log(2 * std::numbers::pi);
  t.log_joint = log_weights_.unsqueeze(1) -
                0.5 * (static_cast<double>(effective_dim()) * log_2pi + log_det + quadratic);
  return t;
}

torch::Tensor GaussianMixture::log_prob(const torch::Tensor& x, const torch::Tensor& sigma) const {
  return torch::logsumexp(terms(x, sigma).log_joint, 0);
}

torch::Tensor GaussianMixture::responsibilities(const torch::Tensor& x,
                                                const torch::Tensor& sigma) const {
  return torch::softmax(terms(x, sigma).log_joint, 0).t();
}

torch::Tensor GaussianMixture::score(const torch::Tensor& x, const torch::Tensor& sigma) const {
  const Terms t = terms(x, sigma);
  const torch::Tensor component_scores =
      torch::matmul(-t.coords / t.variance, basis_.transpose(1, 2));
  const torch::Tensor weights = torch::softmax(t.log_joint, 0).unsqueeze(-1);
  return (weights * component_scores).sum(0).view({-1, num_atoms_, dim_}).to(x.options());
}

torch::Tensor GaussianMixture::sample(int64_t n, torch::Generator& rng) const {
  const torch::Tensor component =
      torch::multinomial(log_weights_.exp().to(rng.device()), n, /*replacement=*/true, rng)
          .to(means_.device());
  const torch::Tensor z =
      torch::randn({1, n, effective_dim()}, rng, means_.options().device(rng.device()))
          .to(means_.device());
  const torch::Tensor all =
      means_.unsqueeze(1) +
      torch::matmul(eigenvalues_.sqrt().unsqueeze(1) * z, basis_.transpose(1, 2));
  return select_component(all, component).view({n, num_atoms_, dim_});
}

torch::Tensor GaussianMixture::sample_posterior(const torch::Tensor& x_sigma,
                                                const torch::Tensor& sigma,
                                                torch::Generator& rng) const {
  const Terms t = terms(x_sigma, sigma);
  const int64_t batch = x_sigma.size(0);
  const torch::Tensor component =
      torch::multinomial(torch::softmax(t.log_joint, 0).t().to(rng.device()), 1,
                         /*replacement=*/false, rng)
          .view({batch})
          .to(means_.device());
  // Per eigendirection the posterior of N(0, λ) observed with noise σ² is
  // N(λ / (λ + σ²) y, λ σ² / (λ + σ²)).
  const torch::Tensor shrink = eigenvalues_.unsqueeze(1) / t.variance;
  const torch::Tensor sigma2 = sigma.to(torch::kFloat64).square().view({1, -1, 1});
  const torch::Tensor z =
      torch::randn({1, batch, effective_dim()}, rng, means_.options().device(rng.device()))
          .to(means_.device());
  const torch::Tensor coords = shrink * t.coords + (shrink * sigma2).sqrt() * z;
  const torch::Tensor all = means_.unsqueeze(1) + torch::matmul(coords, basis_.transpose(1, 2));
  return select_component(all, component).view({batch, num_atoms_, dim_}).to(x_sigma.options());
}

ScoreFn GaussianMixture::score_fn() const {
  return [mixture = *this](const torch::Tensor& x, const torch::Tensor& sigma) {
    return mixture.score(x, sigma);
  };
}

}  // namespace psm
