#include "psm/eval/molecular.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <numeric>
#include <tuple>

#include "psm/core/elements.h"
#include "psm/core/error.h"
#include "psm/data/subsets.h"
#include "psm/eval/metrics.h"

namespace psm {

namespace {

void check_molecule_frames(const torch::Tensor& positions, int64_t num_atoms, const char* what) {
  check(positions.defined() && positions.dim() == 3 && positions.size(2) == 3,
        fmt::format("{}: positions must have shape [B, N, 3]", what));
  check(positions.size(1) == num_atoms, fmt::format("{}: frames have {} atoms, the species list {}",
                                                    what, positions.size(1), num_atoms));
  check(positions.size(0) > 0, fmt::format("{}: no frames", what));
  check(!torch::isnan(positions).any().item<bool>(), fmt::format("{}: NaN positions", what));
}

/// Frames per chunk so that a [chunk, N, N] float64 tensor stays near 128 MiB.
int64_t frames_per_chunk(int64_t num_atoms) {
  return std::max<int64_t>(1, (int64_t{1} << 24) / (num_atoms * num_atoms));
}

/// Counts per column: bin [S, K] int64 in [0, bins) -> [K, bins] float64.
torch::Tensor column_histograms(const torch::Tensor& bin, int64_t bins) {
  const int64_t columns = bin.size(1);
  const torch::Tensor offset = torch::arange(columns, bin.options()) * bins;
  return torch::bincount((bin + offset).flatten().cpu(), {}, columns * bins)
      .to(torch::kFloat64)
      .reshape({columns, bins});
}

/// Bond-length histograms of both sets on the reference's widened range of each bond, with an
/// underflow and an overflow bin (see MolecularMetricsOptions::bond_bins).
std::pair<torch::Tensor, torch::Tensor> bond_length_histograms(const torch::Tensor& generated,
                                                               const torch::Tensor& reference,
                                                               int64_t bins) {
  const torch::Tensor low = std::get<0>(reference.min(0));  // [K]
  const torch::Tensor high = std::get<0>(reference.max(0));
  const torch::Tensor pad = torch::clamp_min(0.25 * (high - low), 0.01);
  const torch::Tensor start = low - pad, width = (high - low + 2 * pad) / bins;
  const auto histogram = [&](const torch::Tensor& lengths) {
    const torch::Tensor bin = ((lengths - start) / width).floor().clamp(-1, bins).to(torch::kInt64);
    return column_histograms(bin + 1, bins + 2);
  };
  return {histogram(generated), histogram(reference)};
}

torch::Tensor torsion_histograms(const torch::Tensor& degrees, int64_t bins) {
  // floor, then modulo: 180 degrees falls in the first bin with -180 (the same angle).
  const torch::Tensor bin = torch::remainder(
      ((degrees + 180.0) * (static_cast<double>(bins) / 360.0)).floor().to(torch::kInt64), bins);
  return column_histograms(bin, bins);
}

std::pair<double, double> mean_and_max(const torch::Tensor& values) {
  return {values.mean().item<double>(), values.max().item<double>()};
}

/// Per bond type ("C-H"): the bond-length standard deviation of the generated frames over the
/// reference's, averaged over the type's bonds. @param generated [B, K], reference [M, K] lengths
std::map<std::string, double> bond_width_ratios(const torch::Tensor& generated,
                                                const torch::Tensor& reference,
                                                const torch::Tensor& bonds,
                                                const std::vector<int64_t>& species) {
  const torch::Tensor ratio = generated.std(0) / reference.std(0);  // [K]
  std::map<std::string, double> means;
  for (const auto& [type, rows] : bonds_by_type(bonds, species)) {
    means[type] = ratio.index_select(0, torch::tensor(rows, torch::kInt64).to(ratio.device()))
                      .mean()
                      .item<double>();
  }
  return means;
}

std::vector<double> to_vector(const torch::Tensor& values) {
  const torch::Tensor contiguous = values.to(torch::kFloat64).cpu().contiguous();
  return std::vector<double>(contiguous.data_ptr<double>(),
                             contiguous.data_ptr<double>() + contiguous.numel());
}

/// Whether b and c stay connected once the bond b-c is removed (then b-c lies in a ring).
bool in_ring(const std::vector<std::vector<int64_t>>& neighbours, int64_t b, int64_t c) {
  std::vector<bool> seen(neighbours.size(), false);
  std::deque<int64_t> queue = {b};
  seen[b] = true;
  while (!queue.empty()) {
    const int64_t atom = queue.front();
    queue.pop_front();
    for (const int64_t next : neighbours[atom]) {
      if ((atom == b && next == c) || seen[next]) continue;
      if (next == c) return true;
      seen[next] = true;
      queue.push_back(next);
    }
  }
  return false;
}

/// Neighbour lists of a bond list, checked against the atom count.
std::vector<std::vector<int64_t>> neighbour_lists(const torch::Tensor& bonds, int64_t num_atoms,
                                                  const char* what) {
  check(bonds.dim() == 2 && bonds.size(1) == 2,
        fmt::format("{}: bonds must have shape [K, 2], got [{}]", what,
                    fmt::join(bonds.sizes(), ", ")));
  const torch::Tensor pairs = bonds.to(torch::kInt64).cpu().contiguous();
  const int64_t* pair = pairs.data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> neighbours(num_atoms);
  for (int64_t k = 0; k < pairs.size(0); ++k) {
    const int64_t i = pair[2 * k], j = pair[2 * k + 1];
    check(i >= 0 && j >= 0 && i < num_atoms && j < num_atoms && i != j,
          fmt::format("{}: bond ({}, {}) out of range for {} atoms", what, i, j, num_atoms));
    neighbours[i].push_back(j);
    neighbours[j].push_back(i);
  }
  return neighbours;
}

/// [N, N] row-major 0/1 adjacency matrix of neighbour lists.
std::vector<uint8_t> adjacency_matrix(const std::vector<std::vector<int64_t>>& neighbours) {
  const size_t n = neighbours.size();
  std::vector<uint8_t> matrix(n * n, 0);
  for (size_t i = 0; i < n; ++i) {
    for (const int64_t j : neighbours[i]) matrix[i * n + j] = 1;
  }
  return matrix;
}

/// An undirected graph as rows of 64-bit words, so that the search below tests adjacency and
/// counts mapped neighbours without torch calls.
class BitGraph {
 public:
  /// @param adjacency [n, n] row-major, non-zero where bonded, symmetric
  BitGraph(const uint8_t* adjacency, int64_t n) : n_(n), words_((n + 63) / 64), bits_(n * words_) {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        if (adjacency[i * n + j]) bits_[i * words_ + j / 64] |= uint64_t{1} << (j % 64);
      }
    }
  }
  int64_t size() const { return n_; }
  int64_t words() const { return words_; }
  const uint64_t* row(int64_t i) const { return bits_.data() + i * words_; }
  bool adjacent(int64_t i, int64_t j) const { return (row(i)[j / 64] >> (j % 64)) & 1; }
  std::vector<int64_t> neighbours(int64_t i) const {
    std::vector<int64_t> out;
    for (int64_t j = 0; j < n_; ++j) {
      if (adjacent(i, j)) out.push_back(j);
    }
    return out;
  }

