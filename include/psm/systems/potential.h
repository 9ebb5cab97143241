#pragma once
// Physical systems: a Potential gives energies and forces for a batch of configurations; a
// System is an immutable description (species, dimension, units) that owns its potential.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "psm/core/registry.h"
#include "psm/core/units.h"

namespace psm {

struct EvalRequest {
  bool forces = true;  ///< MCMC needs only energies; skip the force pass when false
};

struct Evaluation {
  torch::Tensor energy;  ///< [B] float64, energy units of the system
  torch::Tensor forces;  ///< [B, N, D] float64, -dU/dx; undefined unless requested
};

class Potential {
 public:
  virtual ~Potential() = default;
  /// @param positions [B, N, D] float64 (reduced length or Å)
  /// Throws psm::Error on a wrong shape or when the underlying calculation fails.
  virtual Evaluation evaluate(const torch::Tensor& positions, EvalRequest request = {}) const = 0;
};

class System {
 public:
  /// @param spec JSON that rebuilds this system through make_system (stored in dataset files)
  System(std::string name, std::vector<int64_t> species, int64_t dim, Units units,
         std::shared_ptr<const Potential> potential, nlohmann::json spec);

  const std::string& name() const { return name_; }
  const std::vector<int64_t>& species() const { return species_; }
  int64_t num_atoms() const { return static_cast<int64_t>(species_.size()); }
  int64_t dim() const { return dim_; }
  Units units() const { return units_; }
  const Potential& potential() const { return *potential_; }
  const nlohmann::json& spec() const { return spec_; }

  /// Throws psm::Error unless `positions` has the shape [B, N, D] of this system.
  void check_shape(const torch::Tensor& positions) const;

  /// Shorthand for potential().evaluate with check_shape first.
  Evaluation evaluate(const torch::Tensor& positions, EvalRequest request = {}) const;

 private:
  std::string name_;
  std::vector<int64_t> species_;
  int64_t dim_;
  Units units_;
  std::shared_ptr<const Potential> potential_;
  nlohmann::json spec_;
};

/// Factories take the system's options as JSON (e.g. {"n": 13} for "lj").
using SystemRegistry = Registry<System, const nlohmann::json&>;

/// Registers "lj" (any n), the presets "lj13" and "lj55", "dw4" and "xtb".
void register_builtin_systems(SystemRegistry& registry);

/// Builds a system from a spec {"name": ..., options...} using the built-in registry.
std::unique_ptr<System> make_system(const nlohmann::json& spec);

}  // namespace psm
