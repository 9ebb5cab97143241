#include "psm/diffusion/sampler.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/core/value_registry.h"

namespace psm {

namespace {
const ValueRegistry<Solver> kSolverNames("solver", {{"euler_maruyama", Solver::euler_maruyama},
                                                    {"heun", Solver::heun},
                                                    {"edm", Solver::edm},
                                                    {"dpm_solver_2m", Solver::dpm_solver_2m},
                                                    {"adaptive_heun", Solver::adaptive_heun},
                                                    {"sde", Solver::euler_maruyama},
                                                    {"ode", Solver::heun},
                                                    {"dpm2", Solver::dpm_solver_2m},
                                                    {"adaptive", Solver::adaptive_heun}});
/// The keys of a JSON object, in its order.
std::vector<std::string> known_keys(const nlohmann::json& object) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : object.items()) keys.push_back(key);
  return keys;
}

constexpr uint64_t kSamplingStream = 0x73616d706c65ULL;  // "sample"
}  // namespace

void SamplerOptions::validate(const std::string& context) const {
  check(steps >= 1, fmt::format("{}: steps must be >= 1 (got {})", context, steps));
  check(batch_size >= 1, fmt::format("{}: batch_size must be >= 1 (got {})", context, batch_size));
  check(sigma_min > 0 && sigma_min < sigma_max && std::isfinite(sigma_max),
        fmt::format("{}: need 0 < sigma_min < sigma_max < infinity (got {} and {})", context,
                    sigma_min, sigma_max));
  check(rho > 0, fmt::format("{}: rho must be positive (got {})", context, rho));
  check(corrector_steps >= 0,
        fmt::format("{}: corrector_steps must be >= 0 (got {})", context, corrector_steps));
  check(snr > 0, fmt::format("{}: snr must be positive (got {})", context, snr));
  check(corrector_sigma_min >= 0,
        fmt::format("{}: corrector_sigma_min must be >= 0 (got {})", context, corrector_sigma_min));
  check(corrector_max_step > 0, fmt::format("{}: corrector_max_step must be positive (got {})",
                                            context, corrector_max_step));
  check(churn >= 0 && std::isfinite(churn),
        fmt::format("{}: churn must be >= 0 (got {})", context, churn));
  check(churn_sigma_min >= 0 && churn_sigma_min <= churn_sigma_max,
        fmt::format("{}: need 0 <= churn_sigma_min <= churn_sigma_max (got {} and {})", context,
                    churn_sigma_min, churn_sigma_max));
  check(churn_noise > 0,
        fmt::format("{}: churn_noise must be positive (got {})", context, churn_noise));
  check(solver != Solver::adaptive_heun || corrector_steps == 0,
        fmt::format("{}: the adaptive solver takes no corrector steps (got {})", context,
                    corrector_steps));
  check(tolerance > 0 && tolerance < 1,
        fmt::format("{}: tolerance must be in (0, 1) (got {})", context, tolerance));
}

int64_t score_evaluations(const SamplerOptions& options) {
  const bool one_per_step =
      options.solver == Solver::euler_maruyama || options.solver == Solver::dpm_solver_2m;
  const int64_t per_step = one_per_step ? 1 : 2;
  const torch::Tensor grid =
      sigma_grid(options.grid, options.sigma_max, options.sigma_min, options.steps, options.rho);
  const int64_t corrected_levels =
      (grid.slice(0, 1) >= options.corrector_sigma_min).sum().item<int64_t>();
  return per_step * options.steps + options.corrector_steps * corrected_levels +
         (options.denoise_final ? 1 : 0);
}

namespace {

/// The model's score at one noise level for every configuration, CoM-free when com_free.
class LevelScore {
 public:
  LevelScore(const ScoreFn& score, bool com_free) : score_(score), com_free_(com_free) {}
  torch::Tensor operator()(const torch::Tensor& x, double sigma) const {
    const torch::Tensor sigmas = torch::full({x.size(0)}, sigma, x.options());
    return project(score_(x, sigmas).to(x.options()), com_free_);
  }

