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

/// ∂s/∂x [B, d, d] (row k: the gradient of the flattened s's coordinate k), one vector-Jacobian
/// product per row, batched over the configurations, which are independent. Frees the graph.
torch::Tensor jacobian(const torch::Tensor& s, const torch::Tensor& input) {
  const torch::Tensor flat = s.flatten(1);
  const int64_t coordinates = flat.size(1);
  const torch::Tensor ones = torch::ones({flat.size(0)}, flat.options());
  std::vector<torch::Tensor> rows;
  rows.reserve(static_cast<size_t>(coordinates));
  for (int64_t k = 0; k < coordinates; ++k) {
    const torch::Tensor row = torch::autograd::grad({flat.select(1, k)}, {input}, {ones},
                                                    /*retain_graph=*/k + 1 < coordinates,
                                                    /*create_graph=*/false,
                                                    /*allow_unused=*/true)[0];
    rows.push_back(row.defined() ? row.flatten(1) : torch::zeros_like(flat));
  }
  return torch::stack(rows, 1);
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

  if (!probes.defined()) {
    return {s.detach(), jacobian(s, input).diagonal(0, 1, 2).sum(1)};
  }
  const int64_t count = probes.size(0);
  for (int64_t k = 0; k < count; ++k) {
    const torch::Tensor v = probes[k];
    const torch::Tensor grad = torch::autograd::grad({s}, {input}, {v},
                                                     /*retain_graph=*/k + 1 < count,
                                                     /*create_graph=*/false,
                                                     /*allow_unused=*/true)[0];
    if (grad.defined()) divergence += (grad * v).flatten(1).sum(1);
  }
  divergence /= static_cast<double>(count);
  return {s.detach(), divergence};
}

DenoisingStep denoising_step(const ScoreFn& score, const torch::Tensor& x, double sigma,
                             bool com_free) {
  torch::AutoGradMode enable_grad(true);
  const torch::Tensor input = project(x.detach(), com_free).requires_grad_(true);
  const torch::Tensor s =
      project(score(input, torch::full({x.size(0)}, sigma, x.options())).to(x.options()), com_free);
  const torch::Tensor positions = (input + sigma * sigma * s).detach();
  const int64_t d = s[0].numel();
  if (!s.requires_grad()) return {positions, torch::zeros({x.size(0)}, x.options())};
  // On the translations the step is the identity, and it maps the centre-of-mass-free space
  // into itself, so the full determinant is that within the space.
  const torch::Tensor step = torch::eye(d, x.options()) + sigma * sigma * jacobian(s, input);
  const auto [sign, log_abs] = torch::linalg::slogdet(step);
  return {positions, torch::where(sign > 0, log_abs, torch::full_like(log_abs, NAN))};
}

torch::Tensor invert_denoising_step(const ScoreFn& score, const torch::Tensor& y, double sigma,
                                    bool com_free, double tolerance, int64_t max_iterations) {
  torch::NoGradGuard no_grad;
  const torch::Tensor target = project(y, com_free);
  const torch::Tensor sigmas = torch::full({y.size(0)}, sigma, y.options());
  torch::Tensor x = target;
  torch::Tensor moved;
  for (int64_t i = 0; i < max_iterations; ++i) {
    const torch::Tensor next =
        target - sigma * sigma * project(score(x, sigmas).to(y.options()), com_free);
    moved = (next - x).abs().flatten(1).amax(1);
    x = next;
    if ((moved <= tolerance).all().item<bool>()) return x;
  }
  const torch::Tensor stuck = ~(moved <= tolerance);
  throw Error(fmt::format(
      "likelihood: the final denoising step at sigma_min = {} does not invert for {} of {} "
      "configurations in {} iterations (largest move {:.3g}): the score is too stiff there",
      sigma, stuck.sum().item<int64_t>(), y.size(0), max_iterations, moved.max().item<double>()));
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
    const torch::Tensor before =
        options.denoised ? invert_denoising_step(score, start, options.sigma_min, options.com_free)
                         : start;
    const torch::Tensor correction =
        options.denoised
            ? denoising_step(score, before, options.sigma_min, options.com_free).log_det
            : torch::zeros({start.size(0)}, start.options());
    log_q.push_back(integrate_up(score, before, fine, probes, options.com_free, on_step) -
                    correction);
    if (options.error_estimate) {
      const torch::Tensor half =
          integrate_up(score, before, coarse, probes, options.com_free, on_step) - correction;
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
      {"com_free", options.com_free},
      {"denoised", options.denoised}};
}

std::string to_string(DivergenceMethod value) { return kDivergenceNames.name_of(value); }
DivergenceMethod divergence_method_from_string(const std::string& name) {
  return kDivergenceNames.get(name);
}

}  // namespace psm
