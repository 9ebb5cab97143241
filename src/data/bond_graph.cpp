#include "psm/data/bond_graph.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>

#include "psm/core/elements.h"
#include "psm/core/error.h"

namespace psm {

namespace {

torch::Tensor covalent_radii(const std::vector<int64_t>& species) {
  std::vector<double> radii;
  radii.reserve(species.size());
  for (const int64_t z : species) radii.push_back(element(z).covalent_radius);
  return torch::tensor(radii, torch::kFloat64);
}

/// Frames per chunk so that a [chunk, N, N] float64 tensor stays near 128 MiB.
int64_t frames_per_chunk(int64_t num_atoms) {
  return std::max<int64_t>(1, (int64_t{1} << 24) / (num_atoms * num_atoms));
}

}  // namespace

torch::Tensor covalent_adjacency(const torch::Tensor& positions,
                                 const std::vector<int64_t>& species, double scale) {
  const auto num_atoms = static_cast<int64_t>(species.size());
  check(positions.defined() && positions.dim() == 3 && positions.size(2) == 3,
        "covalent_adjacency: positions must have shape [B, N, 3]");
  check(positions.size(1) == num_atoms,
        fmt::format("covalent_adjacency: frames have {} atoms, the species list {}",
                    positions.size(1), num_atoms));
  check(positions.size(0) > 0, "covalent_adjacency: no frames");
  check(!torch::isnan(positions).any().item<bool>(), "covalent_adjacency: NaN positions");
  const torch::Tensor radii = covalent_radii(species).to(positions.device());
  const torch::Tensor cutoff = scale * (radii.unsqueeze(0) + radii.unsqueeze(1));  // [N, N]
  const torch::Tensor off_diagonal =
      ~torch::eye(num_atoms, torch::TensorOptions().dtype(torch::kBool).device(positions.device()));
  std::vector<torch::Tensor> chunks;
  for (const torch::Tensor& frames : positions.split(frames_per_chunk(num_atoms))) {
    const torch::Tensor x = frames.to(torch::kFloat64);
    chunks.push_back((torch::cdist(x, x) < cutoff) & off_diagonal);
  }
  return torch::cat(chunks);
}

torch::Tensor majority_bonds(const torch::Tensor& positions, const std::vector<int64_t>& species,
                             double scale) {
  const torch::Tensor bonded = covalent_adjacency(positions, species, scale);
  // More than half: 2 count > frames, exact in integers.
  const torch::Tensor majority = 2 * bonded.sum(0) > positions.size(0);
  return torch::triu(majority, 1).nonzero();
}

torch::Tensor graph_distances(const torch::Tensor& bonds, int64_t num_atoms, int64_t farthest) {
  check(num_atoms >= 1 && farthest >= 1,
        "graph_distances: needs at least one atom and farthest >= 1");
  check(bonds.defined() && bonds.dim() == 2 && bonds.size(1) == 2 &&
            bonds.scalar_type() == torch::kInt64,
        "graph_distances: bonds must be an int64 tensor [K, 2]");
  check(bonds.numel() == 0 ||
            (bonds.min().item<int64_t>() >= 0 && bonds.max().item<int64_t>() < num_atoms),
        fmt::format("graph_distances: a bond names an atom outside 0..{}", num_atoms - 1));
  const auto bool_options = torch::TensorOptions().dtype(torch::kBool);
  auto adjacency = torch::zeros({num_atoms, num_atoms}, bool_options);
  const auto rows = bonds.select(1, 0), columns = bonds.select(1, 1);
  adjacency.index_put_({rows, columns}, true);
  adjacency.index_put_({columns, rows}, true);
  // Breadth-first search for all sources at once: `reached` grows by one bond per round.
  auto distance = torch::full({num_atoms, num_atoms}, farthest, torch::kInt64);
  auto reached = torch::eye(num_atoms, bool_options);
  distance.masked_fill_(reached, 0);
  const auto step = adjacency.to(torch::kFloat32);
  for (int64_t hops = 1; hops < farthest; ++hops) {
    auto next = torch::mm(reached.to(torch::kFloat32), step).gt(0) | reached;
    distance.masked_fill_(next & ~reached, hops);
    reached = next;
  }
  return distance;
}

std::map<std::string, std::vector<int64_t>> bonds_by_type(const torch::Tensor& bonds,
                                                          const std::vector<int64_t>& species) {
  const torch::Tensor pairs = bonds.to(torch::kInt64).cpu().contiguous();
  const int64_t* pair = pairs.data_ptr<int64_t>();
  std::map<std::string, std::vector<int64_t>> rows;
  for (int64_t k = 0; k < pairs.size(0); ++k) {
    rows[bond_type(species.at(pair[2 * k]), species.at(pair[2 * k + 1]))].push_back(k);
  }
  return rows;
}

}  // namespace psm
