#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "psm/core/error.h"
#include "psm/systems/double_well.h"
#include "psm/systems/lennard_jones.h"
#include "psm/systems/potential.h"
#include "psm/systems/xtb.h"

namespace psm {

namespace {

/// Reads the options of one system spec with type checks; reject_unknown() then names any key
/// that no read asked for, so a typo never falls back to a default silently.
class SpecReader {
 public:
  SpecReader(const nlohmann::json& spec, std::string system)
      : spec_(spec.is_null() ? nlohmann::json::object() : spec), system_(std::move(system)) {
    check(spec_.is_object(),
          fmt::format("system '{}': spec must be a JSON object, got {}", system_, spec_.dump()));
  }

  int64_t integer(const std::string& key, int64_t fallback) {
    if (!present(key)) return fallback;
    const auto& value = spec_[key];
    check(value.is_number_integer(),
          fmt::format("system '{}': option '{}' must be an integer, got {}", system_, key,
                      value.dump()));
    return value.get<int64_t>();
  }

  double number(const std::string& key, double fallback) {
    if (!present(key)) return fallback;
    const auto& value = spec_[key];
    check(value.is_number(), fmt::format("system '{}': option '{}' must be a number, got {}",
                                         system_, key, value.dump()));
    return value.get<double>();
  }

  /// A required list of integers.
  std::vector<int64_t> integers(const std::string& key) {
    check(present(key), fmt::format("system '{}': option '{}' is required", system_, key));
    const auto& value = spec_[key];
    const bool valid =
        value.is_array() && std::all_of(value.begin(), value.end(),
                                        [](const auto& v) { return v.is_number_integer(); });
    check(valid, fmt::format("system '{}': option '{}' must be a list of integers, got {}", system_,
                             key, value.dump()));
    return value.get<std::vector<int64_t>>();
  }

  bool has(const std::string& key) const { return spec_.contains(key); }

  void reject_unknown() const {
    for (const auto& [key, value] : spec_.items()) {
      check(key == "name" || read_.contains(key),
            fmt::format("system '{}': unknown option '{}'", system_, key));
    }
  }

 private:
  bool present(const std::string& key) {
    read_.insert(key);
    return spec_.contains(key);
  }

  nlohmann::json spec_;
  std::string system_;
  std::set<std::string> read_;
};

/// Builds an LJ system; `registered` is the name the spec was created under, `fixed_n` is set
/// for presets (which then reject "n" and "dim").
std::unique_ptr<System> make_lennard_jones(const nlohmann::json& spec,
                                           const std::string& registered,
                                           std::optional<int64_t> fixed_n) {
  SpecReader reader(spec, registered);
  LennardJonesOptions options;
  if (fixed_n) {
    options.n = *fixed_n;
  } else {
    options.n = reader.integer("n", options.n);
    options.dim = reader.integer("dim", options.dim);
  }
  options.epsilon = reader.number("epsilon", options.epsilon);
  options.rm = reader.number("rm", options.rm);
  options.oscillator_scale = reader.number("oscillator_scale", options.oscillator_scale);
  reader.reject_unknown();

  auto potential = std::make_shared<const LennardJones>(options);
  nlohmann::json canonical = {{"name", registered},
                              {"epsilon", options.epsilon},
                              {"rm", options.rm},
                              {"oscillator_scale", options.oscillator_scale}};
  if (!fixed_n) {
    canonical["n"] = options.n;
    canonical["dim"] = options.dim;
  }
  // One particle type: species 0 for every particle.
  return std::make_unique<System>(fmt::format("lj{}", options.n),
                                  std::vector<int64_t>(options.n, 0), options.dim, Units::reduced,
                                  std::move(potential), std::move(canonical));
}

std::unique_ptr<System> make_double_well(const nlohmann::json& spec, const std::string& registered,
                                         bool preset) {
  SpecReader reader(spec, registered);
  DoubleWellOptions options;
  if (!preset) {
    options.n = reader.integer("n", options.n);
    options.dim = reader.integer("dim", options.dim);
    options.a = reader.number("a", options.a);
    options.b = reader.number("b", options.b);
    options.c = reader.number("c", options.c);
    options.d0 = reader.number("d0", options.d0);
  }
  reader.reject_unknown();

  auto potential = std::make_shared<const DoubleWell>(options);
  nlohmann::json canonical = {{"name", registered}};
  if (!preset) {
    canonical.update({{"n", options.n},
                      {"dim", options.dim},
                      {"a", options.a},
                      {"b", options.b},
                      {"c", options.c},
                      {"d0", options.d0}});
  }
  return std::make_unique<System>(fmt::format("dw{}", options.n),
                                  std::vector<int64_t>(options.n, 0), options.dim, Units::reduced,
                                  std::move(potential), std::move(canonical));
}

/// GFN2-xTB molecule: {"species": [Z, ...]} plus optional charge, uhf, accuracy,
/// electronic_temperature (K) and max_iterations.
std::unique_ptr<System> make_xtb(const nlohmann::json& spec) {
  SpecReader reader(spec, "xtb");
  // The registry reads no files: make_system_with_molecule (systems/molecule.h) turns the file
  // into species before it gets here.
  check(!reader.has("molecule"),
        "system 'xtb': option 'molecule' names a file, which make_system does not read (build "
        "the system with make_system_with_molecule); give \"species\" (atomic numbers)");
  XtbOptions options;
  options.species = reader.integers("species");
  options.charge = reader.integer("charge", options.charge);
  options.uhf = reader.integer("uhf", options.uhf);
  options.accuracy = reader.number("accuracy", options.accuracy);
  options.electronic_temperature =
      reader.number("electronic_temperature", options.electronic_temperature);
  options.max_iterations = reader.integer("max_iterations", options.max_iterations);
  reader.reject_unknown();

  auto potential = std::make_shared<const Xtb>(options);
  nlohmann::json canonical = {{"name", "xtb"},
                              {"species", options.species},
                              {"charge", options.charge},
                              {"uhf", options.uhf},
                              {"accuracy", options.accuracy},
                              {"electronic_temperature", options.electronic_temperature},
                              {"max_iterations", options.max_iterations}};
  return std::make_unique<System>("xtb", options.species, 3, Units::kcal_mol_angstrom,
                                  std::move(potential), std::move(canonical));
}

}  // namespace

void register_builtin_systems(SystemRegistry& registry) {
  registry.add("lj",
               "Lennard-Jones cluster + centre-of-mass restraint, reduced units (options: n, "
               "epsilon, rm, oscillator_scale, dim)",
               [](const nlohmann::json& spec) { return make_lennard_jones(spec, "lj", {}); });
  registry.add("lj13", "LJ13 cluster in the DEM/flow-matching convention, reduced units, kT = 1",
               [](const nlohmann::json& spec) { return make_lennard_jones(spec, "lj13", 13); });
  registry.add("lj55", "LJ55 cluster in the DEM/flow-matching convention, reduced units, kT = 1",
               [](const nlohmann::json& spec) { return make_lennard_jones(spec, "lj55", 55); });
  registry.add("dw4", "4-particle double well in 2-D (Koehler et al. 2020), reduced units, kT = 1",
               [](const nlohmann::json& spec) { return make_double_well(spec, "dw4", true); });
  registry.add("dw", "multi-particle double well (options: n, dim, a, b, c, d0)",
               [](const nlohmann::json& spec) { return make_double_well(spec, "dw", false); });
  registry.add(
      "xtb",
      "GFN2-xTB molecule via libxtb, kcal/mol and Angstrom (options: species, charge, uhf, "
      "accuracy, electronic_temperature, max_iterations)",
      make_xtb);
}

}  // namespace psm