 private:
  int64_t n_, words_;
  std::vector<uint64_t> bits_;
};

/// Colour refinement (1-dimensional Weisfeiler-Leman). Round 0 colours an atom by (element,
/// degree); each further round by its colour and the sorted colours of its neighbours, until the
/// reference's colour classes stop splitting. A frame replays the reference's tables, so colours
/// of both graphs mean the same: an isomorphism maps each atom to one of its colour, which filters
/// candidates far better than element and degree (an O-bound hydrogen is never tried on carbon),
/// and most non-isomorphic frames already differ in their colours.
class ColourRefinement {
 public:
  ColourRefinement(const BitGraph& reference, const std::vector<int64_t>& species) {
    std::vector<int32_t> colours;
    size_t classes = 0;
    while (true) {
      auto& table = tables_.emplace_back();
      std::vector<int32_t> next(reference.size());
      for (int64_t i = 0; i < reference.size(); ++i) {
        const std::vector<int64_t> key = signature(reference, species, colours, i);
        next[i] = table.emplace(key, static_cast<int32_t>(table.size())).first->second;
      }
      // The signature includes the atom's own colour, so classes only split: same count, stable.
      if (table.size() == classes) break;
      classes = table.size();
      colours = std::move(next);
    }
    tables_.pop_back();  // the last round only confirmed stability
    colours_ = std::move(colours);
    for (const int32_t c : colours_) ++class_sizes_[c];
  }

  const std::vector<int32_t>& reference_colours() const { return colours_; }
  int64_t class_size(int32_t colour) const { return class_sizes_.at(colour); }

