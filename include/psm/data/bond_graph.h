#pragma once
// Covalent bond graphs of molecular frames, and the topological distances between atoms that a
// score network takes as edge features. Below the model layer so that training can build the
// graph from its frames; the molecular metrics (eval/molecular.h) score samples against it.

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace psm {

/// Covalent bonds of each frame: atoms i != j are bonded when r_ij < scale (r_i + r_j), r the
/// covalent radii of core/elements.h.
/// @param positions [B, N, 3] float64, Å; @param species [N] atomic numbers 1..86
/// @return [B, N, N] bool, symmetric, false on the diagonal
torch::Tensor covalent_adjacency(const torch::Tensor& positions,
                                 const std::vector<int64_t>& species, double scale = 1.2);

/// The reference bond graph: bonds present (covalent_adjacency) in more than half of the frames.
/// @return [K, 2] int64 rows (i, j) with i < j, in row-major order
torch::Tensor majority_bonds(const torch::Tensor& positions, const std::vector<int64_t>& species,
                             double scale = 1.2);

/// Bonds between atoms i and j on the shortest path of a bond graph, capped at `farthest`.
/// Distances are invariant under the graph's automorphisms (equivalent hydrogens of a methyl
/// group have equal rows up to their permutation), so features built from them keep a network
/// permutation-equivariant under every symmetry of the molecule.
/// @param bonds [K, 2] int64 atom pairs, indices in [0, num_atoms)
/// @return [N, N] int64: 0 on the diagonal, 1 for bonded atoms, ..., `farthest` for atoms
///         `farthest` or more bonds apart and for atoms in different fragments
torch::Tensor graph_distances(const torch::Tensor& bonds, int64_t num_atoms, int64_t farthest);

/// The rows of `bonds` ([K, 2] int64) grouped by bond type ("C-H", core/elements.h bond_type).
std::map<std::string, std::vector<int64_t>> bonds_by_type(const torch::Tensor& bonds,
                                                          const std::vector<int64_t>& species);

}  // namespace psm
