#pragma once
// The interface of the equivariant network F(x, c_noise, length_scale) inside the score model.

#include <torch/types.h>

#include <cstdint>

namespace psm {

/// What the score model calls. Implementations are also torch::nn::Modules (Cloneable), so that
/// the score model registers, saves and clones them.
class ScoreNetwork {
 public:
  virtual ~ScoreNetwork() = default;

  /// @param x             [B, N, D] positions in network input units (unit scale), any float
  ///                      dtype
  /// @param c_noise       [B] noise-level conditioning (EDM: ln(sigma) / 4)
  /// @param length_scale  [B] physical length of one input unit (EDM: 1 / c_in)
  /// @return [B, N, D] in the network's dtype, centre-of-mass-free, unit scale
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_noise,
                                const torch::Tensor& length_scale) = 0;

  /// forward() on one chunk of a batch, in the calling thread; inputs already in the network's
  /// dtype. The chunked executor (model/internal/chunked.h) spreads chunks over threads.
  virtual torch::Tensor forward_chunk(const torch::Tensor& x, const torch::Tensor& c_noise,
                                      const torch::Tensor& length_scale) = 0;

  /// Multiply-add FLOPs (2 per MAC) of the linear maps of one forward pass for one sample of
  /// `num_atoms` atoms (for a sparse network: with every pair an edge).
  virtual int64_t linear_flops(int64_t num_atoms) const = 0;

  /// Redraws every parameter from the options' seed (the initial weights).
  virtual void reset_parameters() = 0;
};

}  // namespace psm
