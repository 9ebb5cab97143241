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
                                                    {"sde", Solver::euler_maruyama},
                                                    {"ode", Solver::heun}});
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
}

int64_t score_evaluations(const SamplerOptions& options) {
  const int64_t per_step = options.solver == Solver::heun ? 2 : 1;
  const torch::Tensor grid =
      sigma_grid(options.grid, options.sigma_max, options.sigma_min, options.steps, options.rho);
  const int64_t corrected_levels =
      (grid.slice(0, 1) >= options.corrector_sigma_min).sum().item<int64_t>();
  return per_step * options.steps + options.corrector_steps * corrected_levels +
         (options.denoise_final ? 1 : 0);
}

torch::Tensor integrate_reverse(const ScoreFn& score, torch::Tensor x,
                                const SamplerOptions& options, torch::Generator& rng,
                                const std::function<void(int64_t)>& on_step) {
  check(x.dim() == 3, "sampler: x must be [B, N, D]");
  torch::NoGradGuard no_grad;
  const torch::Tensor grid_tensor =
      sigma_grid(options.grid, options.sigma_max, options.sigma_min, options.steps, options.rho);
  const std::vector<double> grid(grid_tensor.data_ptr<double>(),
                                 grid_tensor.data_ptr<double>() + grid_tensor.numel());
  const auto evaluate = [&](const torch::Tensor& at, double sigma) {
    const torch::Tensor sigmas = torch::full({at.size(0)}, sigma, at.options());
    return project(score(at, sigmas).to(at.options()), options.com_free);
  };

  x = project(x, options.com_free);
  for (int64_t i = 0; i < options.steps; ++i) {
    const double from = grid[i];
    const double to = grid[i + 1];
    switch (options.solver) {
      case Solver::euler_maruyama: {
        const double variance = from * from - to * to;
        x = x + variance * evaluate(x, from) +
            std::sqrt(variance) * gaussian_noise(x.sizes(), rng, x.options(), options.com_free);
        break;
      }
      case Solver::heun: {
        const torch::Tensor slope = -from * evaluate(x, from);
        const torch::Tensor predicted = x + (to - from) * slope;
        const torch::Tensor corrected_slope = -to * evaluate(predicted, to);
        x = x + (to - from) * 0.5 * (slope + corrected_slope);
        break;
      }
    }
    const int64_t corrector_steps = to >= options.corrector_sigma_min ? options.corrector_steps : 0;
    for (int64_t k = 0; k < corrector_steps; ++k) {
      const torch::Tensor s = evaluate(x, to);
      const torch::Tensor z = gaussian_noise(x.sizes(), rng, x.options(), options.com_free);
      // One step size per batch from median norms: a per-configuration ratio explodes where
      // the score nearly vanishes (near a mode), and a mean is swamped by a few clashes.
      const auto median_norm = [](const torch::Tensor& v) {
        return v.flatten(1).norm(2, 1).median().item<double>();
      };
      const double ratio = options.snr * median_norm(z) / std::max(median_norm(s), 1e-30);
      const double step = std::min(2 * ratio * ratio, options.corrector_max_step * to * to);
      x = x + step * s + std::sqrt(2 * step) * z;
    }
    if (on_step) on_step(i + 1);
  }
  if (options.denoise_final) {
    x = x + options.sigma_min * options.sigma_min * evaluate(x, options.sigma_min);
    if (on_step) on_step(options.steps + 1);
  }
  return x;
}

namespace {

/// Integrates `count` configurations in chunks of options.batch_size; chunk c starts from
/// start_of(first, size, rng) with its own seeded generator, so results do not depend on how
/// the work is split across calls.
template <typename StartFn>
torch::Tensor integrate_in_chunks(const ScoreFn& score, int64_t count,
                                  const SamplerOptions& options, const SamplerProgress& progress,
                                  const StartFn& start_of) {
  torch::NoGradGuard no_grad;
  const int64_t chunks = (count + options.batch_size - 1) / options.batch_size;
  const int64_t steps_per_chunk = options.steps + (options.denoise_final ? 1 : 0);
  const uint64_t sampling_seed = derive_seed(options.seed, kSamplingStream);
  std::vector<torch::Tensor> samples;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t first = chunk * options.batch_size;
    const int64_t size = std::min(options.batch_size, count - first);
    torch::Generator rng = make_generator(sampling_seed, static_cast<uint64_t>(chunk));
    const torch::Tensor start = start_of(first, size, rng);
    samples.push_back(integrate_reverse(score, start, options, rng, [&](int64_t step) {
      if (progress) progress(chunk * steps_per_chunk + step, chunks * steps_per_chunk);
    }));
  }
  return torch::cat(samples);
}

}  // namespace

torch::Tensor sample_diffusion(const ScoreFn& score, int64_t count, int64_t num_atoms, int64_t dim,
                               const SamplerOptions& options,
                               const torch::TensorOptions& tensor_options,
                               const SamplerProgress& progress) {
  options.validate("sampler");
  check(count >= 1, fmt::format("sampler: count must be >= 1 (got {})", count));
  check(num_atoms >= (options.com_free ? 2 : 1) && dim >= 1,
        fmt::format("sampler: cannot sample {} atoms in {} dimensions", num_atoms, dim));
  return integrate_in_chunks(
      score, count, options, progress, [&](int64_t, int64_t size, torch::Generator& rng) {
        return options.sigma_max *
               gaussian_noise({size, num_atoms, dim}, rng, tensor_options, options.com_free);
      });
}

torch::Tensor renoise_and_integrate(const ScoreFn& score, const torch::Tensor& frames,
                                    const SamplerOptions& options,
                                    const SamplerProgress& progress) {
  options.validate("sampler");
  check(frames.dim() == 3 && frames.size(0) >= 1,
        "sampler: frames to renoise must be [B, N, D] with B >= 1");
  return integrate_in_chunks(
      score, frames.size(0), options, progress,
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
  return {{"solver", to_string(options.solver)},
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
