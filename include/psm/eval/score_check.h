#pragma once
// How well a trained score reproduces the forces of reference frames at a small noise level.
// A score that is c times too weak (c F / kT) samples exp(-c U / kT), a temperature kT / c: the
// check says so before any sampling, and without a potential when the frames carry forces.

#include <cstdint>
#include <optional>
#include <string>

#include "psm/data/force_check.h"
#include "psm/diffusion/score.h"
#include "psm/io/dataset.h"
#include "psm/systems/potential.h"

namespace psm {

struct ScoreCheckOptions {
  double sigma = 0.01;  ///< noise level the frames are noised to and the score is evaluated at
  bool com_free = true;
  int64_t batch_size = 1000;
  uint64_t seed = 0;
  /// The frames' system, or null. With it the check also takes the forces at the noised frames,
  /// which the exact score of p_σ equals to first order in σ (kT ∇ log p_σ(x) = F(x) + O(σ²)).
  const System* system = nullptr;
};

/// Mean absolute and root-mean-square difference per force component (energy/length).
struct ForceErrors {
  double mae = 0;
  double rms = 0;
};

struct ScoreCheck {
  /// Virial temperature of kT s(x_σ, σ) on the noised frames x_σ: kT for the exact score of
  /// p_σ (Stein's identity holds at every σ), c kT for a score c times too strong.
  VirialTemperature score_virial;
  /// The frames' own forces (on the frames before noise); unset without forces.
  std::optional<VirialTemperature> forces_virial{};
  /// With forces: the least-squares c in kT s ≈ c F, and the RMS of kT s - F and of F per
  /// component (energy/length). At σ > 0 the residual includes the forces' spread given x_σ.
  std::optional<double> slope{};
  std::optional<double> residual_rms{};
  std::optional<double> force_rms{};
  /// With forces: kT s(x_σ) - F(x_0), the force-field error as it is usually quoted.
  std::optional<ForceErrors> force_errors{};
  /// With a system: F(x_σ) - F(x_0), which the exact score shows as well (the noise moved the
  /// frames), and kT s(x_σ) - F(x_σ), the network's own error.
  std::optional<ForceErrors> exact_score_errors{};
  std::optional<ForceErrors> network_errors{};
};

/// Noises `frames` to options.sigma (x_σ = x + σ ε, ε projected when com_free) and compares the
/// score there with the frames' kT and forces. Frames' kT: sampled_kT, else kT. Throws
/// psm::Error for fewer than two frames or non-finite scores.
ScoreCheck check_score(const ScoreFn& score, const Dataset& frames,
                       const ScoreCheckOptions& options);

/// What a score virial kT says against the frames' kT, in words: the score's strength c and the
/// kT / c it samples at, or, for a virial kT <= 0, that no Boltzmann distribution's score gives
/// it (every normalisable density's score points inwards on average).
std::string describe_score_strength(double score_virial_kT, double frames_kT);

}  // namespace psm
