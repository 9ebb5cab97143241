#include "psm/model/painn.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/autograd.h>

#include <cmath>
#include <utility>

#include "model/internal/chunked.h"
#include "model/internal/fused_ops.h"
#include "model/internal/layers.h"
#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/model/activation.h"

namespace psm {

using layers::dense;
using layers::init_linear;
using layers::kDistanceEpsilon;
using layers::make_linear;

namespace {

// Range of the input-unit radial basis: network inputs have unit variance per coordinate, so
// pair distances are mostly below 4.
constexpr double kInputRbfRange = 4.0;

// Squared norm floor of vector features before the square root (finite gradient at zero).
constexpr double kNormEpsilon = 1e-8;

// The linear map of a [M, D, H] vector feature over its last (channel) dimension: mixes
// channels, never directions, so it commutes with rotations. No bias, so it stays equivariant.
torch::Tensor channel_map(const torch::nn::Linear& layer, const torch::Tensor& v) {
  return dense(layer, v);
}

torch::Tensor vector_norm(const torch::Tensor& v) {
  return torch::sqrt(v.square().sum(1) + kNormEpsilon);  // [M, H]
}

// Pairs (i, j), i != j, of N atoms as [P] target i and source j, row-major.
std::pair<torch::Tensor, torch::Tensor> all_pairs(int64_t n, const torch::TensorOptions& options) {
  auto i = torch::arange(n, options).repeat_interleave(n);
  auto j = torch::arange(n, options).repeat({n});
  auto keep = i != j;
  return {i.masked_select(keep), j.masked_select(keep)};
}

}  // namespace

PainnOptions::PainnOptions(int64_t dim, torch::Tensor species)
    : dim_(dim), species_(std::move(species)) {}

std::string to_string(NeighbourMode mode) {
  switch (mode) {
    case NeighbourMode::automatic:
      return "auto";
    case NeighbourMode::dense:
      return "dense";
    case NeighbourMode::sparse:
      return "sparse";
  }
  return "?";
}

NeighbourMode neighbour_mode_from_string(const std::string& name) {
  for (auto mode : {NeighbourMode::automatic, NeighbourMode::dense, NeighbourMode::sparse}) {
    if (to_string(mode) == name) return mode;
  }
  throw Error(fmt::format("unknown neighbour mode '{}' (known: auto, dense, sparse)", name));
}

// ---------------------------------------------------------------------------------------------
// PainnLayerImpl

PainnLayerImpl::PainnLayerImpl(PainnOptions options_) : options(std::move(options_)) { reset(); }

void PainnLayerImpl::reset() {
  const int64_t h = options.hidden();
  noise_shift = register_module("noise_shift", make_linear(h, h, true));
  message_hidden = register_module("message_hidden", make_linear(h, h, true));
  message_out = register_module("message_out", make_linear(h, 3 * h, true));
  filter = register_module("filter",
                           make_linear(options.num_rbf() + options.num_input_rbf(), 3 * h, true));
  if (options.graph().defined()) {
    bond_filter = register_module("bond_filter", torch::nn::Embedding(kGraphFarthest, 3 * h));
  }
  update_u = register_module("update_u", make_linear(h, h, false));
  update_v = register_module("update_v", make_linear(h, h, false));
  update_hidden = register_module("update_hidden", make_linear(2 * h, h, true));
  update_out = register_module("update_out", make_linear(h, 3 * h, true));
  to(options.dtype());
}

void PainnLayerImpl::reset_parameters(torch::Generator& generator) {
  torch::NoGradGuard no_grad;
  const int64_t h = options.hidden();
  init_linear(noise_shift, h, generator);
  init_linear(message_hidden, h, generator);
  init_linear(message_out, h, generator);
  init_linear(filter, options.num_rbf() + options.num_input_rbf(), generator);
  if (bond_filter) layers::fill_uniform(bond_filter->weight, 1.0, generator);
  init_linear(update_u, h, generator);
  init_linear(update_v, h, generator);
  init_linear(update_hidden, 2 * h, generator);
  init_linear(update_out, h, generator);
}

std::pair<torch::Tensor, torch::Tensor> PainnLayerImpl::forward(torch::Tensor s, torch::Tensor v,
                                                                const torch::Tensor& noise,
                                                                const Neighbourhood& pairs) {
  const auto& act = options.activation();
  const int64_t h = options.hidden(), b = pairs.samples, n = pairs.atoms, d = v.size(1);
  s = s + dense(noise_shift, noise);

  // Messages: phi(s_j) W(r_ij) with the continuous filter W (radial bases, bond class,
  // envelope), in three parts: a scalar message, a gate of the neighbour's vectors and a weight
  // of the direction from the neighbour, each summed over neighbours j. The parts are computed
  // apart (not split from one [.., 3H] tensor) so that no pass copies a pair tensor.
  auto phi = dense(message_out, fused::activation(act, dense(message_hidden, s)));  // [M, 3H]
  const auto part_filter = [&](int64_t k) {
    auto w = torch::addmm(filter->bias.narrow(0, k * h, h),
                          pairs.basis.reshape({-1, pairs.basis.size(-1)}),
                          filter->weight.narrow(0, k * h, h).t());
    if (pairs.type.defined()) {
      w = w.view({pairs.dense() ? b : 1, -1, h}) +
          bond_filter->weight.narrow(1, k * h, h).index_select(0, pairs.type);
    }
    auto shape = pairs.basis.sizes().vec();
    shape.back() = h;
    return w.view(shape) * pairs.weight;
  };
  const auto part_phi = [&](int64_t k) { return phi.narrow(1, k * h, h); };
  torch::Tensor ds, dv;
  if (pairs.dense()) {
    const auto from_neighbour = [&](const torch::Tensor& node) {  // [M, H] -> [b, 1, N, H]
      return node.reshape({b, 1, n, h});
    };
    ds = (from_neighbour(part_phi(0)) * part_filter(0)).sum(2).view({b * n, h});
    auto gate = part_filter(1);
    auto direction = from_neighbour(part_phi(2)) * part_filter(2);  // [b, N, N, H]
    auto gated_v = part_phi(1).unsqueeze(1) * v;                    // [M, D, H]: phi_vv(s_j) v_j
    std::vector<torch::Tensor> components(d);
    for (int64_t k = 0; k < d; ++k) {
      components[k] = (gate * from_neighbour(gated_v.select(1, k)) +
                       direction * pairs.unit.select(-1, k).unsqueeze(-1))
                          .sum(2);  // [b, N, H]
    }
    dv = torch::stack(components, 2).view({b * n, d, h});
  } else {
    const auto& e = pairs.edges;
    auto source = e.source.unsqueeze(1);
    const auto gather = [&](const torch::Tensor& node) {
      return node.gather(0, source.expand({-1, node.size(1)}));
    };
    ds = torch::zeros_like(s).scatter_add_(0, e.target.unsqueeze(1).expand({-1, h}),
                                           gather(part_phi(0).contiguous()) * part_filter(0));
    auto gated_v = (part_phi(1).unsqueeze(1) * v).view({b * n, d * h});
    auto edge_v = part_filter(1).unsqueeze(1) * gather(gated_v).view({-1, d, h}) +
                  (gather(part_phi(2).contiguous()) * part_filter(2)).unsqueeze(1) *
                      pairs.unit.unsqueeze(-1);  // [E, D, H]
    dv = torch::zeros({b * n, d * h}, v.options())
             .scatter_add_(0, e.target.unsqueeze(1).expand({-1, d * h}), edge_v.view({-1, d * h}))
             .view({b * n, d, h});
  }
  s = s + ds;
  v = v + dv;

  // Update: channel mixing of the vectors, gated by scalars that see the vectors' norms.
  auto uv = channel_map(update_u, v), vv = channel_map(update_v, v);  // [M, D, H]
  auto a = dense(update_out, fused::activation(
                                 act, dense(update_hidden, torch::cat({s, vector_norm(vv)}, -1))));
  auto gates = a.split(h, -1);
  v = v + gates[0].unsqueeze(1) * uv;
  s = s + gates[1] * (uv * vv).sum(1) + gates[2];
  return {s, v};
}

// ---------------------------------------------------------------------------------------------
// PainnImpl

PainnImpl::PainnImpl(PainnOptions options_) : options(std::move(options_)) {
  const auto& o = options;
  check(o.dim() == 2 || o.dim() == 3, fmt::format("model: dim must be 2 or 3, got {}", o.dim()));
  check(o.species().defined() && o.species().dim() == 1 && o.species().size(0) >= 2 &&
            o.species().scalar_type() == torch::kInt64,
        "model: species must be an int64 tensor [N] with N >= 2 atoms");
  const int64_t n = o.species().size(0);
  check(o.layers() >= 1, fmt::format("model: layers must be >= 1, got {}", o.layers()));
  check(o.hidden() >= 1, fmt::format("model: width must be >= 1, got {}", o.hidden()));
  check_activation(o.activation(), "model");
  check(o.noise_features() >= 2 && o.noise_features() % 2 == 0,
        fmt::format("model: noise_features must be even and >= 2, got {}", o.noise_features()));
  check(o.num_rbf() >= 0 && o.num_input_rbf() >= 0 && o.num_rbf() + o.num_input_rbf() >= 1,
        "model: needs at least one radial basis function (rbf + input_rbf >= 1)");
  check(o.num_rbf() == 0 || o.rbf_cutoff() > 0,
        fmt::format("model: rbf_cutoff must be > 0, got {}", o.rbf_cutoff()));
  check(o.cutoff() >= 0, fmt::format("model: cutoff must be >= 0 (0: none), got {}", o.cutoff()));
  check(o.neighbours() != NeighbourMode::sparse || o.cutoff() > 0,
        "model: sparse neighbours need a cutoff > 0");
  check(o.chunk_size() >= 0,
        fmt::format("model: chunk_size must be >= 0 (0: whole batch), got {}", o.chunk_size()));
  check(o.dtype() == torch::kFloat32 || o.dtype() == torch::kFloat64,
        "model: dtype must be float32 or float64");
  if (o.graph().defined()) {
    const auto& g = o.graph();
    check(g.dim() == 2 && g.size(0) == n && g.size(1) == n && g.scalar_type() == torch::kInt64,
          fmt::format("model: the bond graph must be an int64 [{}, {}] table of graph distances "
                      "for the {} atoms, got {}",
                      n, n, n, fmt::join(g.sizes(), "x")));
    const auto off_diagonal = g.clone().fill_diagonal_(1);
    check(torch::equal(g, g.t()) && (g.diagonal() == 0).all().item<bool>() &&
              off_diagonal.min().item<int64_t>() >= 1 &&
              off_diagonal.max().item<int64_t>() <= kGraphFarthest,
          fmt::format("model: the bond graph's distances must be symmetric, 0 on the diagonal "
                      "and 1..{} elsewhere",
                      kGraphFarthest));
  }
  reset();
}

void PainnImpl::reset() {
  const int64_t h = options.hidden();
  auto [unique_species, inverse] = at::_unique(options.species().cpu(), /*sorted=*/true,
                                               /*return_inverse=*/true);
  species_index = inverse;
  if (options.graph().defined()) {
    graph_type = (options.graph().cpu().clamp(1, kGraphFarthest) - 1).flatten();
  }
  species_embedding =
      register_module("species_embedding", torch::nn::Embedding(unique_species.size(0), h));
  noise_frequencies =
      register_buffer("noise_frequencies", layers::noise_frequencies(options.noise_features()));
  noise_hidden = register_module("noise_hidden", make_linear(options.noise_features(), h, true));
  noise_out = register_module("noise_out", make_linear(h, h, true));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t l = 0; l < options.layers(); ++l) layers->push_back(PainnLayer(options));
  readout_hidden = register_module("readout_hidden", make_linear(2 * h, h, true));
  readout_gate = register_module("readout_gate", make_linear(h, h, true));
  if (options.conservative()) {
    readout_out = register_module("readout_out", make_linear(h, 1, false));
  } else {
    readout_u = register_module("readout_u", make_linear(h, h, false));
    readout_v = register_module("readout_v", make_linear(h, h, false));
    readout_out = register_module("readout_out", make_linear(h, 1, false));
  }
  to(options.dtype());
  reset_parameters();
}

void PainnImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  auto generator = make_generator(options.seed(), kInitStream);
  const int64_t h = options.hidden();
  auto& table = species_embedding->weight;
  table.copy_(torch::randn(table.sizes(), generator, torch::dtype(torch::kFloat64)));
  init_linear(noise_hidden, options.noise_features(), generator);
  init_linear(noise_out, h, generator);
  for (const auto& layer : *layers) layer->as<PainnLayerImpl>()->reset_parameters(generator);
  init_linear(readout_hidden, 2 * h, generator);
  init_linear(readout_gate, h, generator);
  if (readout_u) init_linear(readout_u, h, generator);
  if (readout_v) init_linear(readout_v, h, generator);
  // Small output weights: the untrained network returns almost nothing, so the denoiser
  // starts near c_skip x (as the EGNN's coordinate head).
  layers::fill_uniform(readout_out->weight, 1e-3 / std::sqrt(static_cast<double>(h)), generator);
}

bool PainnImpl::uses_sparse_edges() const {
  switch (options.neighbours()) {
    case NeighbourMode::dense:
      return false;
    case NeighbourMode::sparse:
      return true;
    case NeighbourMode::automatic:
      return options.cutoff() > 0 && options.species().size(0) > kDenseAtomLimit;
  }
  return false;
}

