#include "psm/eval/evaluation_inputs.h"

#include "psm/core/error.h"
#include "psm/systems/labelling.h"

namespace psm {

Samples samples_for_metrics(const Dataset& data, const System* system) {
  torch::Tensor energies = data.energies;
  if (!data.has_energies() && system != nullptr) {
    energies = energies_or_nan(*system, data.positions);
  }
  return {data.positions.to(torch::kFloat64),
          energies.defined() ? energies.to(torch::kFloat64) : energies,
          data.has_forces() ? data.forces.to(torch::kFloat64) : torch::Tensor()};
}

std::shared_ptr<const System> xtb_reference_potential(
    const std::vector<int64_t>& species, const nlohmann::json& spec,
    const std::function<void(const std::string&)>& warn) {
  const bool names_xtb = spec.is_object() && spec.value("name", "") == "xtb";
  try {
    return make_system(names_xtb ? spec : nlohmann::json{{"name", "xtb"}, {"species", species}});
  } catch (const Error& error) {
    warn(error.what());
    return nullptr;
  }
}

}  // namespace psm
