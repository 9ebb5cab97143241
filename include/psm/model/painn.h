#pragma once
// A PaiNN-style network (Schütt et al. 2021): scalar and l = 1 vector features per atom,
// gated equivariant message passing over an edge list, the noise level as a feature, and the
// score read from the vector output. Vector features carry directions between layers, which
// scalar-message networks (EGNN) can only rebuild from distances; force fields gain 3-5x in
// force error from them. Edges are all pairs (dense), or pairs within a physical cutoff found
// per batch on the noised positions (sparse), so that cost grows with atoms x neighbours; the
// two give the same function. For molecules the bond graph enters as edge features
// (1, 2, 3 bonds apart, farther), and pairs within three bonds are always edges.
// Optionally conservative: the output is -grad_x E(x) of a scalar head (double backpropagation
// in training).

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

/// How a Painn finds its edges.
enum class NeighbourMode {
  automatic,  ///< dense up to kDenseAtomLimit atoms, sparse above
  dense,      ///< every pair is an edge (weight 0 beyond the cutoff)
  sparse,     ///< only pairs within the cutoff (and within three bonds) are edges
};

/// Options for Painn. Usage:
///   Painn net(PainnOptions(3, species).layers(4).hidden(64).cutoff(2.5));
struct PainnOptions {
  /// @param dim      spatial dimension, 2 or 3
  /// @param species  [N] int64 atomic numbers (0 for identical model particles such as LJ)
  PainnOptions(int64_t dim, torch::Tensor species);

  TORCH_ARG(int64_t, dim);
  TORCH_ARG(torch::Tensor, species);
  /// Message-passing layers.
  TORCH_ARG(int64_t, layers) = 4;
  /// Width of scalar and vector features.
  TORCH_ARG(int64_t, hidden) = 64;
  /// "silu", "gelu", "relu" or "tanh".
  TORCH_ARG(std::string, activation) = "silu";
  /// Sinusoidal features of the noise level (even, >= 2).
  TORCH_ARG(int64_t, noise_features) = 32;
  /// Gaussian radial basis of the physical pair distance over [0, rbf_cutoff].
  TORCH_ARG(int64_t, num_rbf) = 16;
  TORCH_ARG(double, rbf_cutoff) = 5.0;
  /// Gaussian radial basis of the pair distance in network input units over [0, 4]: the
  /// distance feature that keeps its meaning at every noise level (the physical one leaves the
  /// basis at large sigma).
  TORCH_ARG(int64_t, num_input_rbf) = 16;
  /// Pairs farther apart than this (physical length units, on the noised input positions)
  /// exchange no messages, switched off smoothly by a cosine envelope. 0: every pair.
  TORCH_ARG(double, cutoff) = 0.0;
  TORCH_ARG(NeighbourMode, neighbours) = NeighbourMode::automatic;
  /// Build the bond graph from the training frames when the species are chemical elements
  /// (with_atoms in network.h); off for model particles (species 0) whatever this says.
  TORCH_ARG(bool, bond_graph) = true;
  /// [N, N] int64 bonds between atoms (data/bond_graph.h graph_distances, capped at 4), or
  /// undefined for no bond graph (Lennard-Jones, DW4).
  TORCH_ARG(torch::Tensor, graph);
  /// Output -grad_x E(x, sigma) of a scalar energy head instead of the vector readout.
  TORCH_ARG(bool, conservative) = false;
  TORCH_ARG(torch::Dtype, dtype) = torch::kFloat32;
  /// Samples per chunk on the CPU threads (see chunked execution); 0: the whole batch at once.
  TORCH_ARG(int64_t, chunk_size) = 64;
  /// reset_parameters() draws every initial weight from make_generator(seed, kInitStream).
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Up to this many atoms NeighbourMode::automatic uses every pair: the edge list pays once a
/// cutoff removes a good part of the pairs, as it does for larger systems (BENCHMARKS.md,
/// "Training step and forward pass: EGNN against PaiNN").
inline constexpr int64_t kDenseAtomLimit = 32;

/// Bond-graph distances are capped here: 1, 2, 3 bonds apart, and 4 for farther.
inline constexpr int64_t kGraphFarthest = 4;

std::string to_string(NeighbourMode mode);
/// "auto", "dense" or "sparse"; throws psm::Error listing them.
NeighbourMode neighbour_mode_from_string(const std::string& name);

/// The edges of a chunk of samples, as flat node indices (sample b, atom i -> b N + i).
struct Edges {
  torch::Tensor source;  ///< [E] int64, j of the pair (messages flow from j ...)
  torch::Tensor target;  ///< [E] int64, i of the pair (... to i)
  torch::Tensor pair;    ///< [E] int64, i N + j: the pair's index in an [N, N] table
};

/// The pairs of a chunk of b samples and their geometry, in one of two layouts: dense, every
/// (i, j) as [b, N, N, ...] tensors (self pairs have weight 0), or sparse, the edge list as
/// [E, ...] tensors. Dense sums over neighbours are reductions and matrix products; sparse ones
/// are gathers and scatters.
struct Neighbourhood {
  int64_t samples = 0;
  int64_t atoms = 0;
  Edges edges;           ///< sparse only
  torch::Tensor unit;    ///< [b, N, N, D] or [E, D]: (x_i - x_j) / |x_i - x_j|
  torch::Tensor basis;   ///< [b, N, N, R] or [E, R]: radial bases of the pair distance
  torch::Tensor weight;  ///< [b, N, N, 1] or [E, 1]: envelope and normalisation
  torch::Tensor type;    ///< [N N] or [E] int64 bond-graph class (0..3); with a graph only