Edges PainnImpl::edges(const torch::Tensor& x, const torch::Tensor& length_scale) const {
  const int64_t batch = x.size(0), n = x.size(1);
  const auto index_options = torch::TensorOptions().dtype(torch::kInt64).device(x.device());
  if (!uses_sparse_edges()) {
    auto [i, j] = all_pairs(n, index_options);
    auto offset = (torch::arange(batch, index_options) * n).unsqueeze(1);  // [b, 1]
    return {.source = (offset + j).flatten(),
            .target = (offset + i).flatten(),
            .pair = (i * n + j).repeat({batch})};
  }
  torch::NoGradGuard no_grad;
  // The distance test in blocks of target atoms: [b, block, N] at a time, never [b, N, N, H].
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, batch * n));
  const auto scale2 = length_scale.square().view({batch, 1, 1});
  const double cutoff2 = options.cutoff() * options.cutoff();
  std::vector<torch::Tensor> found;
  for (int64_t start = 0; start < n; start += block) {
    const int64_t rows = std::min(block, n - start);
    auto xi = x.narrow(1, start, rows);
    auto d2 = (xi.unsqueeze(2) - x.unsqueeze(1)).square().sum(-1) * scale2;  // [b, rows, N]
    auto near = d2 < cutoff2;
    if (graph_type.defined()) {
      auto bonded = graph_type.view({n, n}).narrow(0, start, rows).to(x.device()) <
                    kGraphFarthest - 1;  // within three bonds
      near = near | bonded.unsqueeze(0);
    }
    auto self = torch::arange(start, start + rows, index_options).unsqueeze(1) ==
                torch::arange(n, index_options).unsqueeze(0);
    near = near & ~self.unsqueeze(0);
    auto hits = near.nonzero();  // [E_block, 3]: sample, row, j
    hits.select(1, 1).add_(start);
    found.push_back(hits);
  }
  auto hits = torch::cat(found);
  auto sample = hits.select(1, 0), i = hits.select(1, 1), j = hits.select(1, 2);
  return {.source = sample * n + j, .target = sample * n + i, .pair = i * n + j};
}

