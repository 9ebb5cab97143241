#pragma once
// Batched local energy minimisation with FIRE (Bitzek et al., PRL 97, 170201, 2006): damped
// dynamics with unit masses that mixes the velocity towards the force and restarts on uphill
// motion. Each configuration of the batch has its own time step and mixing and is frozen once
// converged.

#include <torch/types.h>

#include <cstdint>

#include "psm/systems/potential.h"

namespace psm {

struct MinimizeOptions {
  int64_t max_steps = 5000;       ///< FIRE steps at most
  double force_tolerance = 1e-6;  ///< converged when every atom's |F| is below, energy/length
  double time_step = 0.05;        ///< initial time step, sqrt(length^2 / energy) (unit mass)
  double max_time_step = 0.5;     ///< upper bound on the adaptive time step
  double max_displacement = 0.1;  ///< largest move of any atom in one step, length units
};

struct MinimizeResult {
  torch::Tensor positions;  ///< [B, N, D] float64, final configurations
  torch::Tensor energy;     ///< [B] float64, energy at `positions`
  torch::Tensor forces;     ///< [B, N, D] float64, forces at `positions`
  torch::Tensor converged;  ///< [B] bool, max atom force below the tolerance
  torch::Tensor steps;      ///< [B] int64, steps taken (until convergence or max_steps)
};

/// Minimises each configuration of a batch to a nearby local minimum of `potential`.
/// @param positions [B, N, D] start configurations (length units of the potential)
/// Throws psm::Error on invalid options; configurations that do not converge within max_steps are
/// returned as they are, with converged = false.
MinimizeResult minimize(const Potential& potential, const torch::Tensor& positions,
                        MinimizeOptions options = {});

}  // namespace psm
