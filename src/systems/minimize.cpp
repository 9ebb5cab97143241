#include "psm/systems/minimize.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "psm/core/error.h"

namespace psm {

namespace {

// FIRE constants from Bitzek et al. (2006).
constexpr int64_t fire_min_steps_before_speedup = 5;
constexpr double fire_time_step_increase = 1.1;
constexpr double fire_time_step_decrease = 0.5;
constexpr double fire_alpha_start = 0.1;
constexpr double fire_alpha_decrease = 0.99;

void validate(const MinimizeOptions& options) {
  check(options.max_steps >= 0,
        fmt::format("minimize: max_steps must be >= 0, got {}", options.max_steps));
  check(options.force_tolerance > 0,
        fmt::format("minimize: force_tolerance must be positive, got {}", options.force_tolerance));
  check(options.time_step > 0 && options.max_time_step >= options.time_step,
        fmt::format("minimize: need 0 < time_step <= max_time_step, got {} and {}",
                    options.time_step, options.max_time_step));
  check(
      options.max_displacement > 0,
      fmt::format("minimize: max_displacement must be positive, got {}", options.max_displacement));
}

/// Sum over atoms and dimensions: [B, N, D] -> [B, 1, 1], ready to broadcast back.
torch::Tensor per_frame_sum(const torch::Tensor& t) { return t.sum({1, 2}, /*keepdim=*/true); }

/// Largest atom force norm per frame: [B, N, D] -> [B].
torch::Tensor max_atom_force(const torch::Tensor& forces) { return forces.norm(2, -1).amax(-1); }

}  // namespace

MinimizeResult minimize(const Potential& potential, const torch::Tensor& positions,
                        MinimizeOptions options) {
  validate(options);
  check(positions.dim() == 3, "minimize: positions must have shape [B, N, D]");
  const auto x0 = positions.to(torch::kFloat64);
  const int64_t frames = x0.size(0);
  const auto frame_options = x0.options();

  auto x = x0.clone();
  auto velocity = torch::zeros_like(x);
  auto time_step = torch::full({frames, 1, 1}, options.time_step, frame_options);
  auto alpha = torch::full({frames, 1, 1}, fire_alpha_start, frame_options);
  auto downhill_steps = torch::zeros({frames, 1, 1}, frame_options.dtype(torch::kLong));
  auto steps = torch::zeros({frames}, frame_options.dtype(torch::kLong));

  // Only frames still moving are evaluated: each evaluation may be an expensive (xtb) batch.
  auto evaluation = potential.evaluate(x);
  auto converged = max_atom_force(evaluation.forces) < options.force_tolerance;
  for (int64_t step = 0; step < options.max_steps && !converged.all().item<bool>(); ++step) {
    const auto& forces = evaluation.forces;
    const auto active = (~converged).view({frames, 1, 1});

    // Mix the velocity towards the force direction while moving downhill; restart on uphill.
    const auto power = per_frame_sum(forces * velocity);
    const auto downhill = power > 0;
    const auto speed = per_frame_sum(velocity.square()).sqrt();
    const auto force_norm = per_frame_sum(forces.square()).sqrt().clamp_min(1e-300);
    const auto mixed = (1.0 - alpha) * velocity + alpha * speed * forces / force_norm;
    velocity = torch::where(downhill, mixed, torch::zeros_like(velocity));
    const auto speed_up = downhill & (downhill_steps > fire_min_steps_before_speedup);
    time_step = torch::where(speed_up,
                             (time_step * fire_time_step_increase).clamp_max(options.max_time_step),
                             time_step);
    alpha = torch::where(speed_up, alpha * fire_alpha_decrease, alpha);
    time_step = torch::where(downhill, time_step, time_step * fire_time_step_decrease);
    alpha = torch::where(downhill, alpha, torch::full_like(alpha, fire_alpha_start));
    downhill_steps = torch::where(downhill, downhill_steps + 1, torch::zeros_like(downhill_steps));

    // Semi-implicit Euler with unit masses; the step is scaled so no atom moves too far.
    velocity = velocity + time_step * forces;
    auto displacement = time_step * velocity;
    const auto largest = displacement.norm(2, -1).amax(-1).view({frames, 1, 1});
    displacement = displacement * (options.max_displacement / largest).clamp_max(1.0);
    x = torch::where(active, x + displacement, x);
    velocity = torch::where(active, velocity, torch::zeros_like(velocity));
    steps += (~converged).to(torch::kLong);

    const auto moving = (~converged).nonzero().squeeze(1);
    const auto update = potential.evaluate(x.index_select(0, moving));
    evaluation.energy = evaluation.energy.index_copy(0, moving, update.energy);
    evaluation.forces = evaluation.forces.index_copy(0, moving, update.forces);
    converged = converged | (max_atom_force(evaluation.forces) < options.force_tolerance);
  }
  return {x, evaluation.energy, evaluation.forces, converged, steps};
}

}  // namespace psm
