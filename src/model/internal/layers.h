#pragma once
// Building blocks shared by the network kinds: linear maps as one GEMM, reproducible
// initialisation, radial bases, the cosine envelope and the noise-level embedding.

#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <cstdint>

namespace psm::layers {

/// Added to squared distances before the square root: keeps the gradient finite for coincident
/// atoms (and on a masked diagonal), in network input units.
inline constexpr double kDistanceEpsilon = 1e-8;

/// y = x W^T + b over the last dimension, as one GEMM on the flattened rows (the bias folded
/// into the GEMM).
torch::Tensor dense(const torch::nn::Linear& layer, const torch::Tensor& x);

/// Fills `t` (any dtype/device) from U(-bound, bound) drawn in float64 on the CPU generator.
void fill_uniform(torch::Tensor t, double bound, torch::Generator& generator);

/// torch::nn::Linear's default scheme with an explicit fan-in: U(+-1/sqrt(fan_in)).
void init_linear(const torch::nn::Linear& layer, int64_t fan_in, torch::Generator& generator);

torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias);

/// 1/2 (cos(pi d / cutoff) + 1) inside the cutoff, 0 beyond: continuous with a continuous
/// first derivative at the cutoff. @param distance any shape, units of cutoff
torch::Tensor cosine_envelope(const torch::Tensor& distance, double cutoff);

/// Gaussian radial basis [..., R] of distances [...]: centres evenly on [0, cutoff], width equal
/// to the centre spacing.
torch::Tensor gaussian_rbf(const torch::Tensor& distance, int64_t count, double cutoff);

/// Sinusoidal features [B, 2 F] of the noise conditioning c_noise [B] at angular frequencies
/// [F].
torch::Tensor fourier_features(const torch::Tensor& c_noise, const torch::Tensor& frequencies);

/// Angular frequencies spaced geometrically from 1 to 100 ([count / 2]): they resolve
/// c_noise = ln(sigma) / 4 to about 1 % over the usual sigma range. Default dtype (float32).
torch::Tensor noise_frequencies(int64_t count);

}  // namespace psm::layers
