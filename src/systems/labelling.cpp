#include "psm/systems/labelling.h"

#include <torch/torch.h>

#include <vector>

namespace psm {

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

int64_t label_dataset(const System& system, Dataset& dataset, int64_t batch) {
  std::vector<torch::Tensor> energies;
  std::vector<torch::Tensor> forces;
  for (int64_t start = 0; start < dataset.num_frames(); start += batch) {
    const Evaluation e =
        system.evaluate(dataset.positions.slice(0, start, start + batch), {.forces = true});
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