 private:
  const ScoreFn& score_;
  bool com_free_;
};

/// dx/dσ = -σ s(x, σ), the probability-flow ODE's slope.
torch::Tensor ode_slope(const LevelScore& score, const torch::Tensor& x, double sigma) {
  return -sigma * score(x, sigma);
}

/// One Heun step from `from` (where the slope is `slope`) to `to`.
torch::Tensor heun_step(const LevelScore& score, const torch::Tensor& x, const torch::Tensor& slope,
                        double from, double to) {
  const torch::Tensor predicted = x + (to - from) * slope;
  return x + (to - from) * 0.5 * (slope + ode_slope(score, predicted, to));
}

/// The level EDM's stochastic sampler raises σ_i to before its Heun step: (1 + γ) σ_i inside
/// the churn band, σ_i outside it, never above σ_max (where the model was not trained).
double churned_level(const SamplerOptions& options, double sigma) {
  if (options.churn == 0 || sigma < options.churn_sigma_min || sigma > options.churn_sigma_max) {
    return sigma;
  }
  const double gamma =
      std::min(options.churn / static_cast<double>(options.steps), std::sqrt(2.0) - 1.0);
  return std::min(sigma * (1 + gamma), options.sigma_max);
}

/// DPM-Solver++(2M)'s memory: the previous step's denoiser output and log-σ step.
struct MultistepState {
  torch::Tensor denoised{};
  double h = 0;
};

/// One DPM-Solver++(2M) step from `from` to `to` (variance-exploding: α = 1).
torch::Tensor dpm_solver_2m_step(const LevelScore& score, const torch::Tensor& x, double from,
                                 double to, MultistepState& state) {
  const torch::Tensor denoised = x + from * from * score(x, from);
  const double h = std::log(from / to);
  torch::Tensor extrapolated = denoised;
  if (state.denoised.defined()) {
    const double r = state.h / h;
    extrapolated = (1 + 0.5 / r) * denoised - (0.5 / r) * state.denoised;
  }
  state = {denoised, h};
  return (to / from) * x + (1 - to / from) * extrapolated;
}

/// Langevin corrector steps at level σ (see the header).
torch::Tensor correct(const LevelScore& score, torch::Tensor x, double sigma,
                      const SamplerOptions& options, torch::Generator& rng) {
  const int64_t corrector_steps =
      sigma >= options.corrector_sigma_min ? options.corrector_steps : 0;
  for (int64_t k = 0; k < corrector_steps; ++k) {
    const torch::Tensor s = score(x, sigma);
    const torch::Tensor z = gaussian_noise(x.sizes(), rng, x.options(), options.com_free);
    // One step size per batch from median norms: a per-configuration ratio explodes where
    // the score nearly vanishes (near a mode), and a mean is swamped by a few clashes.
    const auto median_norm = [](const torch::Tensor& v) {
      return v.flatten(1).norm(2, 1).median().item<double>();
    };
    const double ratio = options.snr * median_norm(z) / std::max(median_norm(s), 1e-30);
    const double step = std::min(2 * ratio * ratio, options.corrector_max_step * sigma * sigma);
    x = x + step * s + std::sqrt(2 * step) * z;
  }
  return x;
}

/// Steps on the fixed grid of `options` with a fixed-step solver.
torch::Tensor integrate_on_grid(const LevelScore& score, torch::Tensor x,
                                const SamplerOptions& options, torch::Generator& rng,
                                const std::function<void(int64_t)>& on_step) {
  const torch::Tensor grid_tensor =
      sigma_grid(options.grid, options.sigma_max, options.sigma_min, options.steps, options.rho);
  const std::vector<double> grid(grid_tensor.data_ptr<double>(),
                                 grid_tensor.data_ptr<double>() + grid_tensor.numel());
  MultistepState multistep;
  for (int64_t i = 0; i < options.steps; ++i) {
    const double from = grid[i];
    const double to = grid[i + 1];
    switch (options.solver) {
      case Solver::euler_maruyama: {
        const double variance = from * from - to * to;
        x = x + variance * score(x, from) +
            std::sqrt(variance) * gaussian_noise(x.sizes(), rng, x.options(), options.com_free);
        break;
      }
      case Solver::heun:
        x = heun_step(score, x, ode_slope(score, x, from), from, to);
        break;
      case Solver::edm: {
        const double raised = churned_level(options, from);
        if (raised > from) {
          x = x + options.churn_noise * std::sqrt(raised * raised - from * from) *
                      gaussian_noise(x.sizes(), rng, x.options(), options.com_free);
        }
        x = heun_step(score, x, ode_slope(score, x, raised), raised, to);
        break;
      }
      case Solver::dpm_solver_2m:
        x = dpm_solver_2m_step(score, x, from, to, multistep);
        break;
      case Solver::adaptive_heun:
        throw Error("sampler: adaptive_heun has no fixed grid");
    }
    x = correct(score, x, to, options, rng);
    if (on_step) on_step(i + 1);
  }
  return x;
}

/// The probability-flow ODE by Heun steps in log σ whose size follows the Heun-Euler difference
/// (see the header); on_step reports progress in log σ as a count out of options.steps.
torch::Tensor integrate_adaptive(const LevelScore& score, torch::Tensor x,
                                 const SamplerOptions& options,
                                 const std::function<void(int64_t)>& on_step) {
  const double span = std::log(options.sigma_max / options.sigma_min);
  double log_step = span / static_cast<double>(options.steps);
  const double min_log_step = 1e-6 * span;
  double sigma = options.sigma_max;
  torch::Tensor slope = ode_slope(score, x, sigma);
  int64_t reported = 0;
  while (sigma > options.sigma_min) {
    const double to = std::max(sigma * std::exp(-log_step), options.sigma_min);
    const torch::Tensor predicted = x + (to - sigma) * slope;
    const torch::Tensor next_slope = ode_slope(score, predicted, to);
    const torch::Tensor corrected = x + (to - sigma) * 0.5 * (slope + next_slope);
    // The Euler-Heun difference per coordinate, RMS over the finite configurations, in units
    // of the tolerance times the level reached (errors far below σ are drowned by its noise).
    const torch::Tensor difference = (corrected - predicted).flatten(1);
    const torch::Tensor finite = torch::isfinite(difference).all(1);
    const double rms = finite.any().item<bool>()
                           ? difference.index({finite}).square().mean().sqrt().item<double>()
                           : 0.0;
    const double error = rms / (options.tolerance * to);
    if (error <= 1 || log_step <= min_log_step) {
      x = corrected;
      sigma = to;
      // Heun's slope at the end of the step is that of the predictor, not of x: evaluate anew.
      if (sigma > options.sigma_min) slope = ode_slope(score, x, sigma);
      const auto done = static_cast<int64_t>(static_cast<double>(options.steps) *
                                             std::log(options.sigma_max / sigma) / span);
      if (on_step && done > reported) on_step(reported = std::min(done, options.steps));
    }
    // Heun's local error is O(h³), the difference O(h²): the step scales as error^(-1/2).
    const double factor = std::clamp(0.9 / std::sqrt(std::max(error, 1e-12)), 0.2, 5.0);
    log_step = std::max(log_step * factor, min_log_step);
  }
  if (on_step && reported < options.steps) on_step(options.steps);
  return x;
}

}  // namespace

