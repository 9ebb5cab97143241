#pragma once
// Metrics for molecules (spec/METHOD.md, "Metrics"): covalent bond graphs, per-bond length and
// per-torsion distributions compared by the Jensen-Shannon divergence, the interatomic-distance
// density h(r), the fraction of samples whose bond graph is intact (up to a permutation of
// identical atoms), and the energy distribution under a reference potential (GFN2-xTB). Batched
// over frames; float64, Å, degrees, kcal/mol.
// The score network is equivariant to permutations of same-element atoms, so generated frames
// come with their identical atoms in arbitrary order; the index-based bond and torsion metrics are
// measured after relabelling each frame onto the reference's atom labels (relabel_onto_reference).
// Histogram divergences have a positive floor from sampling noise alone (a few hundred frames in
// 50 bins already give JS of order 0.1): compare them with an independent reference set's.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "psm/data/bond_graph.h"
#include "psm/simulate/autocorrelation.h"
#include "psm/systems/potential.h"

namespace psm {

/// @param positions [B, N, 3], @param bonds [K, 2] int64; @return [B, K] bond lengths, Å
torch::Tensor bond_lengths(const torch::Tensor& positions, const torch::Tensor& bonds);

/// Bonds each frame has too many or too few against a reference bond graph, counted by element
/// pair: the sum over element pairs (C-H, C-O, ...) of |the frame's covalent bonds of that pair -
/// the reference graph's|. A broken bond counts 1; a hydrogen moved from a carbon to an oxygen
/// counts 2 (a C-H missing, an O-H extra). It needs no atom labels, so it measures frames whose
/// graph differs, which the relabelled metrics cannot: 0 for an intact frame, and in general a
/// lower bound on the bonds to break and make to reach the reference graph.
/// @param positions [B, N, 3] Å; @param species [N]; @param bonds [K, 2] int64
/// @return [B] int64
torch::Tensor wrong_bond_counts(const torch::Tensor& positions, const std::vector<int64_t>& species,
                                const torch::Tensor& bonds, double scale = 1.2);

/// Generated frames relabelled onto a reference bond graph; see relabel_onto_reference.
struct Relabelling {
  torch::Tensor positions;  ///< [B, N, 3]: atom i of a frame plays the role of reference atom i
  torch::Tensor intact;     ///< [B] bool: the frame's bond graph is isomorphic to the reference's
  int64_t search_limited = 0;  ///< frames whose search hit the visit limit (counted not intact)
};

/// Relabels each frame onto the reference atom labels. A generative model that is equivariant to
/// permutations of identical atoms (the score network) produces chemically right frames whose
/// hydrogens (and symmetric heavy atoms) are in any order, so index-based metrics (a bond's
/// length, a torsion) would compare different atoms. For each frame this searches for an
/// element-preserving isomorphism from the reference bond graph `bonds` onto the frame's covalent
/// graph (covalent_adjacency with `scale`); when one exists the frame's atoms are permuted so that
/// atom i is the image of reference atom i (the identity when the frame's graph already equals
/// the reference's), and the frame is intact. The first isomorphism found is used: which of
/// several equivalent hydrogens becomes which label is arbitrary. Frames without one, or whose
/// search visits more than `max_visits` partial mappings, keep their labels and are not intact.
/// @param positions [B, N, 3] Å; @param species [N]; @param bonds [K, 2] int64, e.g.
/// majority_bonds of reference frames; @param max_visits >= 1, per frame
Relabelling relabel_onto_reference(const torch::Tensor& positions,
                                   const std::vector<int64_t>& species, const torch::Tensor& bonds,
                                   double scale = 1.2, int64_t max_visits = 100000);

/// One dihedral (a, b, c, d) per rotatable bond b-c of a bond graph: b and c both have another
/// neighbour (neither is terminal) and the bond lies in no ring. a and d are the neighbours of b
/// and c (other than c and b) with the highest atomic number, the lowest index on ties.
/// @param bonds [K, 2] int64; @param species [N]; @return [T, 4] int64, T <= K
torch::Tensor rotatable_torsions(const torch::Tensor& bonds, const std::vector<int64_t>& species);

/// Torsion angles (degrees, within [-180, 180]) that do not depend on which of several equivalent
/// atoms carries which label. Where the end atom a of (a, b, c, d) has equivalent partners among
/// b's other neighbours (same colour-refinement class of the bond graph: the three hydrogens of a
/// methyl group), the angle is the smallest in [0, 360) over every choice of them, and likewise
/// for d; for a symmetric k-fold rotor that folds it onto [0, 360/k). Other torsions are plain
/// dihedral angles. Generated frames relabelled onto a reference get their equivalent hydrogens
/// in an arbitrary order, so only this form compares them with the reference.
/// @param positions [B, N, 3]; @param torsions [T, 4] int64; @param bonds [K, 2] int64 (the graph
/// the torsions come from); @param species [N]; @return [B, T]
torch::Tensor label_free_dihedral_angles(const torch::Tensor& positions,
                                         const torch::Tensor& torsions, const torch::Tensor& bonds,
                                         const std::vector<int64_t>& species);

/// The slowest rotatable torsion of a set of trajectories: for a flexible molecule it, more than
/// the energy, sets how many MD steps make an independent sample.
struct TorsionAutocorrelation {
  std::vector<int64_t> atoms;  ///< (a, b, c, d) of the torsion
  AutocorrelationTime tau;     ///< of cos φ or sin φ, the longer one, in frames of the series
};

/// The rotatable torsion (of the trajectories' majority bond graph) whose cos φ or sin φ has the
/// longest integrated autocorrelation time. Series of constant value are skipped.
/// @param trajectories [C, T, N, 3] float64, Å: C independent chains of T >= 2 frames
/// @param species [N]; @return nullopt when the molecule has no rotatable bond
std::optional<TorsionAutocorrelation> slowest_torsion(const torch::Tensor& trajectories,
                                                      const std::vector<int64_t>& species);

/// Jensen-Shannon divergence between histograms, in nats (natural log: 0 for equal
/// distributions, ln 2 for disjoint ones). Each row is normalised to a distribution first.
/// @param p, q [..., bins] non-negative counts, every row with a positive sum
/// @return [...] float64
torch::Tensor jensen_shannon_divergence(const torch::Tensor& p, const torch::Tensor& q);

/// Mean absolute difference between the densities h(r) (per Å) of all interatomic distances of
/// two sets, histogrammed in `bins` equal bins on [0, 1.1 x the reference's largest distance].
/// Generated distances beyond that range count in the normalisation but in no bin, so mass that
/// escapes shows as missing density.
/// @param generated [B, N, 3], @param reference [M, N, 3] float64, Å; @return 1/Å
double distance_density_mae(const torch::Tensor& generated, const torch::Tensor& reference,
                            int64_t bins = 200);

struct MolecularMetricsOptions {
  double bond_scale = 1.2;  ///< bonded: r < bond_scale (r_cov,i + r_cov,j)
  /// Bond-length histograms: the reference's range of each bond widened by a quarter of its width
  /// each side (at least 0.01 Å), in this many bins, plus one bin below and one above that
  /// collect generated lengths outside (stretched or broken bonds).
  int64_t bond_bins = 50;
  int64_t torsion_bins = 36;            ///< periodic torsion histograms on [-180, 180) degrees
  int64_t distance_density_bins = 200;  ///< h(r), see distance_density_mae
  int64_t relabel_max_visits = 100000;  ///< per generated frame, see relabel_onto_reference
};

/// Energies under a reference potential of generated and reference frames, compared by W1.
struct PotentialEnergyW1 {
  std::string potential;         ///< the system that computed them, e.g. "xtb" (GFN2-xTB)
  double w1 = 0;                 ///< energy unit of the potential (kcal/mol); NaN if none evaluated
  int64_t generated = 0;         ///< generated frames tried
  int64_t failed_generated = 0;  ///< of those, frames the potential could not evaluate (clashing
                                 ///< atoms, SCF failure): left out of W1
  int64_t reference = 0;         ///< reference frames in W1
};

/// The molecular metrics of one generated set against a reference. Bond and torsion metrics are
/// of the intact generated frames relabelled onto the reference labels (relabel_onto_reference):
/// the atoms of a frame whose bond graph differs cannot be labelled, and measuring them under
/// the model's arbitrary order of identical atoms would be noise. The intact fraction says how
/// many frames they describe.
struct MolecularMetrics {
  torch::Tensor bonds;       ///< [K, 2] int64, the reference bond graph
  torch::Tensor relabelled;  ///< [I, N, 3] float64, the intact generated frames, relabelled
  std::vector<double> bond_length_js;  ///< [K] nats; NaN when no frame is intact
  /// Per bond type ("C-H"): the intact frames' bond-length standard deviation over the
  /// reference's, mean over the type's bonds. Below 1: bonds too narrow (too cold or too stiff),
  /// above: too wide. Empty with fewer than two intact frames.
  std::map<std::string, double> bond_width_ratio;
  std::optional<double> bond_length_js_mean{};  ///< absent when no frame is intact
  std::optional<double> bond_length_js_max{};
  torch::Tensor torsions;          ///< [T, 4] int64, one per rotatable bond
  std::vector<double> torsion_js;  ///< [T] nats; NaN when no frame is intact
  /// Absent when the molecule has no rotatable bond or no frame is intact
  std::optional<double> torsion_js_mean{};
  std::optional<double> torsion_js_max{};
  double distance_density_mae = 0;  ///< h(r), 1/Å
  /// Generated frames whose bond graph is the reference's up to a permutation of identical atoms
  double intact_fraction = 0;
  int64_t search_limited = 0;   ///< generated frames not intact because the search gave up
  double wrong_bonds_mean = 0;  ///< wrong_bond_counts per generated frame, mean over frames
  std::optional<PotentialEnergyW1> potential_energy{};

