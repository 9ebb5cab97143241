#pragma once
// An E(n)-equivariant graph neural network (EGNN, Satorras et al. 2021, in the form used by
// equivariant flow matching and DEM) written as dense batched tensor operations over all atom
// pairs [B, N, N, H]: no edge lists, no gather/scatter, no loops over atoms. For up to ~150 atoms
// the dense form is both simpler and faster than an edge list, because every pair is an edge and
// the pair tensors map onto large matrix multiplications.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <ostream>
#include <string>

#include "psm/model/score_network.h"

namespace psm {

/// Options for Egnn. Usage:
///   Egnn net(EgnnOptions(3, torch::zeros({13}, torch::kInt64)).layers(4).hidden(64));
struct EgnnOptions {
  /// @param dim      spatial dimension, 2 or 3
  /// @param species  [N] int64 atomic numbers (0 for identical model particles such as LJ)
  EgnnOptions(int64_t dim, torch::Tensor species);

  TORCH_ARG(int64_t, dim);
  TORCH_ARG(torch::Tensor, species);
  /// Number of message-passing layers (each updates coordinates; all but the last also update
  /// the node features).
  TORCH_ARG(int64_t, layers) = 4;
  /// Width of node features, messages and hidden layers.
  TORCH_ARG(int64_t, hidden) = 64;
  /// "silu", "gelu", "relu" or "tanh".
  TORCH_ARG(std::string, activation) = "silu";
  /// Sinusoidal features of the noise level fed to the noise-embedding MLP (even, >= 2).
  TORCH_ARG(int64_t, noise_features) = 32;
  /// Gaussian radial basis functions of the pair distance added to the edge features
  /// (0: squared distance only, the choice for LJ-like systems).
  TORCH_ARG(int64_t, num_rbf) = 0;
  /// The RBF centres are spread evenly over [0, rbf_cutoff] (physical length units).
  TORCH_ARG(double, rbf_cutoff) = 5.0;
  /// Pairs farther apart than this (physical length units, measured on the input positions)
  /// exchange no messages; a cosine envelope switches pairs off smoothly. 0: fully connected.
  TORCH_ARG(double, cutoff) = 0.0;
  /// Gate each message by a learned sigmoid weight before aggregation (EGNN "attention").
  TORCH_ARG(bool, attention) = true;
  /// Bound each pair's coordinate weight by coord_range * tanh(.) (an EGNN/EFM stability
  /// option). Off by default: bounded, the push apart of two close atoms is limited, and LJ13
  /// models trained with it left about 10 % of their samples with clashing atoms.
  TORCH_ARG(bool, tanh) = false;
  /// Bound of the coordinate weight when tanh is on, in input length units.
  TORCH_ARG(double, coord_range) = 3.0;
  /// Parameter dtype (float32 or float64); inputs are converted to it.
  TORCH_ARG(torch::Dtype, dtype) = torch::kFloat32;
  /// Samples per chunk: a batch is split into chunks that run in parallel on the intra-op
  /// threads (torch::set_num_threads), forward and backward, one fork/join per pass instead of
  /// one per tensor operation. 0: the whole batch at once. For a given chunk_size the results
  /// do not depend on the thread count. CPU only: on a GPU the whole batch runs at once.
  TORCH_ARG(int64_t, chunk_size) = 64;
  /// reset_parameters() draws every initial weight from make_generator(seed, kInitStream).
  TORCH_ARG(uint64_t, seed) = 0;
};

/// One message-passing layer on dense pair tensors. Internal to Egnn; declared here so that
/// its registered names (the checkpoint format) are visible in one place.
class EgnnLayerImpl : public torch::nn::Cloneable<EgnnLayerImpl> {
 public:
  /// `update_features` is false for the last layer, whose node features nobody reads.
  EgnnLayerImpl(EgnnOptions options, bool update_features);

  /// @param h            [B, N, H] node features
  /// @param x            [B, N, D] positions (network input units)
  /// @param pair_weight  [B, N, N] (or [1, N, N] for all samples) aggregation weight of pair
  ///                     (i, j): 0 on the diagonal and beyond the cutoff, envelope / (N - 1)
  ///                     otherwise
  /// @param rbf          [B, N, N, R] radial basis of the input pair distances, or an
  ///                     undefined tensor when num_rbf == 0
  /// @return (h', shift): node features [B, N, H] (h itself when !update_features) and the
  ///         coordinate update [B, N, D] of this layer
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& h, const torch::Tensor& x,
                                                  const torch::Tensor& pair_weight,
                                                  const torch::Tensor& rbf);