torch::Tensor integrate_reverse(const ScoreFn& score, torch::Tensor x,
                                const SamplerOptions& options, torch::Generator& rng,
                                const std::function<void(int64_t)>& on_step) {
  check(x.dim() == 3, "sampler: x must be [B, N, D]");
  torch::NoGradGuard no_grad;
  const LevelScore level_score(score, options.com_free);
  x = project(x, options.com_free);
  x = options.solver == Solver::adaptive_heun
          ? integrate_adaptive(level_score, x, options, on_step)
          : integrate_on_grid(level_score, x, options, rng, on_step);
  if (options.denoise_final) {
    x = x + options.sigma_min * options.sigma_min * level_score(x, options.sigma_min);
    if (on_step) on_step(options.steps + 1);
  }
  return x;
}

namespace {

/// Integrates `count` configurations in chunks of options.batch_size; chunk c starts from
/// start_of(first, size, rng) with its own seeded generator, so results do not depend on how
/// the work is split across calls.
template <typename StartFn>
/// This rank's block of the chunks, integrated; gathered on rank 0 under several ranks.
torch::Tensor integrate_in_chunks(const ScoreFn& score, int64_t count,
                                  const SamplerOptions& options, const SamplerProgress& progress,
                                  const Communicator& ranks, const StartFn& start_of) {
  torch::NoGradGuard no_grad;
  const int64_t chunks = (count + options.batch_size - 1) / options.batch_size;
  const auto [begin, end] = ranks.block(chunks);
  const int64_t steps_per_chunk = options.steps + (options.denoise_final ? 1 : 0);
  const int64_t total_steps = (end - begin) * steps_per_chunk;
  const uint64_t sampling_seed = derive_seed(options.seed, kSamplingStream);
  std::vector<torch::Tensor> samples;
  for (int64_t chunk = begin; chunk < end; ++chunk) {
    const int64_t first = chunk * options.batch_size;
    const int64_t size = std::min(options.batch_size, count - first);
    torch::Generator rng = make_generator(sampling_seed, static_cast<uint64_t>(chunk));
    const torch::Tensor start = start_of(first, size, rng);
    samples.push_back(integrate_reverse(score, start, options, rng, [&](int64_t step) {
      if (progress) progress((chunk - begin) * steps_per_chunk + step, total_steps);
    }));
  }
  if (ranks.size() == 1) return torch::cat(samples);
  // A rank without chunks (fewer chunks than ranks) sends no rows of the same shape.
  const torch::Tensor local =
      samples.empty() ? torch::empty({0, 0, 0}, torch::kFloat64) : torch::cat(samples).cpu();
  return ranks.gather(local);
}

}  // namespace