  /// The frame's colours, or nullopt when they show it is not isomorphic to the reference (a
  /// neighbourhood the reference lacks, or different class sizes).
  std::optional<std::vector<int32_t>> frame_colours(const BitGraph& frame,
                                                    const std::vector<int64_t>& species) const {
    std::vector<int32_t> colours;
    for (const auto& table : tables_) {
      std::vector<int32_t> next(frame.size());
      for (int64_t i = 0; i < frame.size(); ++i) {
        const auto found = table.find(signature(frame, species, colours, i));
        if (found == table.end()) return std::nullopt;
        next[i] = found->second;
      }
      colours = std::move(next);
    }
    std::map<int32_t, int64_t> sizes;
    for (const int32_t c : colours) ++sizes[c];
    if (sizes != class_sizes_) return std::nullopt;
    return colours;
  }

 private:
  /// Atom i's key for the next round: (element, degree) when `colours` is empty (round 0), else
  /// its colour followed by its neighbours' colours, sorted.
  static std::vector<int64_t> signature(const BitGraph& graph, const std::vector<int64_t>& species,
                                        const std::vector<int32_t>& colours, int64_t i) {
    const std::vector<int64_t> neighbours = graph.neighbours(i);
    if (colours.empty()) return {species[i], static_cast<int64_t>(neighbours.size())};
    std::vector<int64_t> key = {colours[i]};
    for (const int64_t j : neighbours) key.push_back(colours[j]);
    std::sort(key.begin() + 1, key.end());
    return key;
  }

  std::vector<std::map<std::vector<int64_t>, int32_t>> tables_;  // per round: signature -> colour
  std::vector<int32_t> colours_;                                 // of the reference atoms
  std::map<int32_t, int64_t> class_sizes_;                       // reference atoms per colour
};

/// Backtracking search (VF2-style) for an isomorphism from the reference graph onto a frame's,
/// stopping at the first one.
class GraphMatcher {
 public:
  GraphMatcher(const std::vector<uint8_t>& reference_adjacency, const std::vector<int64_t>& species)
      : species_(species),
        reference_(reference_adjacency.data(), static_cast<int64_t>(species.size())),
        colours_(reference_, species) {
    order_atoms();
  }

  enum class Outcome { found, none, limit };

  /// Searches visiting at most `max_visits` partial mappings; when found, mapping() holds the
  /// frame atom of each reference atom.
  Outcome match(const BitGraph& frame, int64_t max_visits) {
    const std::optional<std::vector<int32_t>> colours = colours_.frame_colours(frame, species_);
    if (!colours) return Outcome::none;
    frame_ = &frame;
    frame_colours_ = &*colours;
    mapping_.assign(reference_.size(), -1);
    used_.assign(frame.words(), 0);
    visits_ = 0;
    max_visits_ = max_visits;
    if (extend(0)) return Outcome::found;
    return visits_ > max_visits_ ? Outcome::limit : Outcome::none;
  }

  const std::vector<int64_t>& mapping() const { return mapping_; }

 private:
  /// One reference atom in search order, with what its candidates are checked against.
  struct Step {
    int64_t atom;
    std::vector<int64_t> earlier;  // all earlier-ordered neighbours
    bool leaf;                     // degree 1, bonded to an atom of higher degree
  };

  /// Most constrained first: each next atom is the one with the most already-ordered neighbours
  /// (then the rarest colour, a heavy atom, the highest degree), so a component grows from its
  /// rarest heavy atom outwards. Leaves (hydrogens) come last: they cannot make a mapping of the
  /// other atoms fail (with stable colours an atom's image carries leaves of the same colours as
  /// the atom), and placed early their interchangeable orders would multiply backtracking.
  void order_atoms() {
    const int64_t n = reference_.size();
    const std::vector<int32_t>& colour = colours_.reference_colours();
    std::vector<std::vector<int64_t>> neighbours(n);
    for (int64_t i = 0; i < n; ++i) neighbours[i] = reference_.neighbours(i);
    std::vector<bool> leaf(n), ordered(n, false);
    for (int64_t i = 0; i < n; ++i) {
      leaf[i] = neighbours[i].size() == 1 && neighbours[neighbours[i][0]].size() > 1;
    }
    const int64_t non_leaves = n - std::count(leaf.begin(), leaf.end(), true);
    std::vector<int64_t> ordered_neighbours(n, 0);
    const auto priority = [&](int64_t i) {
      return std::tuple(ordered_neighbours[i], -colours_.class_size(colour[i]), species_[i] > 1,
                        neighbours[i].size(), -i);
    };
    while (static_cast<int64_t>(steps_.size()) < n) {
      const bool leaves_now = static_cast<int64_t>(steps_.size()) >= non_leaves;
      int64_t atom = -1;
      for (int64_t i = 0; i < n; ++i) {
        if (ordered[i] || leaf[i] != leaves_now) continue;
        if (atom < 0 || priority(i) > priority(atom)) atom = i;
      }
      Step step{.atom = atom, .earlier = {}, .leaf = leaf[atom]};
      for (const int64_t j : neighbours[atom]) {
        if (ordered[j]) step.earlier.push_back(j);
      }
      ordered[atom] = true;
      for (const int64_t j : neighbours[atom]) ++ordered_neighbours[j];
      steps_.push_back(std::move(step));
    }
  }

