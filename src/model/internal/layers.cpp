#include "model/internal/layers.h"

#include <cmath>
#include <numbers>

namespace psm::layers {

torch::Tensor dense(const torch::nn::Linear& layer, const torch::Tensor& x) {
  const auto rows = x.reshape({-1, x.size(-1)});
  auto y = layer->bias.defined() ? torch::addmm(layer->bias, rows, layer->weight.t())
                                 : torch::mm(rows, layer->weight.t());
  auto shape = x.sizes().vec();
  shape.back() = layer->weight.size(0);
  return y.view(shape);
}

void fill_uniform(torch::Tensor t, double bound, torch::Generator& generator) {
  auto draw = torch::rand(t.sizes(), generator, torch::dtype(torch::kFloat64));
  t.copy_(draw.mul_(2 * bound).sub_(bound));
}

void init_linear(const torch::nn::Linear& layer, int64_t fan_in, torch::Generator& generator) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  fill_uniform(layer->weight, bound, generator);
  if (layer->bias.defined()) fill_uniform(layer->bias, bound, generator);
}

torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

torch::Tensor cosine_envelope(const torch::Tensor& distance, double cutoff) {
  auto inside = distance < cutoff;
  auto value = 0.5 * (torch::cos(distance * (std::numbers::pi / cutoff)) + 1.0);
  return torch::where(inside, value, torch::zeros_like(value));
}

torch::Tensor gaussian_rbf(const torch::Tensor& distance, int64_t count, double cutoff) {
  auto centres = torch::linspace(0.0, cutoff, count, distance.options());
  const double width = count > 1 ? cutoff / static_cast<double>(count - 1) : cutoff;
  auto z = (distance.unsqueeze(-1) - centres) / width;
  return torch::exp(-0.5 * z.square());
}

torch::Tensor fourier_features(const torch::Tensor& c_noise, const torch::Tensor& frequencies) {
  auto angles = c_noise.unsqueeze(-1) * frequencies;
  return torch::cat({torch::cos(angles), torch::sin(angles)}, -1);
}

torch::Tensor noise_frequencies(int64_t count) {
  return torch::exp(torch::linspace(0.0, std::log(100.0), count / 2));
}

}  // namespace psm::layers
