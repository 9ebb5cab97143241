#include "psm/model/network.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "psm/core/error.h"
#include "psm/data/bond_graph.h"

namespace psm {

namespace {

template <class... Visitors>
struct Overloaded : Visitors... {
  using Visitors::operator()...;
};

template <class Impl, class Holder>
std::pair<std::shared_ptr<torch::nn::Module>, std::shared_ptr<ScoreNetwork>> as_network(
    Holder holder) {
  std::shared_ptr<Impl> impl = holder.ptr();
  return {impl, impl};
}

}  // namespace

std::string network_kind(const NetworkOptions& options) {
  return std::visit(Overloaded{[](const EgnnOptions&) { return std::string("egnn"); },
                               [](const PainnOptions&) { return std::string("painn"); }},
                    options);
}

std::vector<std::string> network_kinds() { return {"egnn", "painn"}; }

NetworkOptions default_network_options(const std::string& name) {
  if (name == "egnn") return EgnnOptions(0, torch::Tensor());
  if (name == "painn") return PainnOptions(0, torch::Tensor());
  throw Error(
      fmt::format("unknown model kind '{}' (known: {})", name, fmt::join(network_kinds(), ", ")));
}

NetworkOptions with_atoms(NetworkOptions options, const torch::Tensor& positions,
                          const std::vector<int64_t>& species) {
  check(positions.dim() == 3 && positions.size(0) > 0 &&
            positions.size(1) == static_cast<int64_t>(species.size()),
        "model: the frames must be [F, N, D] with one species per atom");
  const double cutoff = std::visit([](const auto& o) { return o.cutoff(); }, options);
  if (cutoff > 0) {
    const auto x = positions.to(torch::kFloat64);
    const auto n = x.size(1);
    auto distance = torch::cdist(x, x) + 1e300 * torch::eye(n, x.options());
    const double shortest = std::get<0>(distance.flatten(1).min(1)).mean().item<double>();
    check(cutoff >= shortest,
          fmt::format("model: cutoff {} is shorter than the frames' shortest bond ({:.3g}): "
                      "no atom would see a neighbour",
                      cutoff, shortest));
  }
  auto species_tensor = torch::tensor(species, torch::kInt64);
  std::visit([&](auto& o) { o.dim(positions.size(2)).species(species_tensor); }, options);
  if (auto* painn = std::get_if<PainnOptions>(&options)) {
    const bool elements =
        std::all_of(species.begin(), species.end(), [](int64_t z) { return z > 0; });
    if (painn->bond_graph() && elements && positions.size(2) == 3) {
      const auto bonds = majority_bonds(positions, species);
      painn->graph(graph_distances(bonds, static_cast<int64_t>(species.size()), kGraphFarthest));
    }
  }
  return options;
}

NetworkOptions with_seed(NetworkOptions options, uint64_t seed) {
  std::visit([&](auto& o) { o.seed(seed); }, options);
  return options;
}

const torch::Tensor& network_species(const NetworkOptions& options) {
  return std::visit([](const auto& o) -> const torch::Tensor& { return o.species(); }, options);
}

std::pair<std::shared_ptr<torch::nn::Module>, std::shared_ptr<ScoreNetwork>> make_network(
    const NetworkOptions& options) {
  return std::visit(
      Overloaded{[](const EgnnOptions& o) { return as_network<EgnnImpl>(Egnn(o)); },
                 [](const PainnOptions& o) { return as_network<PainnImpl>(Painn(o)); }},
      options);
}

}  // namespace psm
