#include <fmt/format.h>
#include <fmt/ranges.h>

#include "psm/core/error.h"
#include "psm/systems/potential.h"

namespace psm {

System::System(std::string name, std::vector<int64_t> species, int64_t dim, Units units,
               std::shared_ptr<const Potential> potential, nlohmann::json spec)
    : name_(std::move(name)),
      species_(std::move(species)),
      dim_(dim),
      units_(units),
      potential_(std::move(potential)),
      spec_(std::move(spec)) {
  check(!species_.empty(), fmt::format("system '{}': no atoms", name_));
  check(dim_ == 2 || dim_ == 3, fmt::format("system '{}': dimension must be 2 or 3", name_));
  check(potential_ != nullptr, fmt::format("system '{}': no potential", name_));
}

void System::check_shape(const torch::Tensor& positions) const {
  check(positions.dim() == 3 && positions.size(1) == num_atoms() && positions.size(2) == dim_,
        fmt::format("system '{}': positions must have shape [B, {}, {}], got {}", name_,
                    num_atoms(), dim_, fmt::join(positions.sizes(), "x")));
}

Evaluation System::evaluate(const torch::Tensor& positions, EvalRequest request) const {
  check_shape(positions);
  return potential_->evaluate(positions, request);
}

std::unique_ptr<System> make_system(const nlohmann::json& spec) {
  check(spec.is_object() && spec.contains("name") && spec["name"].is_string(),
        fmt::format("system spec needs a \"name\": {}", spec.dump()));
  SystemRegistry registry("system");
  register_builtin_systems(registry);
  return registry.create(spec["name"].get<std::string>(), spec);
}

}  // namespace psm