Neighbourhood PainnImpl::neighbourhood(const torch::Tensor& x,
                                       const torch::Tensor& length_scale) const {
  const int64_t batch = x.size(0), n = x.size(1), d = x.size(2);
  Neighbourhood pairs{.samples = batch, .atoms = n};
  torch::Tensor distance, physical;
  if (uses_sparse_edges()) {
    pairs.edges = edges(x, length_scale);
    const auto& e = pairs.edges;
    auto flat = x.reshape({batch * n, d});
    auto relative = flat.index_select(0, e.target) - flat.index_select(0, e.source);  // [E, D]
    distance = torch::sqrt(relative.square().sum(-1) + kDistanceEpsilon);
    pairs.unit = relative / distance.unsqueeze(-1);
    physical = distance * length_scale.index_select(0, torch::div(e.target, n, "floor"));
  } else {
    auto relative = x.unsqueeze(2) - x.unsqueeze(1);  // [b, N, N, D], x_i - x_j
    distance = torch::sqrt(relative.square().sum(-1) + kDistanceEpsilon);
    pairs.unit = relative / distance.unsqueeze(-1);
    physical = distance * length_scale.view({batch, 1, 1});
  }

  std::vector<torch::Tensor> bases;
  if (options.num_rbf() > 0) {
    bases.push_back(layers::gaussian_rbf(physical, options.num_rbf(), options.rbf_cutoff()));
  }
  if (options.num_input_rbf() > 0) {
    bases.push_back(layers::gaussian_rbf(distance, options.num_input_rbf(), kInputRbfRange));
  }
  pairs.basis = torch::cat(bases, -1);
  // Pair weight: the envelope of the cutoff (1 without one), 1 within three bonds, 0 for self
  // pairs; sums over neighbours are scaled by 1 / sqrt(N - 1) to keep features near unit scale.
  auto weight = options.cutoff() > 0 ? layers::cosine_envelope(physical, options.cutoff())
                                     : torch::ones_like(physical);
  if (graph_type.defined()) {
    auto type = graph_type.to(x.device());
    pairs.type = pairs.dense() ? type : type.index_select(0, pairs.edges.pair);
    auto bonded = pairs.type < kGraphFarthest - 1;
    weight = torch::where(pairs.dense() ? bonded.view({1, n, n}) : bonded, torch::ones_like(weight),
                          weight);
  }
  if (pairs.dense()) weight = weight * (1.0 - torch::eye(n, x.options()));
  pairs.weight = (weight / std::sqrt(static_cast<double>(n - 1))).unsqueeze(-1);
  return pairs;
}

