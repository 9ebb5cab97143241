#include "simulate/internal/adaptive_step.h"

#include <cmath>

namespace psm::adaptive_step {

torch::Tensor adapted(const torch::Tensor& log_step, const torch::Tensor& log_ratio, int64_t step,
                      double exponent, double target) {
  const auto probability = torch::nan_to_num(log_ratio.clamp_max(0.0).exp(), 0.0);
  const double gain = std::pow(static_cast<double>(step + 1), -exponent);
  return log_step + gain * (probability - target);
}

double acceptance(const torch::Tensor& accepted, int64_t steps, int64_t burn_in) {
  const int64_t production = steps - burn_in;
  if (production <= 0) return std::nan("");
  return accepted.to(torch::kFloat64).mean().item<double>() / static_cast<double>(production);
}

nlohmann::json summary(const torch::Tensor& log_step) {
  const auto steps = log_step.exp();
  return {{"mean", steps.mean().item<double>()},
          {"min", steps.min().item<double>()},
          {"max", steps.max().item<double>()}};
}

void put(StateFile& file, const torch::Tensor& log_step, const torch::Tensor& accepted) {
  file.tensors["log_step"] = log_step;
  file.tensors["accepted"] = accepted;
}

void take(const StateFile& file, const std::string& source, torch::Tensor& log_step,
          torch::Tensor& accepted) {
  log_step = file.tensor("log_step", source);
  accepted = file.tensor("accepted", source);
}

}  // namespace psm::adaptive_step
