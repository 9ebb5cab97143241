#include "psm/model/egnn.h"

#include <fmt/format.h>

#include <cmath>
#include <utility>
#include <vector>

#include "model/internal/chunked.h"
#include "model/internal/fused_ops.h"
#include "model/internal/layers.h"
#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/model/activation.h"

namespace psm {

using layers::cosine_envelope;
using layers::dense;
using layers::fill_uniform;
using layers::gaussian_rbf;
using layers::init_linear;
using layers::kDistanceEpsilon;
using layers::make_linear;

EgnnOptions::EgnnOptions(int64_t dim, torch::Tensor species)
    : dim_(dim), species_(std::move(species)) {}

// ---------------------------------------------------------------------------------------------
// EgnnLayerImpl

EgnnLayerImpl::EgnnLayerImpl(EgnnOptions options_, bool update_features_)
    : options(std::move(options_)), update_features(update_features_) {
  reset();
}

void EgnnLayerImpl::reset() {
  const int64_t h = options.hidden();
  edge_source = register_module("edge_source", make_linear(h, h, true));
  edge_target = register_module("edge_target", make_linear(h, h, false));
  edge_distance = register_parameter("edge_distance", torch::empty({h}));
  if (options.num_rbf() > 0) {
    edge_rbf = register_module("edge_rbf", make_linear(options.num_rbf(), h, false));
  }
  edge_out = register_module("edge_out", make_linear(h, h, true));
  coord_hidden = register_module("coord_hidden", make_linear(h, h, true));
  coord_out = register_module("coord_out", make_linear(h, 1, false));
  if (update_features) {
    if (options.attention()) attention = register_module("attention", make_linear(h, 1, true));
    node_hidden = register_module("node_hidden", make_linear(2 * h, h, true));
    node_out = register_module("node_out", make_linear(h, h, true));
  }
  to(options.dtype());
}

void EgnnLayerImpl::reset_parameters(torch::Generator& generator) {
  torch::NoGradGuard no_grad;
  const int64_t h = options.hidden();
  const int64_t edge_fan_in = 2 * h + 1 + options.num_rbf();
  init_linear(edge_source, edge_fan_in, generator);
  init_linear(edge_target, edge_fan_in, generator);
  fill_uniform(edge_distance, 1.0 / std::sqrt(static_cast<double>(edge_fan_in)), generator);
  if (edge_rbf) init_linear(edge_rbf, edge_fan_in, generator);
  init_linear(edge_out, h, generator);
  init_linear(coord_hidden, h, generator);
  // Xavier-uniform with gain 1e-3 (as in EGNN): the untrained network barely moves atoms.
  fill_uniform(coord_out->weight, 1e-3 * std::sqrt(6.0 / static_cast<double>(h + 1)), generator);
  if (attention) init_linear(attention, h, generator);
  if (node_hidden) init_linear(node_hidden, 2 * h, generator);
  if (node_out) init_linear(node_out, h, generator);
}

std::pair<torch::Tensor, torch::Tensor> EgnnLayerImpl::forward(const torch::Tensor& h,
                                                               const torch::Tensor& x,
                                                               const torch::Tensor& pair_weight,
                                                               const torch::Tensor& rbf) {
  const auto& act = options.activation();
  auto diff = x.unsqueeze(2) - x.unsqueeze(1);  // [B, N, N, D], x_i - x_j
  auto d2 = diff.square().sum(-1);              // [B, N, N]

  // Edge MLP phi_e(h_i, h_j, d_ij^2, rbf_ij) with its first map split per node, the coordinate
  // MLP phi_x on its messages and the (gated) mean message per atom, fused (fused_ops.h).
  auto rbf_term = rbf.defined() ? dense(edge_rbf, rbf) : torch::Tensor();
  const fused::PairMlpWeights weights{
      .distance = edge_distance,
      .edge_weight = edge_out->weight,
      .edge_bias = edge_out->bias,
      .coord_weight = coord_hidden->weight,
      .coord_bias = coord_hidden->bias,
      .coord_head = coord_out->weight.squeeze(0),
      .attention_weight = attention ? attention->weight.squeeze(0) : torch::Tensor(),
      .attention_bias = attention ? attention->bias : torch::Tensor()};
  auto [weight, aggregate] = fused::pair_mlp(act, dense(edge_source, h), dense(edge_target, h), d2,
                                             rbf_term, pair_weight, weights, update_features);

  // Coordinate update along x_i - x_j, normalised by (d_ij + 1) so that far pairs do not
  // dominate, averaged over neighbours through pair_weight.
  if (options.tanh()) weight = options.coord_range() * torch::tanh(weight);
  weight = weight * pair_weight / (torch::sqrt(d2 + kDistanceEpsilon) + 1.0);
  auto shift = (diff * weight.unsqueeze(-1)).sum(2);
  if (!update_features) return {h, shift};

  // Node update with a residual connection.
  auto update =
      dense(node_out, fused::activation(act, dense(node_hidden, torch::cat({h, aggregate}, -1))));
  return {h + update, shift};
}

int64_t EgnnLayerImpl::linear_flops(int64_t num_atoms) const {
  // Pairs i != j only: the self-pairs carry no weight (the inference kernel skips them).
  const int64_t n = num_atoms, pairs = num_atoms * (num_atoms - 1), h = options.hidden();
  int64_t macs = 2 * n * h * h                    // edge_source, edge_target
                 + pairs * h                      // edge_distance
                 + pairs * options.num_rbf() * h  // edge_rbf
                 + 2 * pairs * h * h              // edge_out, coord_hidden
                 + pairs * h;                     // coord_out
  if (update_features) {
    if (options.attention()) macs += pairs * h;
    macs += n * 2 * h * h + n * h * h;  // node_hidden, node_out
  }
  return 2 * macs;
}

// ---------------------------------------------------------------------------------------------
// EgnnImpl

EgnnImpl::EgnnImpl(EgnnOptions options_) : options(std::move(options_)) {
  const auto& o = options;
  check(o.dim() == 2 || o.dim() == 3, fmt::format("model: dim must be 2 or 3, got {}", o.dim()));
  check(o.species().defined() && o.species().dim() == 1 && o.species().size(0) >= 2 &&
            o.species().scalar_type() == torch::kInt64,
        "model: species must be an int64 tensor [N] with N >= 2 atoms");
  check(o.layers() >= 1, fmt::format("model: layers must be >= 1, got {}", o.layers()));
  check(o.hidden() >= 1, fmt::format("model: hidden must be >= 1, got {}", o.hidden()));
  check_activation(o.activation(), "model");
  check(o.noise_features() >= 2 && o.noise_features() % 2 == 0,
        fmt::format("model: noise_features must be even and >= 2, got {}", o.noise_features()));
  check(o.num_rbf() >= 0, fmt::format("model: num_rbf must be >= 0, got {}", o.num_rbf()));
  check(o.num_rbf() == 0 || o.rbf_cutoff() > 0,
        fmt::format("model: rbf_cutoff must be > 0, got {}", o.rbf_cutoff()));
  check(o.cutoff() >= 0, fmt::format("model: cutoff must be >= 0 (0: none), got {}", o.cutoff()));
  check(o.chunk_size() >= 0,
        fmt::format("model: chunk_size must be >= 0 (0: whole batch), got {}", o.chunk_size()));
  check(o.coord_range() > 0,
        fmt::format("model: coord_range must be > 0, got {}", o.coord_range()));
  check(o.dtype() == torch::kFloat32 || o.dtype() == torch::kFloat64,
        "model: dtype must be float32 or float64");
  reset();
}

void EgnnImpl::reset() {
  const int64_t h = options.hidden();
  auto [unique_species, inverse] = at::_unique(options.species().cpu(), /*sorted=*/true,
                                               /*return_inverse=*/true);
  species_index = inverse;
  species_embedding =
      register_module("species_embedding", torch::nn::Embedding(unique_species.size(0), h));
  // Angular frequencies spaced geometrically from 1 to 100: resolves c_noise = ln(sigma)/4 to
  // about 1% over the usual sigma range.
  noise_frequencies =
      register_buffer("noise_frequencies", layers::noise_frequencies(options.noise_features()));
  noise_hidden = register_module("noise_hidden", make_linear(options.noise_features(), h, true));
  noise_out = register_module("noise_out", make_linear(h, h, true));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t l = 0; l < options.layers(); ++l) {
    layers->push_back(EgnnLayer(options, /*update_features=*/l + 1 < options.layers()));
  }
  to(options.dtype());
  reset_parameters();
}

void EgnnImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  auto generator = make_generator(options.seed(), kInitStream);
  auto& table = species_embedding->weight;
  table.copy_(torch::randn(table.sizes(), generator, torch::dtype(torch::kFloat64)));
  init_linear(noise_hidden, options.noise_features(), generator);
  init_linear(noise_out, options.hidden(), generator);
  for (const auto& layer : *layers) layer->as<EgnnLayerImpl>()->reset_parameters(generator);
}

torch::Tensor EgnnImpl::forward(const torch::Tensor& x, const torch::Tensor& c_noise,
                                const torch::Tensor& length_scale) {
  const chunked::NetworkShape shape{.atoms = options.species().size(0),
                                    .dim = options.dim(),
                                    .dtype = options.dtype(),
                                    .chunk_size = options.chunk_size()};
  return chunked::run_network(*this, shape, x, c_noise, length_scale, parameters());
}

torch::Tensor EgnnImpl::forward_chunk(const torch::Tensor& x, const torch::Tensor& c_noise,
                                      const torch::Tensor& length_scale) {
  const int64_t n = x.size(1), batch = x.size(0);
  // Node features: species embedding + embedding of the noise level.
  auto fourier = layers::fourier_features(c_noise, noise_frequencies);  // [B, F]
  const auto& act = options.activation();
  auto noise = dense(noise_out, fused::activation(act, dense(noise_hidden, fourier)));  // [B, H]
  auto species = species_embedding->weight.index_select(0, species_index.to(x.device()));
  auto h = species.unsqueeze(0) + noise.unsqueeze(1);  // [B, N, H]

  // Pair weights: no self-pairs, mean over the other atoms, optional smooth cutoff.
  auto pair_weight = (1.0 - torch::eye(n, x.options())) / static_cast<double>(n - 1);
  pair_weight = pair_weight.unsqueeze(0);  // [1, N, N], broadcast over the batch
  torch::Tensor rbf;
  if (options.cutoff() > 0 || options.num_rbf() > 0) {
    auto d2 = (x.unsqueeze(2) - x.unsqueeze(1)).square().sum(-1);
    auto distance =
        torch::sqrt(d2 + kDistanceEpsilon) * length_scale.view({batch, 1, 1});  // physical units
    if (options.cutoff() > 0)
      pair_weight = pair_weight * cosine_envelope(distance, options.cutoff());
    if (options.num_rbf() > 0)
      rbf = gaussian_rbf(distance, options.num_rbf(), options.rbf_cutoff());
  }

  // The displacement is accumulated on its own rather than as (x + shifts) - x, which would
  // lose the digits of small displacements to the magnitude of x.
  auto displacement = torch::zeros_like(x);
  for (const auto& layer : *layers) {
    torch::Tensor shift;
    std::tie(h, shift) = layer->as<EgnnLayerImpl>()->forward(h, x + displacement, pair_weight, rbf);
    displacement = displacement + shift;
  }
  return displacement - displacement.mean(1, /*keepdim=*/true);
}

int64_t EgnnImpl::linear_flops(int64_t num_atoms) const {
  const int64_t h = options.hidden();
  int64_t flops = 2 * (options.noise_features() * h + h * h);
  for (const auto& layer : *layers) flops += layer->as<EgnnLayerImpl>()->linear_flops(num_atoms);
  return flops;
}

void EgnnImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options;
  stream << fmt::format(
      "psm::Egnn(dim={}, atoms={}, species={}, layers={}, hidden={}, activation={}, "
      "noise_features={}, num_rbf={}, rbf_cutoff={}, cutoff={}, attention={}, tanh={}, "
      "coord_range={}, chunk_size={}, dtype={}, seed={})",
      o.dim(), o.species().size(0), species_embedding->weight.size(0), o.layers(), o.hidden(),
      o.activation(), o.noise_features(), o.num_rbf(), o.rbf_cutoff(), o.cutoff(), o.attention(),
      o.tanh(), o.coord_range(), o.chunk_size(), c10::toString(o.dtype()), o.seed());
}

}  // namespace psm
