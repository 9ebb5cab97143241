#pragma once
// What the metrics compare, made from datasets the same way by `psm eval` and the evaluation
// stage of `psm run`: frames with their energies, and the reference potential of molecules.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "psm/eval/metrics.h"
#include "psm/io/dataset.h"
#include "psm/systems/potential.h"

namespace psm {

/// Frames of generated samples for the metrics, float64: positions [F, N, D]; energies [F], the
/// stored ones or else computed with `system` (energies_or_nan: NaN where the potential fails,
/// the largest double where it is infinite), undefined when there are none and `system` is null;
/// forces [F, N, D] when stored.
Samples samples_for_metrics(const Dataset& data, const System* system);

/// GFN2-xTB for the molecule of `species`: the xtb system of `spec` when it names one (its
/// charge and spin), else a neutral closed-shell one. Null when psm was built without xtb (or
/// xtb cannot be made); `warn` then receives why.
std::shared_ptr<const System> xtb_reference_potential(
    const std::vector<int64_t>& species, const nlohmann::json& spec,
    const std::function<void(const std::string&)>& warn);

}  // namespace psm
