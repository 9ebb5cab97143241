#pragma once
// Importance weights that turn samples of a model q into averages over the Boltzmann
// distribution p ∝ exp(-U / kT): w = exp(-U / kT) / q, self-normalised, so neither normaliser
// is needed. Kish's effective sample size says how many independent Boltzmann samples the
// weighted set is worth.

#include <torch/types.h>

namespace psm {

/// log w = -U / kT - log q [B] float64: energies [B] (energy units; NaN or +inf where the
/// potential failed, e.g. clashing atoms: weight 0, log w = -inf), kT > 0 in the same units,
/// log_q [B] finite (nats). Throws psm::Error on mismatched shapes or a non-finite log q.
torch::Tensor log_importance_weights(const torch::Tensor& energies, double kT,
                                     const torch::Tensor& log_q);

/// w / Σ w [B] float64 from log weights (the largest subtracted first, so no overflow).
/// Throws psm::Error when every weight is zero (all log w = -inf) or one is NaN or +inf.
torch::Tensor normalised_importance_weights(const torch::Tensor& log_weights);

/// Kish's effective sample size as a fraction of the samples: (Σ w)² / (n Σ w²), in (0, 1];
/// 1 for equal weights, 1/n when one sample carries all the weight.
double kish_ess_fraction(const torch::Tensor& log_weights);

}  // namespace psm