  bool is_used(int64_t v) const { return (used_[v / 64] >> (v % 64)) & 1; }
  void toggle_used(int64_t v) { used_[v / 64] ^= uint64_t{1} << (v % 64); }

  /// Whether frame atom v can be the image of the step's atom given the mapping so far: unmapped,
  /// of the same colour, bonded to the images of its earlier neighbours and to no other mapped
  /// atom.
  bool consistent(const Step& step, int64_t v) const {
    if (is_used(v) || (*frame_colours_)[v] != colours_.reference_colours()[step.atom]) return false;
    for (const int64_t w : step.earlier) {
      if (!frame_->adjacent(v, mapping_[w])) return false;
    }
    int64_t mapped_neighbours = 0;
    for (int64_t word = 0; word < frame_->words(); ++word) {
      mapped_neighbours += std::popcount(frame_->row(v)[word] & used_[word]);
    }
    return mapped_neighbours == static_cast<int64_t>(step.earlier.size());
  }

  /// Maps steps k, k+1, ... depth first; true once every atom is mapped.
  bool extend(size_t k) {
    if (k == steps_.size()) return true;
    const Step& step = steps_[k];
    for (int64_t v = 0; v < frame_->size(); ++v) {
      if (!consistent(step, v)) continue;
      if (++visits_ > max_visits_) return false;
      mapping_[step.atom] = v;
      toggle_used(v);
      if (extend(k + 1)) return true;
      toggle_used(v);
      mapping_[step.atom] = -1;
      // The other candidates of a leaf are leaves of the same colour on the same atom: exchanging
      // them is a symmetry of the frame, so they would fail too.
      if (visits_ > max_visits_ || step.leaf) return false;
    }
    return false;
  }

  std::vector<int64_t> species_;
  BitGraph reference_;
  ColourRefinement colours_;
  std::vector<Step> steps_;
  // The frame being matched (set by match).
  const BitGraph* frame_ = nullptr;
  const std::vector<int32_t>* frame_colours_ = nullptr;
  std::vector<int64_t> mapping_;
  std::vector<uint64_t> used_;  // frame atoms already mapped, one bit each
  int64_t visits_ = 0, max_visits_ = 0;
};

}  // namespace

torch::Tensor wrong_bond_counts(const torch::Tensor& positions, const std::vector<int64_t>& species,
                                const torch::Tensor& bonds, double scale) {
  const int64_t num_atoms = static_cast<int64_t>(species.size());
  std::vector<uint8_t> reference =
      adjacency_matrix(neighbour_lists(bonds, num_atoms, "wrong_bond_counts"));
  const auto [elements, element_index] =
      torch::_unique(torch::tensor(species, torch::kInt64), true, true);
  const torch::Tensor one_hot =
      torch::one_hot(element_index, elements.size(0)).to(positions.device(), torch::kFloat64);
  // Bonds between element classes e and f: (one_hot^T A one_hot)_ef, each bond counted once in
  // e-f and once in f-e (twice in e-e), so half the summed absolute differences counts each
  // surplus or missing bond once.
  const auto pair_counts = [&](const torch::Tensor& adjacency) {
    return torch::matmul(torch::matmul(one_hot.t(), adjacency.to(torch::kFloat64)), one_hot);
  };
  const torch::Tensor reference_counts =
      pair_counts(torch::from_blob(reference.data(), {num_atoms, num_atoms}, torch::kUInt8)
                      .to(positions.device()));
  std::vector<torch::Tensor> chunks;
  for (const torch::Tensor& frames : positions.split(frames_per_chunk(num_atoms))) {
    const torch::Tensor counts = pair_counts(covalent_adjacency(frames, species, scale));
    chunks.push_back(((counts - reference_counts).abs().sum({1, 2}) / 2).round().to(torch::kInt64));
  }
  return torch::cat(chunks);
}