std::pair<torch::Tensor, torch::Tensor> PainnImpl::features(const torch::Tensor& x,
                                                            const torch::Tensor& c_noise,
                                                            const torch::Tensor& length_scale) {
  const int64_t batch = x.size(0), n = x.size(1), d = x.size(2), h = options.hidden();
  const auto& act = options.activation();
  const Neighbourhood pairs = neighbourhood(x, length_scale);
  auto fourier = layers::fourier_features(c_noise, noise_frequencies);
  auto noise = dense(noise_out, fused::activation(act, dense(noise_hidden, fourier)));  // [b, H]
  auto node_noise = noise.repeat_interleave(n, 0);                                      // [bN, H]
  auto species = species_embedding->weight.index_select(0, species_index.to(x.device()));
  auto s = species.repeat({batch, 1});
  auto v = torch::zeros({batch * n, d, h}, x.options());
  for (const auto& module : *layers) {
    std::tie(s, v) = module->as<PainnLayerImpl>()->forward(s, v, node_noise, pairs);
  }
  return {s, v};
}

torch::Tensor PainnImpl::vector_readout(const torch::Tensor& s, const torch::Tensor& v) const {
  const auto& act = options.activation();
  auto uv = channel_map(readout_u, v), vv = channel_map(readout_v, v);
  auto hidden = fused::activation(act, dense(readout_hidden, torch::cat({s, vector_norm(vv)}, -1)));
  auto gate = dense(readout_gate, hidden);                              // [M, H]
  return channel_map(readout_out, gate.unsqueeze(1) * uv).squeeze(-1);  // [M, D]
}