torch::Tensor sample_diffusion(const ScoreFn& score, int64_t count, int64_t num_atoms, int64_t dim,
                               const SamplerOptions& options,
                               const torch::TensorOptions& tensor_options,
                               const SamplerProgress& progress, const Communicator& ranks) {
  options.validate("sampler");
  check(count >= 1, fmt::format("sampler: count must be >= 1 (got {})", count));
  check(num_atoms >= (options.com_free ? 2 : 1) && dim >= 1,
        fmt::format("sampler: cannot sample {} atoms in {} dimensions", num_atoms, dim));
  return integrate_in_chunks(
      score, count, options, progress, ranks, [&](int64_t, int64_t size, torch::Generator& rng) {
        return options.sigma_max *
               gaussian_noise({size, num_atoms, dim}, rng, tensor_options, options.com_free);
      });
}

torch::Tensor renoise_and_integrate(const ScoreFn& score, const torch::Tensor& frames,
                                    const SamplerOptions& options, const SamplerProgress& progress,
                                    const Communicator& ranks) {
  options.validate("sampler");
  check(frames.dim() == 3 && frames.size(0) >= 1,
        "sampler: frames to renoise must be [B, N, D] with B >= 1");
  return integrate_in_chunks(
      score, frames.size(0), options, progress, ranks,
      [&](int64_t first, int64_t size, torch::Generator& rng) {
        const torch::Tensor x0 = frames.narrow(0, first, size);
        return project(x0, options.com_free) +
               options.sigma_max * gaussian_noise(x0.sizes(), rng, x0.options(), options.com_free);
      });
}

torch::Tensor finite_samples(const torch::Tensor& samples) {
  return samples.index({torch::isfinite(samples).flatten(1).all(1)});
}

nlohmann::json to_json(const SamplerOptions& options) {
  const bool capped = std::isfinite(options.corrector_max_step);
  return {
      {"solver", to_string(options.solver)},
      {"steps", options.steps},
      {"grid", to_string(options.grid)},
      {"rho", options.rho},
      {"sigma_min", options.sigma_min},
      {"sigma_max", options.sigma_max},
      {"denoise_final", options.denoise_final},
      {"corrector_steps", options.corrector_steps},
      {"snr", options.snr},
      {"corrector_sigma_min", options.corrector_sigma_min},
      {"corrector_max_step", capped ? nlohmann::json(options.corrector_max_step) : nullptr},
      {"churn", options.churn},
      {"churn_sigma_min", options.churn_sigma_min},
      {"churn_sigma_max",
       std::isfinite(options.churn_sigma_max) ? nlohmann::json(options.churn_sigma_max) : nullptr},
      {"churn_noise", options.churn_noise},
      {"tolerance", options.tolerance},
      {"batch_size", options.batch_size},
      {"seed", options.seed},
      {"com_free", options.com_free}};
}

SamplerOptions sampler_options_from_json(const nlohmann::json& json, const std::string& source) {
  check(json.is_object(), fmt::format("{}: sampler options must be a JSON object", source));
  SamplerOptions options;
  const nlohmann::json known = to_json(options);
  for (const auto& [key, value] : json.items()) {
    check(known.contains(key), fmt::format("{}: unknown sampler option '{}' (known: {})", source,
                                           key, fmt::join(known_keys(known), ", ")));
  }
  try {
    options.solver = solver_from_string(json.value("solver", to_string(options.solver)));
    options.steps = json.value("steps", options.steps);
    options.grid = sigma_grid_from_string(json.value("grid", to_string(options.grid)));
    options.rho = json.value("rho", options.rho);
    options.sigma_min = json.value("sigma_min", options.sigma_min);
    options.sigma_max = json.value("sigma_max", options.sigma_max);
    options.denoise_final = json.value("denoise_final", options.denoise_final);
    options.corrector_steps = json.value("corrector_steps", options.corrector_steps);
    options.snr = json.value("snr", options.snr);
    options.corrector_sigma_min = json.value("corrector_sigma_min", options.corrector_sigma_min);
    const nlohmann::json cap = json.value("corrector_max_step", nlohmann::json());
    if (!cap.is_null()) options.corrector_max_step = cap.get<double>();
    options.churn = json.value("churn", options.churn);
    options.churn_sigma_min = json.value("churn_sigma_min", options.churn_sigma_min);
    const nlohmann::json band_top = json.value("churn_sigma_max", nlohmann::json());
    if (!band_top.is_null()) options.churn_sigma_max = band_top.get<double>();
    options.churn_noise = json.value("churn_noise", options.churn_noise);
    options.tolerance = json.value("tolerance", options.tolerance);
    options.batch_size = json.value("batch_size", options.batch_size);
    options.seed = json.value("seed", options.seed);
    options.com_free = json.value("com_free", options.com_free);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: sampler options: {}", source, e.what()));
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", source, e.what()));
  }
  options.validate(source);
  return options;
}

std::string to_string(Solver value) { return kSolverNames.name_of(value); }
Solver solver_from_string(const std::string& name) { return kSolverNames.get(name); }

}  // namespace psm