torch::Tensor bond_lengths(const torch::Tensor& positions, const torch::Tensor& bonds) {
  const torch::Tensor pairs = bonds.to(torch::kInt64).to(positions.device());
  return torch::linalg_vector_norm(
      positions.index_select(1, pairs.select(1, 0)) - positions.index_select(1, pairs.select(1, 1)),
      2, {-1}, false, torch::kFloat64);
}

Relabelling relabel_onto_reference(const torch::Tensor& positions,
                                   const std::vector<int64_t>& species, const torch::Tensor& bonds,
                                   double scale, int64_t max_visits) {
  check(max_visits >= 1,
        fmt::format("relabel_onto_reference: max_visits must be >= 1, got {}", max_visits));
  const int64_t num_atoms = static_cast<int64_t>(species.size());
  // Checks positions and species.
  const torch::Tensor adjacency =
      covalent_adjacency(positions, species, scale).cpu().to(torch::kUInt8).contiguous();
  const int64_t frames = positions.size(0);
  const std::vector<uint8_t> reference =
      adjacency_matrix(neighbour_lists(bonds, num_atoms, "relabel_onto_reference"));
  GraphMatcher matcher(reference, species);
  Relabelling result;
  std::vector<int64_t> order(frames * num_atoms);  // frame b's atom for reference atom i
  std::vector<uint8_t> intact(frames, 0);
  for (int64_t b = 0; b < frames; ++b) {
    const uint8_t* frame = adjacency.data_ptr<uint8_t>() + b * num_atoms * num_atoms;
    int64_t* frame_order = order.data() + b * num_atoms;
    std::iota(frame_order, frame_order + num_atoms, int64_t{0});
    // Already in the reference labelling (MD frames, ordered samples): keep it.
    if (std::equal(reference.begin(), reference.end(), frame)) {
      intact[b] = 1;
      continue;
    }
    switch (matcher.match(BitGraph(frame, num_atoms), max_visits)) {
      case GraphMatcher::Outcome::found:
        intact[b] = 1;
        std::copy(matcher.mapping().begin(), matcher.mapping().end(), frame_order);
        break;
      case GraphMatcher::Outcome::limit:
        ++result.search_limited;
        break;
      case GraphMatcher::Outcome::none:
        break;
    }
  }
  const torch::Tensor index = torch::tensor(order, torch::kInt64).view({frames, num_atoms, 1});
  result.positions =
      positions.gather(1, index.to(positions.device()).expand({frames, num_atoms, 3}));
  result.intact = torch::tensor(intact, torch::kUInt8).to(torch::kBool);
  return result;
}

torch::Tensor rotatable_torsions(const torch::Tensor& bonds, const std::vector<int64_t>& species) {
  const std::vector<std::vector<int64_t>> neighbours =
      neighbour_lists(bonds, static_cast<int64_t>(species.size()), "rotatable_torsions");
  const torch::Tensor pairs = bonds.to(torch::kInt64).cpu().contiguous();
  // The heaviest neighbour of `atom` other than `excluded`; lowest index on ties.
  const auto heaviest = [&](int64_t atom, int64_t excluded) {
    int64_t best = -1;
    for (const int64_t other : neighbours[atom]) {
      if (other == excluded) continue;
      if (best < 0 || species[other] > species[best] ||
          (species[other] == species[best] && other < best)) {
        best = other;
      }
    }
    return best;
  };
  std::vector<int64_t> quadruples;
  for (int64_t k = 0; k < pairs.size(0); ++k) {
    const int64_t b = pairs[k][0].item<int64_t>(), c = pairs[k][1].item<int64_t>();
    if (neighbours[b].size() < 2 || neighbours[c].size() < 2 || in_ring(neighbours, b, c)) continue;
    quadruples.insert(quadruples.end(), {heaviest(b, c), b, c, heaviest(c, b)});
  }
  return torch::tensor(quadruples, torch::kInt64).reshape({-1, 4});
}

