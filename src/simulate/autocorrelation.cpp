#include "psm/simulate/autocorrelation.h"

#include <fmt/format.h>
#include <torch/fft.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "psm/core/error.h"

namespace psm {

namespace {

void check_series(const torch::Tensor& series) {
  check(series.dim() == 2 && series.size(1) >= 2,
        fmt::format("autocorrelation: series must have shape [chains, T >= 2], got [{}]",
                    fmt::join(series.sizes(), ", ")));
}

}  // namespace

torch::Tensor autocorrelation(const torch::Tensor& series) {
  check_series(series);
  const int64_t length = series.size(1);
  const auto centred = series.to(torch::kFloat64) - series.to(torch::kFloat64).mean(1, true);
  // Zero-padding to >= 2T turns the FFT's circular correlation into the linear one.
  int64_t padded = 1;
  while (padded < 2 * length) padded *= 2;
  const auto spectrum = torch::fft::rfft(centred, padded, 1);
  const auto covariance =
      torch::fft::irfft(spectrum * spectrum.conj(), padded, 1).slice(1, 0, length);
  return covariance / covariance.slice(1, 0, 1);
}

AutocorrelationTime integrated_autocorrelation_time(const torch::Tensor& series, double c) {
  check_series(series);
  const auto rho = autocorrelation(series);
  const int64_t length = series.size(1);
  if (!torch::isfinite(rho).all().item<bool>()) {
    return {std::numeric_limits<double>::infinity(), 0, false};
  }
  const auto taus = (2.0 * rho.mean(0).cumsum(0) - 1.0).cpu().contiguous();
  const double* tau = taus.data_ptr<double>();
  int64_t window = length - 1;
  for (int64_t m = 0; m < length; ++m) {
    if (static_cast<double>(m) >= c * tau[m]) {
      window = m;
      break;
    }
  }
  // Anticorrelated frames (a vibration sampled near half its period) can sum to tau < 1, even
  // below 0; a frame is never counted as more than one independent sample.
  const double estimate = std::max(tau[window], 1.0);
  return {estimate, window, static_cast<double>(length) >= 50.0 * estimate};
}

double chain_means_standard_error(const torch::Tensor& series) {
  check_series(series);
  check(series.size(0) >= 2, "chain means: needs at least 2 chains");
  const auto means = series.to(torch::kFloat64).mean(1);
  return means.std().item<double>() / std::sqrt(static_cast<double>(series.size(0)));
}

double effective_sample_size(const torch::Tensor& series, double c) {
  const double tau = integrated_autocorrelation_time(series, c).tau;
  return static_cast<double>(series.numel()) / tau;
}

}  // namespace psm
