#include "psm/diffusion/likelihood.h"

#include <fmt/format.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/core/value_registry.h"

namespace psm {

namespace {

const ValueRegistry<DivergenceMethod> kDivergenceNames(
    "divergence",
    {{"exact", DivergenceMethod::exact}, {"hutchinson", DivergenceMethod::hutchinson}});

constexpr uint64_t kProbeStream = 0x70726f6265ULL;  // "probe"

/// log N(y; 0, σ² P) [B] of y [B, N, D] in the space of dimension `dim`.
torch::Tensor prior_log_density(const torch::Tensor& y, double sigma, int64_t dim, bool com_free) {
  const torch::Tensor squared = project(y, com_free).flatten(1).square().sum(1);
  return -0.5 * static_cast<double>(dim) * std::log(2 * std::numbers::pi * sigma * sigma) -
         squared / (2 * sigma * sigma);
}

/// Rademacher probes [K, B, N, D] (±1, then projected onto the space), from `rng`.
torch::Tensor rademacher_probes(int64_t probes, torch::IntArrayRef shape, torch::Generator& rng,
                                const torch::TensorOptions& options, bool com_free) {
  std::vector<int64_t> full{probes};
  full.insert(full.end(), shape.begin(), shape.end());
  const torch::Tensor signs =
      torch::randint(0, 2, full, rng, options.device(rng.device())).mul_(2).sub_(1);
  const torch::Tensor v = signs.to(options.device()).flatten(0, 1);
  return project(v, com_free).view(full);
}

/// Integrates x and ∫ σ ∇·s dσ up the ascending levels with Heun's method; returns log q [B].
torch::Tensor integrate_up(const ScoreFn& score, torch::Tensor x, const std::vector<double>& levels,
                           const torch::Tensor& probes, bool com_free,
                           const std::function<void()>& on_step) {
  const int64_t dim = effective_dim(x.size(1), x.size(2), com_free);
  torch::Tensor integral = torch::zeros({x.size(0)}, x.options());
  const auto at = [&](const torch::Tensor& y, double sigma) {
    return score_and_divergence(score, y, torch::full({y.size(0)}, sigma, y.options()), com_free,
                                probes);
  };
  for (size_t i = 0; i + 1 < levels.size(); ++i) {
    const double from = levels[i], to = levels[i + 1], h = to - from;
    const ScoreAndDivergence first = at(x, from);
    const torch::Tensor predicted = x - h * from * first.score;
    const ScoreAndDivergence second = at(predicted, to);
    x = x - 0.5 * h * (from * first.score + to * second.score);
    integral += 0.5 * h * (from * first.divergence + to * second.divergence);
    if (on_step) on_step();
  }
  return prior_log_density(x, levels.back(), dim, com_free) - integral;
}

}  // namespace

void LikelihoodOptions::validate(const std::string& context) const {
  check(steps >= 1, fmt::format("{}: steps must be >= 1 (got {})", context, steps));
  check(!error_estimate || steps % 2 == 0,
        fmt::format("{}: steps must be even for the error estimate (got {})", context, steps));
  check(sigma_min > 0 && sigma_min < sigma_max && std::isfinite(sigma_max),
        fmt::format("{}: need 0 < sigma_min < sigma_max < infinity (got {} and {})", context,
                    sigma_min, sigma_max));
  check(rho > 0, fmt::format("{}: rho must be positive (got {})", context, rho));
  check(probes >= 1, fmt::format("{}: probes must be >= 1 (got {})", context, probes));
  check(batch_size >= 1, fmt::format("{}: batch_size must be >= 1 (got {})", context, batch_size));
}

DivergenceMethod divergence_method(const LikelihoodOptions& options, int64_t effective_dim) {
  if (options.divergence) return *options.divergence;
  return effective_dim <= kExactDivergenceMaxDim ? DivergenceMethod::exact
                                                 : DivergenceMethod::hutchinson;
}

int64_t likelihood_evaluations(const LikelihoodOptions& options) {
  return 2 * options.steps + (options.error_estimate ? options.steps : 0);
}

ScoreAndDivergence score_and_divergence(const ScoreFn& score, const torch::Tensor& x,
                                        const torch::Tensor& sigma, bool com_free,
                                        const torch::Tensor& probes) {
  torch::AutoGradMode enable_grad(true);
  const torch::Tensor input = x.detach().requires_grad_(true);
  const torch::Tensor s = project(score(project(input, com_free), sigma).to(x.options()), com_free);
  torch::Tensor divergence = torch::zeros({x.size(0)}, x.options());
  if (!s.requires_grad()) return {s.detach(), divergence};  // a score that does not depend on x

  const auto vjp = [&](const torch::Tensor& output, const torch::Tensor& direction, bool last) {
    const torch::Tensor grad = torch::autograd::grad({output}, {input}, {direction},
                                                     /*retain_graph=*/!last,
                                                     /*create_graph=*/false,
                                                     /*allow_unused=*/true)[0];
    return grad.defined() ? grad : torch::zeros_like(input);
  };
  if (probes.defined()) {
    const int64_t count = probes.size(0);
    for (int64_t k = 0; k < count; ++k) {
      const torch::Tensor v = probes[k];
      divergence += (vjp(s, v, k + 1 == count) * v).flatten(1).sum(1);
    }
    divergence /= static_cast<double>(count);
  } else {
    // Row k of the Jacobian for every configuration at once: configurations are independent.
    const torch::Tensor flat = s.flatten(1);
    const int64_t coordinates = flat.size(1);
    const torch::Tensor ones = torch::ones({x.size(0)}, x.options());
    for (int64_t k = 0; k < coordinates; ++k) {
      divergence += vjp(flat.select(1, k), ones, k + 1 == coordinates).flatten(1).select(1, k);
    }
  }
  return {s.detach(), divergence};
}

LogDensity log_density(const ScoreFn& score, const torch::Tensor& x,
                       const LikelihoodOptions& options, const LikelihoodProgress& progress) {
  options.validate("likelihood");
  check(x.dim() == 3 && x.size(0) >= 1 && x.size(1) >= (options.com_free ? 2 : 1),
        fmt::format("likelihood: configurations must be [B, N, D] with B >= 1 and N >= {}",
                    options.com_free ? 2 : 1));
  check(torch::isfinite(x).all().item<bool>(),
        "likelihood: configurations hold NaN or Inf positions");
  torch::NoGradGuard no_grad;
  const torch::Tensor grid =
      sigma_grid(options.grid, options.sigma_max, options.sigma_min, options.steps, options.rho)
          .flip(0);
  const std::vector<double> fine(grid.data_ptr<double>(), grid.data_ptr<double>() + grid.numel());
  std::vector<double> coarse;
  for (size_t i = 0; i < fine.size(); i += 2) coarse.push_back(fine[i]);

  const int64_t count = x.size(0);
  const int64_t chunks = (count + options.batch_size - 1) / options.batch_size;
  const int64_t steps_per_chunk = options.steps + (options.error_estimate ? options.steps / 2 : 0);
  const bool exact =
      divergence_method(options, effective_dim(x.size(1), x.size(2), options.com_free)) ==
      DivergenceMethod::exact;
  const uint64_t probe_seed = derive_seed(options.seed, kProbeStream);
  int64_t done = 0;
  const auto on_step = [&] {
    ++done;
    if (progress) progress(done, chunks * steps_per_chunk);
  };
  std::vector<torch::Tensor> log_q, error;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t first = chunk * options.batch_size;
    const torch::Tensor start =
        project(x.narrow(0, first, std::min(options.batch_size, count - first)).to(torch::kFloat64),
                options.com_free);
    torch::Tensor probes;
    if (!exact) {
      torch::Generator rng = make_generator(probe_seed, static_cast<uint64_t>(chunk));
      probes =
          rademacher_probes(options.probes, start.sizes(), rng, start.options(), options.com_free);
    }
    log_q.push_back(integrate_up(score, start, fine, probes, options.com_free, on_step));
    if (options.error_estimate) {
      const torch::Tensor half =
          integrate_up(score, start, coarse, probes, options.com_free, on_step);
      error.push_back((log_q.back() - half).abs() / 3.0);
    }
  }
  LogDensity out{.log_q = torch::cat(log_q)};
  if (options.error_estimate) out.error = torch::cat(error);
  return out;
}

nlohmann::json to_json(const LikelihoodOptions& options) {
  return {
      {"steps", options.steps},
      {"grid", to_string(options.grid)},
      {"rho", options.rho},
      {"sigma_min", options.sigma_min},
      {"sigma_max", options.sigma_max},
      {"divergence", options.divergence ? nlohmann::json(to_string(*options.divergence)) : nullptr},
      {"probes", options.probes},
      {"error_estimate", options.error_estimate},
      {"batch_size", options.batch_size},
      {"seed", options.seed},
      {"com_free", options.com_free}};
}

std::string to_string(DivergenceMethod value) { return kDivergenceNames.name_of(value); }
DivergenceMethod divergence_method_from_string(const std::string& name) {
  return kDivergenceNames.get(name);
}

}  // namespace psm