torch::Tensor label_free_dihedral_angles(const torch::Tensor& positions,
                                         const torch::Tensor& torsions, const torch::Tensor& bonds,
                                         const std::vector<int64_t>& species) {
  const int64_t num_atoms = static_cast<int64_t>(species.size());
  const std::vector<std::vector<int64_t>> neighbours =
      neighbour_lists(bonds, num_atoms, "label_free_dihedral_angles");
  const std::vector<uint8_t> adjacency = adjacency_matrix(neighbours);
  const std::vector<int32_t> colours =
      ColourRefinement(BitGraph(adjacency.data(), num_atoms), species).reference_colours();
  // End atoms interchangeable with `end` (its colour class among `centre`'s other neighbours).
  const auto equivalents = [&](int64_t end, int64_t centre, int64_t excluded) {
    std::vector<int64_t> out;
    for (const int64_t other : neighbours[centre]) {
      if (other != excluded && colours[other] == colours[end]) out.push_back(other);
    }
    return out;
  };
  const torch::Tensor rows = torsions.to(torch::kInt64).cpu().contiguous();
  std::vector<torch::Tensor> angles;
  for (int64_t t = 0; t < rows.size(0); ++t) {
    const int64_t* q = rows[t].data_ptr<int64_t>();
    std::vector<int64_t> choices;
    for (const int64_t a : equivalents(q[0], q[1], q[2])) {
      for (const int64_t d : equivalents(q[3], q[2], q[1])) {
        choices.insert(choices.end(), {a, q[1], q[2], d});
      }
    }
    const torch::Tensor all =
        dihedral_angles(positions, torch::tensor(choices, torch::kInt64).reshape({-1, 4}));
    if (all.size(1) == 1) {
      angles.push_back(all.squeeze(1));
      continue;
    }
    // The smallest angle in [0, 360) over the choices, back in [-180, 180).
    const torch::Tensor smallest = torch::remainder(all, 360.0).amin(1);
    angles.push_back(torch::where(smallest >= 180.0, smallest - 360.0, smallest));
  }
  if (angles.empty()) return torch::empty({positions.size(0), 0}, positions.options());
  return torch::stack(angles, 1);
}

torch::Tensor jensen_shannon_divergence(const torch::Tensor& p, const torch::Tensor& q) {
  check(p.sizes() == q.sizes() && p.dim() >= 1,
        "jensen_shannon_divergence: histograms must have the same shape [..., bins]");
  const torch::Tensor p_sum = p.sum(-1, true), q_sum = q.sum(-1, true);
  check((p_sum > 0).all().item<bool>() && (q_sum > 0).all().item<bool>(),
        "jensen_shannon_divergence: every histogram needs a positive total");
  const torch::Tensor pn = p.to(torch::kFloat64) / p_sum, qn = q.to(torch::kFloat64) / q_sum;
  const torch::Tensor m = 0.5 * (pn + qn);
  // xlogy(0, .) = 0: empty bins contribute nothing, as in the definition.
  const auto kl_to_m = [&](const torch::Tensor& x) {
    return (torch::xlogy(x, x) - torch::xlogy(x, m)).sum(-1);
  };
  return (0.5 * (kl_to_m(pn) + kl_to_m(qn))).clamp_min(0.0);
}

double distance_density_mae(const torch::Tensor& generated, const torch::Tensor& reference,
                            int64_t bins) {
  check(bins >= 1, fmt::format("distance_density_mae: bins must be >= 1, got {}", bins));
  const torch::Tensor reference_distances = pairwise_distances(reference).flatten();
  const torch::Tensor generated_distances = pairwise_distances(generated).flatten();
  const double r_max = 1.1 * reference_distances.max().item<double>();
  check(r_max > 0, "distance_density_mae: the reference has no positive distance");
  const double width = r_max / static_cast<double>(bins);
  const auto density = [&](const torch::Tensor& distances) {
    const torch::Tensor inside = distances.masked_select(distances < r_max);
    const torch::Tensor bin = (inside / width).floor().to(torch::kInt64).clamp(0, bins - 1);
    return torch::bincount(bin.cpu(), {}, bins).to(torch::kFloat64) /
           (static_cast<double>(distances.numel()) * width);
  };
  return (density(generated_distances) - density(reference_distances)).abs().mean().item<double>();
}

std::string atom_label(const std::vector<int64_t>& atoms, const std::vector<int64_t>& species) {
  std::string label;
  for (const int64_t atom : atoms) {
    if (!label.empty()) label += "-";
    label += fmt::format("{}{}", element_symbol(species.at(atom)), atom);
  }
  return label;
}

