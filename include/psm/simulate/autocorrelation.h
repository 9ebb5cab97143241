#pragma once
// Integrated autocorrelation time and effective sample size of chains of a scalar observable
// (energy), estimated as in emcee: the autocorrelation function is averaged over chains and
// summed up to Sokal's automatic window M, the smallest M with M >= c * tau(M).

#include <torch/types.h>

#include <cstdint>

namespace psm {

/// Normalised autocorrelation function of each chain, rho(0) = 1: series [C, T] -> [C, T]
/// float64 (lags 0..T-1). A constant chain gives NaN.
torch::Tensor autocorrelation(const torch::Tensor& series);

struct AutocorrelationTime {
  double tau = 1.0;      ///< integrated autocorrelation time, in steps of the series
  int64_t window = 0;    ///< Sokal window M: lags 0..M summed
  bool reliable = true;  ///< T >= 50 tau (emcee's threshold); shorter series underestimate tau
};

/// tau = 1 + 2 sum_{t=1..M} rho(t) for the chain-averaged rho of `series` [C, T] (T >= 2),
/// with window factor `c` (5 as in emcee), at least 1 (anticorrelated series would give less,
/// even negative values). tau is +inf when a chain is constant (a stuck chain has no
/// independent samples). Throws psm::Error on a wrong shape.
AutocorrelationTime integrated_autocorrelation_time(const torch::Tensor& series, double c = 5.0);

/// Standard error of the grand mean of `series` [C, T] (C >= 2 independent chains) from the
/// spread of the chain means: std over chains of mean_t(x) / sqrt(C). It counts slow modes of
/// small amplitude that a windowed tau misses, provided the chains started independent.
double chain_means_standard_error(const torch::Tensor& series);

/// C * T / tau: the number of independent samples that `series` [C, T] is worth.
double effective_sample_size(const torch::Tensor& series, double c = 5.0);

}  // namespace psm
