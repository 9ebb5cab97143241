#pragma once
// Energy and force labels of stored frames, computed with a system's potential in batches.

#include <cstdint>

#include "psm/io/dataset.h"
#include "psm/systems/potential.h"

namespace psm {

/// Sets dataset.energies and dataset.forces from `system`, `batch` frames at a time, and returns
/// the number of frames whose energy or forces are not finite (clashing atoms). When that number
/// is not zero the dataset is left unlabelled: a dataset holds finite labels only.
int64_t label_dataset(const System& system, Dataset& dataset, int64_t batch = 1024);

}  // namespace psm