nlohmann::json MolecularMetrics::to_json(const std::vector<int64_t>& species) const {
  const auto optional_json = [](const std::optional<double>& value) {
    return value ? nlohmann::json(*value) : nlohmann::json();
  };
  const auto per_row = [&](const torch::Tensor& atoms, const std::vector<double>& values) {
    nlohmann::json out = nlohmann::json::object();
    const torch::Tensor rows = atoms.cpu().contiguous();
    for (int64_t k = 0; k < rows.size(0); ++k) {
      const int64_t* row = rows[k].data_ptr<int64_t>();
      out[atom_label({row, row + rows.size(1)}, species)] = values[k];
    }
    return out;
  };
  nlohmann::json out = {
      {"bonds", bonds.size(0)},
      {"bond_length_js_mean", optional_json(bond_length_js_mean)},
      {"bond_length_js_max", optional_json(bond_length_js_max)},
      {"bond_length_js", per_row(bonds, bond_length_js)},
      {"torsions", torsions.size(0)},
      {"torsion_js_mean", optional_json(torsion_js_mean)},
      {"torsion_js_max", optional_json(torsion_js_max)},
      {"torsion_js", per_row(torsions, torsion_js)},
      {"distance_density_mae", distance_density_mae},
      {"intact_fraction", intact_fraction},
      {"wrong_bonds_mean", wrong_bonds_mean},
      {"bond_width_ratio", bond_width_ratio},
      {"search_limited", search_limited},
  };
  if (potential_energy) {
    out["potential_energy"] = {{"potential", potential_energy->potential},
                               {"w1", potential_energy->w1},
                               {"generated", potential_energy->generated},
                               {"reference", potential_energy->reference},
                               {"failed_generated", potential_energy->failed_generated}};
  }
  return out;
}

MolecularMetrics compute_molecular_metrics(const torch::Tensor& generated,
                                           const torch::Tensor& reference,
                                           const std::vector<int64_t>& species,
                                           const MolecularMetricsOptions& options) {
  const int64_t num_atoms = static_cast<int64_t>(species.size());
  check_molecule_frames(generated, num_atoms, "molecular metrics (generated)");
  check_molecule_frames(reference, num_atoms, "molecular metrics (reference)");
  check(options.bond_bins >= 1 && options.torsion_bins >= 1,
        "molecular metrics: bond_bins and torsion_bins must be >= 1");
  const torch::Tensor x = generated.to(torch::kFloat64), y = reference.to(torch::kFloat64);
  MolecularMetrics metrics;
  metrics.bonds = majority_bonds(y, species, options.bond_scale);
  check(metrics.bonds.size(0) > 0,
        "molecular metrics: the reference frames have no covalent bond (not a molecule?)");

  // Generated frames have their identical atoms in any order (the model is permutation
  // equivariant): bonds and torsions are measured on the intact ones, relabelled onto the
  // reference labels (a frame whose bond graph differs has no such labelling). The reference frames
  // are measured as they are: MD never exchanges atoms, so their labels are right even in a frame
  // whose bond graph momentarily differs, where a relabelling could only make them wrong (and
  // elsewhere it would be the identity).
  const Relabelling relabelled = relabel_onto_reference(
      x, species, metrics.bonds, options.bond_scale, options.relabel_max_visits);
  metrics.relabelled = relabelled.positions.index({relabelled.intact.to(x.device())});
  metrics.intact_fraction = relabelled.intact.to(torch::kFloat64).mean().item<double>();
  metrics.search_limited = relabelled.search_limited;
  metrics.wrong_bonds_mean = wrong_bond_counts(x, species, metrics.bonds, options.bond_scale)
                                 .to(torch::kFloat64)
                                 .mean()
                                 .item<double>();
  metrics.torsions = rotatable_torsions(metrics.bonds, species);
  const bool measured = metrics.relabelled.size(0) > 0;
  const auto not_measured = [](int64_t count) {
    return std::vector<double>(count, std::numeric_limits<double>::quiet_NaN());
  };

  if (measured) {
    const torch::Tensor generated_lengths = bond_lengths(metrics.relabelled, metrics.bonds);
    const torch::Tensor reference_lengths = bond_lengths(y, metrics.bonds);
    const auto [generated_bonds, reference_bonds] =
        bond_length_histograms(generated_lengths, reference_lengths, options.bond_bins);
    const torch::Tensor bond_js = jensen_shannon_divergence(generated_bonds, reference_bonds);
    metrics.bond_length_js = to_vector(bond_js);
    std::tie(metrics.bond_length_js_mean, metrics.bond_length_js_max) = mean_and_max(bond_js);
    if (metrics.relabelled.size(0) >= 2) {
      metrics.bond_width_ratio =
          bond_width_ratios(generated_lengths, reference_lengths, metrics.bonds, species);
    }
  } else {
    metrics.bond_length_js = not_measured(metrics.bonds.size(0));
  }

  if (metrics.torsions.size(0) > 0 && measured) {
    const torch::Tensor torsion_js = jensen_shannon_divergence(
        torsion_histograms(label_free_dihedral_angles(metrics.relabelled, metrics.torsions,
                                                      metrics.bonds, species),
                           options.torsion_bins),
        torsion_histograms(label_free_dihedral_angles(y, metrics.torsions, metrics.bonds, species),
                           options.torsion_bins));
    metrics.torsion_js = to_vector(torsion_js);
    std::tie(metrics.torsion_js_mean, metrics.torsion_js_max) = mean_and_max(torsion_js);
  } else {
    metrics.torsion_js = not_measured(metrics.torsions.size(0));
  }

  // h(r) is invariant to atom order.
  metrics.distance_density_mae = distance_density_mae(x, y, options.distance_density_bins);
  return metrics;
}

