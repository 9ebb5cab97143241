#pragma once
// Fused element-wise steps of the EGNN pair MLP. On the large pair tensors [B, N, N, H] the
// network is bound by memory passes and by the exponential of the SiLU, not by its matrix
// products; fusing "broadcast-add, bias, SiLU, dot with a head vector" into one pass, and
// recomputing the pre-activations in the backward pass instead of storing them, removes most of
// those passes. The fused kernels run for the SiLU on float32 CPU tensors whose width is a
// multiple of 16; every other case (other activations, float64, other devices) takes the
// composite path of plain ATen operations, which computes the same function and serves as the
// reference in the tests.
// Both paths are differentiable once (no double backward through the fused kernels).

#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

namespace psm::fused {

/// True when the fused CPU kernels handle tensors like `t` with feature width `width`.
bool has_fused_kernel(const torch::Tensor& t, int64_t width);

/// The activation `name` applied to x (in place when x does not require grad).
torch::Tensor activation(const std::string& name, torch::Tensor x);

/// act(a_i + b_j + d2_ij w + e_ij) for every pair (i, j) of every sample: the first layer of
/// the edge MLP with its input map split per node.
/// @param a   [B, N, H] source-node part (bias included)
/// @param b   [B, N, H] target-node part
/// @param d2  [B, N, N] squared distances
/// @param w   [H] weight of the squared distance
/// @param e   [B, N, N, H] further per-pair terms (radial basis part), or undefined
/// @return [B, N, N, H]
torch::Tensor pair_activation(const std::string& name, const torch::Tensor& a,
                              const torch::Tensor& b, const torch::Tensor& d2,
                              const torch::Tensor& w, const torch::Tensor& e);

/// act(z + bias) over the last dimension.
/// @param z     [..., H] (a matrix product's output)
/// @param bias  [H]
torch::Tensor bias_activation(const std::string& name, const torch::Tensor& z,
                              const torch::Tensor& bias);

/// act(z + bias) . head over the last dimension, without storing act(z + bias).
/// @param z     [..., H]
/// @param bias  [H]
/// @param head  [H]
/// @return [...]
torch::Tensor bias_activation_head(const std::string& name, const torch::Tensor& z,
                                   const torch::Tensor& bias, const torch::Tensor& head);

/// The message and aggregation step of an EGNN layer in one pass over the pairs:
///   m_ij = act(z_ij + bias),
///   gate_ij = pair_weight_ij * sigmoid(m_ij . attention_weight + attention_bias)
///             (pair_weight_ij when attention_weight is undefined),
///   aggregate_i = sum_j gate_ij m_ij.
/// @param z                 [B, N, N, H] (the second edge map's product)
/// @param bias              [H]
/// @param attention_weight  [H], or undefined for no attention
/// @param attention_bias    [1], or undefined for no attention
/// @param pair_weight       [B, N, N], or [1, N, N] shared by the batch
/// @return m [B, N, N, H] and aggregate [B, N, H]
std::pair<torch::Tensor, torch::Tensor> message_aggregate(const std::string& name,
                                                          const torch::Tensor& z,
                                                          const torch::Tensor& bias,
                                                          const torch::Tensor& attention_weight,
                                                          const torch::Tensor& attention_bias,
                                                          const torch::Tensor& pair_weight);

/// The weights of one EGNN layer's pair MLPs (views of its parameters).
struct PairMlpWeights {
  torch::Tensor distance;          ///< [H] weight of d_ij^2 in the first edge map
  torch::Tensor edge_weight;       ///< [H, H] second edge map (out x in)
  torch::Tensor edge_bias;         ///< [H]
  torch::Tensor coord_weight;      ///< [H, H] hidden map of the coordinate MLP (out x in)
  torch::Tensor coord_bias;        ///< [H]
  torch::Tensor coord_head;        ///< [H] output row of the coordinate MLP
  torch::Tensor attention_weight;  ///< [H], or undefined for no attention
  torch::Tensor attention_bias;    ///< [1], or undefined for no attention
};

/// True when pair_mlp has a fused inference kernel for this case (silu, float32 CPU, width 16,
/// 32, 64 or 128).
bool has_fused_pair_mlp(const std::string& name, const torch::Tensor& like, int64_t width);

/// All pair MLPs of an EGNN layer:
///   a = act(src_i + dst_j + d2_ij distance + e_ij),  m = act(edge_weight a + edge_bias),
///   coord_ij = coord_head . act(coord_weight m + coord_bias),
///   aggregate_i = sum_j gate_ij m_ij with the gates of message_aggregate.
/// When autograd records nothing (inference) and has_fused_pair_mlp holds, one kernel does it
/// pair by pair without storing any [B, N, N, H] tensor, and skips each self-pair (i, i) whose
/// pair weight is zero: its coord_ii is 0 there. Otherwise it composes the operations above,
/// which are differentiable.
/// @param src, dst      [B, N, H] node parts of the first edge map (bias in src)
/// @param d2            [B, N, N] squared distances
/// @param e             [B, N, N, H] radial-basis part, or undefined
/// @param pair_weight   [B, N, N] or [1, N, N]
/// @return coord [B, N, N] and aggregate [B, N, H] (undefined unless want_aggregate)
std::pair<torch::Tensor, torch::Tensor> pair_mlp(const std::string& name, const torch::Tensor& src,
                                                 const torch::Tensor& dst, const torch::Tensor& d2,
                                                 const torch::Tensor& e,
                                                 const torch::Tensor& pair_weight,
                                                 const PairMlpWeights& weights,
                                                 bool want_aggregate);

}  // namespace psm::fused