torch::Tensor PainnImpl::forward(const torch::Tensor& x, const torch::Tensor& c_noise,
                                 const torch::Tensor& length_scale) {
  const chunked::NetworkShape shape{.atoms = options.species().size(0),
                                    .dim = options.dim(),
                                    .dtype = options.dtype(),
                                    .chunk_size = options.chunk_size()};
  return chunked::run_network(*this, shape, x, c_noise, length_scale, parameters());
}

torch::Tensor PainnImpl::forward_chunk(const torch::Tensor& x, const torch::Tensor& c_noise,
                                       const torch::Tensor& length_scale) {
  const int64_t batch = x.size(0), n = x.size(1), d = x.size(2);
  if (!options.conservative()) {
    auto [s, v] = features(x, c_noise, length_scale);
    auto out = vector_readout(s, v).view({batch, n, d});
    return out - out.mean(1, /*keepdim=*/true);
  }
  // Conservative: F = -grad_x E with E = sum over atoms of a scalar head. The graph of the
  // gradient is kept when the caller records (training differentiates through it again).
  const bool record = torch::GradMode::is_enabled();
  torch::AutoGradMode enable(true);
  auto positions = x.requires_grad() ? x : x.detach().requires_grad_(true);
  auto [s, v] = features(positions, c_noise, length_scale);
  const auto& act = options.activation();
  auto hidden = fused::activation(act, dense(readout_hidden, torch::cat({s, vector_norm(v)}, -1)));
  auto energy = dense(readout_out, fused::activation(act, dense(readout_gate, hidden))).sum();
  auto gradient = torch::autograd::grad({energy}, {positions}, {}, /*retain_graph=*/record,
                                        /*create_graph=*/record)[0];
  return record ? -gradient : -gradient.detach();
}

int64_t PainnImpl::linear_flops(int64_t num_atoms) const {
  const int64_t n = num_atoms, pairs = n * (n - 1), h = options.hidden(), d = options.dim();
  const int64_t r = options.num_rbf() + options.num_input_rbf();
  int64_t macs = options.noise_features() * h + h * h;      // noise embedding, once per sample
  const int64_t per_layer = n * h * h                       // noise_shift
                            + n * (h * h + 3 * h * h)       // message MLP
                            + pairs * r * 3 * h             // filter
                            + 2 * n * d * h * h             // update_u, update_v
                            + n * (2 * h * h + 3 * h * h);  // update MLP
  macs += options.layers() * per_layer;
  macs += n * (2 * h * h + h * h) + 2 * n * d * h * h + n * d * h;  // readout
  return 2 * macs;
}

void PainnImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options;
  stream << fmt::format(
      "psm::Painn(dim={}, atoms={}, species={}, layers={}, hidden={}, activation={}, "
      "noise_features={}, num_rbf={}, rbf_cutoff={}, num_input_rbf={}, cutoff={}, "
      "neighbours={}, bond_graph={}, conservative={}, chunk_size={}, dtype={}, seed={})",
      o.dim(), o.species().size(0), species_embedding->weight.size(0), o.layers(), o.hidden(),
      o.activation(), o.noise_features(), o.num_rbf(), o.rbf_cutoff(), o.num_input_rbf(),
      o.cutoff(), to_string(o.neighbours()), o.graph().defined(), o.conservative(), o.chunk_size(),
      c10::toString(o.dtype()), o.seed());
}

}  // namespace psm