std::optional<TorsionAutocorrelation> slowest_torsion(const torch::Tensor& trajectories,
                                                      const std::vector<int64_t>& species) {
  check(trajectories.dim() == 4 && trajectories.size(1) >= 2 && trajectories.size(3) == 3 &&
            trajectories.size(2) == static_cast<int64_t>(species.size()),
        fmt::format("slowest_torsion: trajectories must be [chains, T >= 2, {}, 3], got [{}]",
                    species.size(), fmt::join(trajectories.sizes(), ", ")));
  const int64_t chains = trajectories.size(0), length = trajectories.size(1);
  const torch::Tensor frames =
      trajectories.to(torch::kFloat64).reshape({chains * length, trajectories.size(2), 3});
  const torch::Tensor torsions = rotatable_torsions(majority_bonds(frames, species), species);
  const torch::Tensor radians =
      torch::deg2rad(dihedral_angles(frames, torsions)).view({chains, length, -1});
  std::optional<TorsionAutocorrelation> slowest;
  for (int64_t t = 0; t < torsions.size(0); ++t) {
    const torch::Tensor angle = radians.select(2, t);
    for (const torch::Tensor& series : {angle.cos(), angle.sin()}) {
      const AutocorrelationTime tau = integrated_autocorrelation_time(series);
      if (!std::isfinite(tau.tau) || (slowest && tau.tau <= slowest->tau.tau)) continue;
      const torch::Tensor atoms = torsions[t].contiguous();
      slowest = {std::vector<int64_t>(atoms.data_ptr<int64_t>(), atoms.data_ptr<int64_t>() + 4),
                 tau};
    }
  }
  return slowest;
}

PotentialEnergies potential_energies(const System& system, const torch::Tensor& positions,
                                     int64_t max_frames) {
  check(max_frames >= 1,
        fmt::format("potential_energies: max_frames must be >= 1, got {}", max_frames));
  const int64_t frames = positions.size(0);
  const int64_t n = std::min(max_frames, frames);
  // Evenly spaced indices 0 .. frames-1 (the whole set when n == frames).
  const torch::Tensor indices =
      torch::linspace(0, static_cast<double>(frames - 1), n, torch::kFloat64)
          .round()
          .to(torch::kInt64);
  const torch::Tensor selected = positions.index_select(0, indices.to(positions.device()));
  PotentialEnergies result;
  result.evaluated = n;
  try {
    result.energies = system.evaluate(selected, {.forces = false}).energy;
    return result;
  } catch (const Error&) {
    // Some frame failed (a clash, an SCF that did not converge): keep the others.
  }
  std::vector<torch::Tensor> energies;
  for (int64_t k = 0; k < n; ++k) {
    try {
      energies.push_back(system.evaluate(selected.slice(0, k, k + 1), {.forces = false}).energy);
    } catch (const Error& error) {
      if (result.failed++ == 0) result.first_error = error.what();
    }
  }
  result.energies = energies.empty() ? torch::empty({0}, torch::kFloat64) : torch::cat(energies);
  return result;
}

PotentialEnergyW1 potential_energy_w1(const std::string& potential,
                                      const PotentialEnergies& generated,
                                      const PotentialEnergies& reference) {
  check(reference.energies.numel() > 0,
        fmt::format("{}: none of the {} reference frames evaluated (first: {})", potential,
                    reference.evaluated, reference.first_error));
  PotentialEnergyW1 result{.potential = potential,
                           .w1 = std::numeric_limits<double>::quiet_NaN(),
                           .generated = generated.evaluated,
                           .failed_generated = generated.failed,
                           .reference = reference.energies.numel()};
  if (generated.energies.numel() > 0) {
    result.w1 = wasserstein_1d(generated.energies, reference.energies, 1.0);
  }
  return result;
}

}  // namespace psm