  void reset() override;
  /// Draws every weight from `generator` (uniform +-1/sqrt(fan_in), as torch::nn::Linear,
  /// except a small coord_out so that the initial network moves atoms little).
  void reset_parameters(torch::Generator& generator);

  /// Multiply-add FLOPs (2 per MAC) of this layer's linear maps for one sample of N atoms,
  /// counting the N (N - 1) pairs of distinct atoms.
  int64_t linear_flops(int64_t num_atoms) const;

  EgnnOptions options;
  bool update_features;
  // First edge linear map, split so that the [B, N, N, 2H + 1 + R] concatenation is never
  // built: W [h_i, h_j, d_ij^2, rbf_ij] + b = (W_i h_i + b) + W_j h_j + w_d d_ij^2 + W_r rbf_ij.
  torch::nn::Linear edge_source{nullptr};   // H -> H, with bias
  torch::nn::Linear edge_target{nullptr};   // H -> H, no bias
  torch::Tensor edge_distance;              // [H], weight of d_ij^2
  torch::nn::Linear edge_rbf{nullptr};      // R -> H, no bias; only when num_rbf > 0
  torch::nn::Linear edge_out{nullptr};      // H -> H (bias and SiLU fused with aggregation)
  torch::nn::Linear coord_hidden{nullptr};  // H -> H
  torch::nn::Linear coord_out{nullptr};     // H -> 1, no bias
  torch::nn::Linear attention{nullptr};     // H -> 1; when options.attention && update_features
  torch::nn::Linear node_hidden{nullptr};   // 2H -> H; when update_features
  torch::nn::Linear node_out{nullptr};      // H -> H; when update_features
};
TORCH_MODULE(EgnnLayer);

/// The equivariant network F(x, c_noise): positions in, a centre-of-mass-free vector field out.
/// Rotating, reflecting or translating the input, or permuting atoms of the same species,
/// transforms the output the same way (translation leaves it unchanged).
class EgnnImpl : public torch::nn::Cloneable<EgnnImpl>, public ScoreNetwork {
 public:
  /// Stream id for make_generator in reset_parameters().
  static constexpr uint64_t kInitStream = 0x45474e4e;  // "EGNN"

  explicit EgnnImpl(EgnnOptions options);

  /// @param x             [B, N, D] positions in network input units (unit scale), any float
  ///                      dtype; converted to options.dtype
  /// @param c_noise       [B] noise-level conditioning (EDM: ln(sigma) / 4)
  /// @param length_scale  [B] physical length of one input unit (EDM: 1 / c_in); multiplies
  ///                      input distances before the radial basis and the cutoff
  /// @return [B, N, D] in options.dtype: the total coordinate displacement of the layers,
  ///         with its mean over atoms removed
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_noise,
                        const torch::Tensor& length_scale) override;

  /// forward() on one chunk, in the calling thread; inputs already in options.dtype.
  /// (Gradients of a chunked forward() reach x and the parameters, not c_noise or
  /// length_scale.)
  torch::Tensor forward_chunk(const torch::Tensor& x, const torch::Tensor& c_noise,
                              const torch::Tensor& length_scale) override;

  void reset() override;
  /// Redraws every parameter from make_generator(options.seed, kInitStream).
  void reset_parameters() override;
  void pretty_print(std::ostream& stream) const override;

  /// Multiply-add FLOPs of all linear maps of one forward pass, per sample of `num_atoms` atoms
  /// (the node-independent noise embedding counted once per sample).
  int64_t linear_flops(int64_t num_atoms) const override;

  EgnnOptions options;
  // [N] int64 index into species_embedding; not a registered buffer (Module::to(dtype) would
  // convert it), moved to the input's device when used.
  torch::Tensor species_index;
  torch::Tensor noise_frequencies;  // [noise_features / 2] buffer, angular frequencies
  torch::nn::Embedding species_embedding{nullptr};
  torch::nn::Linear noise_hidden{nullptr};  // noise_features -> H
  torch::nn::Linear noise_out{nullptr};     // H -> H
  torch::nn::ModuleList layers{nullptr};    // EgnnLayer x options.layers
};
TORCH_MODULE(Egnn);

}  // namespace psm
