#pragma once
// Whether sampled frames are at the temperature they were sampled at, by every thermometer the
// frames carry: the kinetic temperature of Langevin dynamics and, for molecules, the temperature
// the forces imply along each bond type. A thermostat that has not equilibrated the stiff,
// weakly coupled stretches (an O-H at friction 1/ps) reads right on the whole-frame average and
// wrong on those bonds, and PSM trained on such frames learns bonds of the wrong width.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "psm/data/force_check.h"
#include "psm/io/dataset.h"

namespace psm {

/// Thermometers are called off the target beyond this many standard errors. With a handful of
/// thermometers a 3-sigma line rarely fires by chance (p ≈ 0.003 each).
inline constexpr double kThermalCheckSigmas = 3.0;

struct ThermometerReading {
  std::string name;  ///< "kinetic", or a bond type ("C-H")
  VirialTemperature temperature;
  int64_t bonds = 0;  ///< bonds of that type; 0 for the kinetic thermometer
};

struct ThermalCheck {
  double target_kT = 0;
  std::vector<ThermometerReading> readings;

  /// The readings more than kThermalCheckSigmas standard errors from target_kT, or not finite.
  std::vector<ThermometerReading> off_target() const;
};

/// Reads every thermometer of `frames` against frames.frames_kT(): the kinetic temperature when
/// `kinetic_kT` is given, and with forces on molecular frames (kcal/mol, Å) one bond virial
/// temperature per bond type of the frames' majority bond graph. Standard errors come from the
/// spread of the chains' means where the chains are known (four or more), else they take frames
/// as independent.
/// @param kinetic_kT [C, T] float64 kinetic temperature (energy units) of each chain's recorded
/// rounds, or undefined
ThermalCheck check_thermal_equilibrium(const Dataset& frames,
                                       const torch::Tensor& kinetic_kT = torch::Tensor());

/// One line per reading ("C-H   0.998 ± 0.012 (9 bonds, 0.3 standard errors from kT 0.9936)"),
/// then where the errors come from, then the verdict: all within kThermalCheckSigmas, or which
/// are off and what would change that.
std::vector<std::string> describe_thermal_check(const ThermalCheck& check);

/// Keeps the readings in a dataset's provenance: "thermometers" {name: {kT, standard_error}} and
/// "at_equilibrium", so that a reference file says how it was checked.
void record_thermal_check(const ThermalCheck& check, nlohmann::json& provenance);

}  // namespace psm
