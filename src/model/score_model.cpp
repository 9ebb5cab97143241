#include "psm/model/score_model.h"

#include <fmt/format.h>

#include <cmath>
#include <utility>

#include "psm/core/error.h"

namespace psm {

namespace {

torch::Tensor remove_centre_of_mass(const torch::Tensor& x) {
  return x - x.mean(1, /*keepdim=*/true);
}

}  // namespace

ScoreModelOptions::ScoreModelOptions(NetworkOptions network, double sigma_data)
    : network_(std::move(network)), sigma_data_(sigma_data) {}

Preconditioning ve_preconditioning(const torch::Tensor& sigma, double sigma_data) {
  const double sd2 = sigma_data * sigma_data;
  auto total = torch::sqrt(sigma.square() + sd2);  // spread of x_sigma per coordinate
  return {.c_skip = sd2 / total.square(),
          .c_out = sigma * sigma_data / total,
          .c_in = 1.0 / total,
          .c_noise = torch::log(sigma) / 4.0};
}

double estimate_sigma_data(const torch::Tensor& positions) {
  check(positions.defined() && positions.dim() == 3 && positions.numel() > 0,
        "estimate_sigma_data: positions must be a non-empty [F, N, D] tensor");
  const double rms =
      remove_centre_of_mass(positions.to(torch::kFloat64)).square().mean().sqrt().item<double>();
  check(std::isfinite(rms) && rms > 0,
        fmt::format("estimate_sigma_data: positions give a non-finite or zero RMS ({})", rms));
  return rms;
}

ScoreModelImpl::ScoreModelImpl(ScoreModelOptions options_) : options(std::move(options_)) {
  check(std::isfinite(options.sigma_data()) && options.sigma_data() > 0,
        fmt::format("model: sigma_data must be > 0, got {}", options.sigma_data()));
  reset();
}

void ScoreModelImpl::reset() {
  auto [module, interface] = make_network(options.network());
  register_module("network", std::move(module));
  network = std::move(interface);
}

torch::Tensor ScoreModelImpl::denoise(const torch::Tensor& x, const torch::Tensor& sigma) {
  check(sigma.dim() == 1 && x.dim() == 3 && sigma.size(0) == x.size(0),
        "model: sigma must be [B] with the batch size of the positions [B, N, D]");
  check((sigma > 0).all().item<bool>(), "model: every noise level sigma must be > 0");
  // The combination runs in float64: at small sigma, D - x in the score is a small difference.
  auto x64 = remove_centre_of_mass(x.to(torch::kFloat64));
  auto c = ve_preconditioning(sigma.to(x64.options()), options.sigma_data());
  auto per_sample = [](const torch::Tensor& t) { return t.view({-1, 1, 1}); };
  auto f = network->forward(per_sample(c.c_in) * x64, c.c_noise, 1.0 / c.c_in);
  return per_sample(c.c_skip) * x64 + per_sample(c.c_out) * f.to(torch::kFloat64);
}

torch::Tensor ScoreModelImpl::forward(const torch::Tensor& x, const torch::Tensor& sigma) {
  auto x64 = remove_centre_of_mass(x.to(torch::kFloat64));
  auto sigma64 = sigma.to(x64.options()).view({-1, 1, 1});
  return ((denoise(x64, sigma) - x64) / sigma64.square()).to(x.scalar_type());
}

void ScoreModelImpl::pretty_print(std::ostream& stream) const {
  stream << fmt::format("psm::ScoreModel(preconditioning=edm-ve, sigma_data={}, network={})",
                        options.sigma_data(), network_kind(options.network()));
}

}  // namespace psm