  /// Summary numbers, and the per-bond and per-torsion JS keyed by atom labels ("C0-C1").
  nlohmann::json to_json(const std::vector<int64_t>& species) const;
};

/// "C0-C1-O2" for atom indices `atoms` (element symbol and 0-based index).
std::string atom_label(const std::vector<int64_t>& atoms, const std::vector<int64_t>& species);

/// Molecular metrics of `generated` against `reference` (no potential energies; see
/// potential_energy_w1). The reference bond graph is majority_bonds of the reference frames; the
/// generated frames are relabelled onto it (relabel_onto_reference); the bond lengths and
/// torsions of those that could be (the intact fraction) are measured. Throws
/// psm::Error on mismatched atom counts, non-3-D or NaN positions, or species outside 1..86.
/// @param generated [B, N, 3], @param reference [M, N, 3] float64, Å; @param species [N]
MolecularMetrics compute_molecular_metrics(const torch::Tensor& generated,
                                           const torch::Tensor& reference,
                                           const std::vector<int64_t>& species,
                                           const MolecularMetricsOptions& options = {});

/// Energies under `system` of up to `max_frames` frames, evenly spaced through the set (MD
/// trajectories are correlated, so not the first ones). The batch is evaluated at once; if the
/// system throws psm::Error, the frames are evaluated one by one and those that fail are left out.
struct PotentialEnergies {
  torch::Tensor energies;     ///< [M] float64 of the frames that evaluated
  int64_t evaluated = 0;      ///< frames tried
  int64_t failed = 0;         ///< frames that threw
  std::string first_error{};  ///< the message of the first frame that threw
};
PotentialEnergies potential_energies(const System& system, const torch::Tensor& positions,
                                     int64_t max_frames);

/// W1 between the energies of generated and reference frames under the same potential.
/// Throws psm::Error, with the first frame's error, when no reference frame evaluates.
PotentialEnergyW1 potential_energy_w1(const std::string& potential,
                                      const PotentialEnergies& generated,
                                      const PotentialEnergies& reference);

}  // namespace psm