  bool dense() const { return !edges.source.defined(); }
};

/// One message-and-update block. Internal to Painn; declared here so that its registered names
/// (the checkpoint format) are visible in one place.
class PainnLayerImpl : public torch::nn::Cloneable<PainnLayerImpl> {
 public:
  explicit PainnLayerImpl(PainnOptions options);

  /// @param s      [M, H] scalar features of M = b N nodes
  /// @param v      [M, D, H] vector features
  /// @param noise  [M, H] noise embedding per node
  /// @param pairs  the chunk's pairs
  /// @return updated (s, v)
  std::pair<torch::Tensor, torch::Tensor> forward(torch::Tensor s, torch::Tensor v,
                                                  const torch::Tensor& noise,
                                                  const Neighbourhood& pairs);

  void reset() override;
  void reset_parameters(torch::Generator& generator);

  PainnOptions options;
  torch::nn::Linear noise_shift{nullptr};     // H -> H
  torch::nn::Linear message_hidden{nullptr};  // H -> H
  torch::nn::Linear message_out{nullptr};     // H -> 3H
  torch::nn::Linear filter{nullptr};          // R + R_in -> 3H
  torch::nn::Embedding bond_filter{nullptr};  // 4 graph distances -> 3H; with a graph only
  torch::nn::Linear update_u{nullptr};        // H -> H on vectors, no bias
  torch::nn::Linear update_v{nullptr};        // H -> H on vectors, no bias
  torch::nn::Linear update_hidden{nullptr};   // 2H -> H
  torch::nn::Linear update_out{nullptr};      // H -> 3H
};
TORCH_MODULE(PainnLayer);

/// The network F(x, c_noise): positions in, a centre-of-mass-free vector field out. Rotating,
/// reflecting or translating the input, or permuting atoms of the same species (and, with a
/// bond graph, any permutation that is an automorphism of the graph) transforms the output the
/// same way.
class PainnImpl : public torch::nn::Cloneable<PainnImpl>, public ScoreNetwork {
 public:
  /// Stream id for make_generator in reset_parameters().
  static constexpr uint64_t kInitStream = 0x5041494e;  // "PAIN"

  explicit PainnImpl(PainnOptions options);

  /// See ScoreNetwork::forward.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_noise,
                        const torch::Tensor& length_scale) override;
  torch::Tensor forward_chunk(const torch::Tensor& x, const torch::Tensor& c_noise,
                              const torch::Tensor& length_scale) override;
  int64_t linear_flops(int64_t num_atoms) const override;

  /// The edges of positions x [b, N, D] (input units) with physical lengths length_scale [b]:
  /// every pair in dense mode; in sparse mode the pairs within the cutoff and, with a bond
  /// graph, within three bonds. No [b, N, N, H] tensor is built.
  Edges edges(const torch::Tensor& x, const torch::Tensor& length_scale) const;
  /// True when forward uses sparse edges (NeighbourMode::automatic resolved).
  bool uses_sparse_edges() const;
  /// The pairs of positions x [b, N, D] (input units) with physical lengths length_scale [b],
  /// in the layout uses_sparse_edges() chooses.
  Neighbourhood neighbourhood(const torch::Tensor& x, const torch::Tensor& length_scale) const;

  void reset() override;
  void reset_parameters() override;
  void pretty_print(std::ostream& stream) const override;

  PainnOptions options;
  torch::Tensor species_index;      // [N] int64 into species_embedding (not a buffer)
  torch::Tensor noise_frequencies;  // [noise_features / 2] buffer
  torch::Tensor graph_type;  // [N N] int64, graph distance - 1 (0..3); with a graph, not a buffer
  torch::nn::Embedding species_embedding{nullptr};
  torch::nn::Linear noise_hidden{nullptr};    // noise_features -> H
  torch::nn::Linear noise_out{nullptr};       // H -> H
  torch::nn::ModuleList layers{nullptr};      // PainnLayer x options.layers
  torch::nn::Linear readout_u{nullptr};       // H -> H on vectors, no bias
  torch::nn::Linear readout_v{nullptr};       // H -> H on vectors, no bias
  torch::nn::Linear readout_hidden{nullptr};  // 2H -> H
  torch::nn::Linear readout_gate{nullptr};    // H -> H
  torch::nn::Linear readout_out{nullptr};     // H -> 1 on vectors (energy: on scalars)

 private:
  /// Scalar and vector features after the message-passing layers, [b N, H] and [b N, D, H].
  std::pair<torch::Tensor, torch::Tensor> features(const torch::Tensor& x,
                                                   const torch::Tensor& c_noise,
                                                   const torch::Tensor& length_scale);
  torch::Tensor vector_readout(const torch::Tensor& s, const torch::Tensor& v) const;
};
TORCH_MODULE(Painn);

}  // namespace psm
