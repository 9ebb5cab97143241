#pragma once
// Energy and force labels of stored frames, computed with a system's potential in batches.

#include <cstdint>
#include <functional>

#include "psm/io/dataset.h"
#include "psm/systems/potential.h"

namespace psm {

/// Energies [F] of positions [F, N, D], `batch` frames at a time; `on_batch` (if set) gets the
/// number of frames done after each batch, for progress bars.
torch::Tensor batched_energies(const System& system, const torch::Tensor& positions,
                               int64_t batch = 1024,
                               const std::function<void(int64_t done)>& on_batch = {});

/// Energies [F] like batched_energies, except that a frame the potential cannot evaluate (it
/// throws psm::Error: GFN2-xTB on clashing atoms or an unconverged SCF) gets NaN instead of
/// failing the call, and an infinite energy (overlapping particles) becomes the largest finite
/// double, so that it counts against the model in energy W1 and W2 rather than making them
/// infinite. For generated samples, where such frames are failures of the model.
/// Throws psm::Error on positions of the wrong shape.
torch::Tensor energies_or_nan(const System& system, const torch::Tensor& positions,
                              int64_t batch = 1024);

/// Sets dataset.energies and dataset.forces from `system`, `batch` frames at a time, and returns
/// the number of frames whose energy or forces are not finite (clashing atoms) or that the
/// potential cannot evaluate (as in energies_or_nan). When that number is not zero the dataset is
/// left unlabelled: a dataset holds finite labels only.
int64_t label_dataset(const System& system, Dataset& dataset, int64_t batch = 1024);

}  // namespace psm
