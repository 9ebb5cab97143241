#include "psm/systems/labelling.h"

#include <torch/torch.h>

#include <limits>
#include <vector>

#include "psm/core/error.h"

namespace psm {

namespace {

/// The evaluation of `positions`; when the potential throws psm::Error on the batch, the frames
/// one by one, a frame that throws getting NaN energy (and forces). One bad frame then costs only
/// itself, and the batch call keeps the potential's parallelism in the common case.
Evaluation evaluate_or_nan(const System& system, const torch::Tensor& positions,
                           EvalRequest request) {
  system.check_shape(positions);  // a wrong shape is the caller's error, not a frame's
  try {
    return system.potential().evaluate(positions, request);
  } catch (const Error&) {
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Evaluation out{.energy = torch::full({positions.size(0)}, nan, torch::kFloat64),
                 .forces = request.forces ? torch::full(positions.sizes(), nan, torch::kFloat64)
                                          : torch::Tensor()};
  for (int64_t i = 0; i < positions.size(0); ++i) {
    try {
      const Evaluation frame = system.potential().evaluate(positions.slice(0, i, i + 1), request);
      out.energy.slice(0, i, i + 1).copy_(frame.energy);
      if (request.forces) out.forces.slice(0, i, i + 1).copy_(frame.forces);
    } catch (const Error&) {
      // Left NaN: the caller counts it as a failed frame.
    }
  }
  return out;
}

}  // namespace

torch::Tensor batched_energies(const System& system, const torch::Tensor& positions, int64_t batch,
                               const std::function<void(int64_t)>& on_batch) {
  std::vector<torch::Tensor> energies;
  for (int64_t start = 0; start < positions.size(0); start += batch) {
    const torch::Tensor chunk = positions.slice(0, start, start + batch);
    energies.push_back(system.evaluate(chunk, {.forces = false}).energy);
    if (on_batch) on_batch(start + chunk.size(0));
  }
  return torch::cat(energies);
}

torch::Tensor energies_or_nan(const System& system, const torch::Tensor& positions, int64_t batch) {
  std::vector<torch::Tensor> energies;
  for (int64_t start = 0; start < positions.size(0); start += batch) {
    energies.push_back(
        evaluate_or_nan(system, positions.slice(0, start, start + batch), {.forces = false})
            .energy);
  }
  return torch::nan_to_num(torch::cat(energies), std::numeric_limits<double>::quiet_NaN());
}

int64_t label_dataset(const System& system, Dataset& dataset, int64_t batch) {
  std::vector<torch::Tensor> energies;
  std::vector<torch::Tensor> forces;
  for (int64_t start = 0; start < dataset.num_frames(); start += batch) {
    const Evaluation e =
        evaluate_or_nan(system, dataset.positions.slice(0, start, start + batch), {.forces = true});
    energies.push_back(e.energy);
    forces.push_back(e.forces);
  }
  const torch::Tensor energy = torch::cat(energies);
  const torch::Tensor force = torch::cat(forces);
  const int64_t bad =
      (~torch::isfinite(energy) | ~torch::isfinite(force).flatten(1).all(1)).sum().item<int64_t>();
  if (bad == 0) {
    dataset.energies = energy;
    dataset.forces = force;
  }
  return bad;
}

}  // namespace psm
