#pragma once
// What the Monte Carlo samplers (Metropolis, Hamiltonian) share: per-chain step sizes adapted
// during burn-in toward a target acceptance, frozen after it, and the counts of accepted moves.

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "psm/simulate/sample_record.h"

namespace psm::adaptive_step {

/// `log_step` [C] after step `step` with log acceptance ratios `log_ratio` [C]: Robbins-Monro on
/// the log step with the acceptance probability min(1, exp(log_ratio)) (lower variance than the
/// 0/1 outcome), stationary where the mean acceptance equals `target`; NaN ratios count as 0.
torch::Tensor adapted(const torch::Tensor& log_step, const torch::Tensor& log_ratio, int64_t step,
                      double exponent, double target);

/// Fraction of moves accepted since burn-in ended, from the per-chain counts `accepted` [C]
/// after `steps` steps; NaN before burn-in has ended.
double acceptance(const torch::Tensor& accepted, int64_t steps, int64_t burn_in);

/// {"mean", "min", "max"} of exp(log_step), for provenance.
nlohmann::json summary(const torch::Tensor& log_step);

/// Adds "log_step" and "accepted" to a state file, and reads them back (psm::Error naming
/// `source` when missing).
void put(StateFile& file, const torch::Tensor& log_step, const torch::Tensor& accepted);
void take(const StateFile& file, const std::string& source, torch::Tensor& log_step,
          torch::Tensor& accepted);

}  // namespace psm::adaptive_step
