#pragma once
// What the diffusion code needs from a score model, and the centre-of-mass-free projection that
// data, noise, forces and scores all go through (METHOD.md, "Symmetries").

#include <torch/types.h>

#include <cstdint>
#include <functional>

namespace psm {

/// A score model: positions x [B, N, D] and noise levels sigma [B] (length units, as x) ->
/// score ∇_x log p_σ(x) [B, N, D] (1/length). The loss and the samplers call it with float64
/// inputs and convert the result to float64, so a float32 network casts inside. In the loss the
/// result must carry gradients to the model's parameters.
using ScoreFn = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& sigma)>;

/// Projection onto the centre-of-mass-free subspace: x minus its mean over atoms (dim 1).
/// x [B, N, D] -> [B, N, D], same dtype and device.
torch::Tensor remove_mean(const torch::Tensor& x);

/// The space the diffusion lives in: remove_mean(x) when com_free, x itself otherwise.
torch::Tensor project(const torch::Tensor& x, bool com_free);

/// Dimension of that space: (N - 1) D when com_free, N D otherwise.
int64_t effective_dim(int64_t num_atoms, int64_t dim, bool com_free);

/// Noise ε ~ N(0, P) of `shape` [B, N, D]: standard normal drawn from `rng` on the generator's
/// device, moved to `options`' device and dtype, then projected (P = remove_mean when com_free,
/// identity otherwise).
torch::Tensor gaussian_noise(torch::IntArrayRef shape, torch::Generator& rng,
                             const torch::TensorOptions& options, bool com_free);

}  // namespace psm
