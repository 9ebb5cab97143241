#pragma once
// The score model s(x, sigma) = grad_x log p_sigma(x): the equivariant network wrapped in the
// EDM preconditioning of Karras et al. (2022).
//
// Why the preconditioning: the noised positions x_sigma have a per-coordinate spread of
// sqrt(sigma^2 + sigma_data^2), which runs from the data scale to sigma_max (tens of sigma_data),
// and the score scales as 1/sigma^2. A raw network would have to handle inputs and outputs over
// many orders of magnitude. With c_in = 1 / sqrt(sigma^2 + sigma_data^2) the network input has
// unit variance at every sigma, and with the skip connection D = c_skip x + c_out F the
// network's target (x_0 - c_skip x) / c_out also has unit variance at every sigma, so one set of
// weights serves every noise level at unit scale.

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <ostream>

#include <memory>

#include "psm/model/network.h"

namespace psm {

/// Options for ScoreModel. Usage:
///   ScoreModel model(ScoreModelOptions(EgnnOptions(3, species).layers(4), sigma_data));
///   ScoreModel model(ScoreModelOptions(PainnOptions(3, species).cutoff(5.0), sigma_data));
struct ScoreModelOptions {
  /// @param network     the equivariant network F, of any kind
  /// @param sigma_data  per-coordinate RMS of the centre-of-mass-free training positions
  ///                    (length units), see estimate_sigma_data
  ScoreModelOptions(NetworkOptions network, double sigma_data);

  TORCH_ARG(NetworkOptions, network);
  TORCH_ARG(double, sigma_data);
};

/// The four preconditioning coefficients for noise levels sigma [B] (each [B], dtype of sigma).
struct Preconditioning {
  torch::Tensor c_skip;   ///< weight of the noisy input in the denoiser
  torch::Tensor c_out;    ///< weight of the network output in the denoiser
  torch::Tensor c_in;     ///< input scaling: the network sees c_in * x
  torch::Tensor c_noise;  ///< the network's noise-level conditioning
};

/// EDM coefficients for the variance-exploding process x_sigma = x_0 + sigma eps:
/// c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
/// c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4, with sd = sigma_data.
Preconditioning ve_preconditioning(const torch::Tensor& sigma, double sigma_data);

/// Per-coordinate RMS of centre-of-mass-free positions [F, N, D] (any float dtype): the
/// sigma_data of ScoreModelOptions. Throws psm::Error on an empty or non-finite input.
double estimate_sigma_data(const torch::Tensor& positions);

/// s(x, sigma) = (D(x, sigma) - x) / sigma^2 with the denoiser
/// D(x, sigma) = c_skip x + c_out F(c_in x, c_noise), everything in the centre-of-mass-free
/// subspace (the input is projected onto it first).
class ScoreModelImpl : public torch::nn::Cloneable<ScoreModelImpl> {
 public:
  explicit ScoreModelImpl(ScoreModelOptions options);

  /// @param x      [B, N, D] noisy positions, length units, float32 or float64
  /// @param sigma  [B] noise levels > 0, length units
  /// @return score [B, N, D] in 1/length units, dtype of x, centre-of-mass-free
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma);

  /// The denoiser D(x, sigma): an estimate of E[x_0 | x_sigma = x], [B, N, D], length units,
  /// dtype of x, centre-of-mass-free.
  torch::Tensor denoise(const torch::Tensor& x, const torch::Tensor& sigma);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  ScoreModelOptions options;
  /// The network F, registered as the submodule "network" (the checkpoint's names).
  std::shared_ptr<ScoreNetwork> network;
};
TORCH_MODULE(ScoreModel);

}  // namespace psm
