#pragma once
// Sample-quality metrics with the fixed definitions of spec/METHOD.md ("Metrics"), so that the
// numbers compare with published ones. Pure functions of float64 tensors; device follows inputs
// except where noted (the assignment solvers run on the CPU).

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <vector>

#include "psm/data/force_check.h"

namespace psm {

/// 1-D Wasserstein-p distance between the empirical distributions of two samples (uniform
/// weights), by the exact quantile coupling: the two quantile functions are compared on the
/// merged set of CDF breakpoints {1/n, ..., 1} ∪ {1/m, ..., 1}, as POT's wasserstein_1d and
/// scipy.stats.wasserstein_distance do. For n == m this is (mean |sort(a) - sort(b)|^p)^(1/p).
/// @param a [n] float64, @param b [m] float64 (any shape; flattened), no NaN
/// @param p >= 1
/// @return W_p in the unit of the values. W_2 squared (POT's emd2_1d) is the square of p = 2.
double wasserstein_1d(const torch::Tensor& a, const torch::Tensor& b, double p = 2.0);

/// The same with the values of `a` weighted by a_weights (same number of elements, finite,
/// non-negative, not all zero; normalised here): the quantile function of a steps at the
/// cumulative weights. Equal weights give the unweighted distance.
double wasserstein_1d(const torch::Tensor& a, const torch::Tensor& a_weights,
                      const torch::Tensor& b, double p = 2.0);

/// Distances between all particle pairs i < j, in row-major upper-triangle order
/// ((0,1), (0,2), ..., (1,2), ...).
/// @param positions [B, N, D] float64, length unit
/// @return [B, N(N-1)/2] float64, same unit and device
torch::Tensor pairwise_distances(const torch::Tensor& positions);

/// Total variation distance between two samples' histograms on the reference's [min, max]
/// range split into `bins` equal bins (values equal to max fall in the last bin):
///   TVD = 0.5 * (sum_i |p_i - q_i| + q_outside),
/// p_i, q_i the reference and generated fractions in bin i, q_outside the fraction of generated
/// values outside the reference's range (mass the reference does not have, counted in full).
/// Identical samples give 0; disjoint ranges give 1.
/// @param generated [n] float64, @param reference [m] float64 (flattened); reference max > min
double histogram_tvd(const torch::Tensor& generated, const torch::Tensor& reference,
                     int64_t bins = 200);
/// The same with the generated values weighted (generated_weights: one per value, as in
/// wasserstein_1d): fractions are sums of normalised weights.
double histogram_tvd(const torch::Tensor& generated, const torch::Tensor& generated_weights,
                     const torch::Tensor& reference, int64_t bins = 200);

/// Fraction of generated energies above the reference's maximum energy (clashes and other
/// broken samples, reported apart from W2 so that one of them does not hide in it).
/// @param generated_energy [n] float64, @param reference_energy [m] float64
double outlier_fraction(const torch::Tensor& generated_energy,
                        const torch::Tensor& reference_energy);
/// The weight of the outliers among normalised weights of the generated frames.
double outlier_fraction(const torch::Tensor& generated_energy,
                        const torch::Tensor& generated_weights,
                        const torch::Tensor& reference_energy);

/// Optimal orthogonal superposition (Kabsch) of x onto y, batched.
/// Both are centred; R minimises sum_i |(x_i - x̄) R - (y_i - ȳ)|^2 over O(D) when
/// allow_reflection (E(D) symmetry: a mirror image is the same physical sample for identical
/// point particles and a reflection-symmetric potential), over SO(D) otherwise.
/// @param x, y [B, N, D] float64, same particle order
/// @return R [B, D, D] float64 acting on row vectors (aligned x = (x - x̄) @ R)
torch::Tensor kabsch_rotation(const torch::Tensor& x, const torch::Tensor& y,
                              bool allow_reflection = true);

/// Root-mean-square deviation per atom after Kabsch superposition (sqrt(1/N sum_i |Δ_i|^2)).
/// @param x, y [B, N, D] float64, same particle order; @return [B] float64, length unit
torch::Tensor aligned_rmsd(const torch::Tensor& x, const torch::Tensor& y,
                           bool allow_reflection = true);

/// Minimum-cost assignment (Hungarian algorithm, Jonker-Volgenant shortest augmenting paths
/// with potentials, O(n^2 m)).
/// @param cost [n, m] float64 with n <= m, finite
/// @return row_to_col [n]: row i is assigned column row_to_col[i], all distinct, minimising
///         sum_i cost[i, row_to_col[i]]
std::vector<int64_t> linear_sum_assignment(const torch::Tensor& cost);

struct EquivariantDistanceOptions {
  bool allow_reflection = true;  ///< E(D) rather than SE(D); see kabsch_rotation
  /// Up to this many particles every labelling is tried (N! superpositions): exact.
  int64_t exhaustive_max_atoms = 6;
  /// Larger systems: how many of the screened anchor orientations start a local search
  /// (more: closer to the optimum, proportionally slower).
  int64_t refined_starts = 32;
  int64_t max_iterations = 50;  ///< match/superpose alternations per start (stops when stable)
};

/// Distance between configurations of identical particles up to translation, rotation (and
/// reflection) and relabelling: min over orthogonal R and labellings P of the RMSD
/// sqrt(1/N sum_i |(x_i - x̄) R - (y_P(i) - ȳ)|^2).
/// N <= exhaustive_max_atoms: exact. Larger N: a non-convex search; each local search
/// alternates Kabsch superposition and Hungarian matching until the labelling repeats, started
/// from (a) the labelling that matches each particle's sorted distances to the others
/// (E(D)-invariant, exact for a rigidly moved, relabelled copy) and (b) the refined_starts
/// most promising "anchor" orientations, which map two reference particles of x onto every
/// ordered pair of y's particles (ranked by a label-free nearest-neighbour overlay score).
/// The result is an upper bound on the minimum. On LJ13 thermal pairs the default 32 starts
/// came out 0.4% above refining every anchor orientation on average (about 1 ms a pair on one
/// core), and equivariant_w2 of 100 vs 100 samples 0.02% above.
/// @param x [B, N, D], y [B, N, D] float64, D = 2 or 3 (pairs x[b] ~ y[b]);
/// @return [B] float64, length unit. Runs on the CPU, in parallel over B.
torch::Tensor equivariant_rmsd(const torch::Tensor& x, const torch::Tensor& y,
                               EquivariantDistanceOptions options = {});

/// W2 between two equally sized sets of configurations with the ground cost
/// equivariant_rmsd: sqrt(min over bijections σ of 1/n sum_k rmsd(x_k, y_σ(k))^2), the
/// assignment solved exactly. Cost O(n^2) pair alignments; meant for small systems and
/// n of a few hundred.
/// @param x, y [n, N, D] float64, length unit; @return W2 in the length unit
double equivariant_w2(const torch::Tensor& x, const torch::Tensor& y,
                      EquivariantDistanceOptions options = {});

/// A set of configurations with their energies.
struct Samples {
  torch::Tensor positions;  ///< [B, N, D] float64, length unit
  /// [B] float64, energy unit; undefined when no potential gives them (molecules generated
  /// without a potential for the reference data's level of theory). In generated samples NaN
  /// marks a frame the potential could not evaluate (GFN2-xTB on clashing atoms).
  torch::Tensor energies;
  /// [B, N, D] float64, energy/length; undefined when no potential gives them. Frames with a
  /// non-finite force (clashes) are left out of the virial temperature.
  torch::Tensor forces{};
  /// [B] float64 importance weights (any positive scale; zero for a frame to leave out), or
  /// undefined for equal weights. Generated samples only: with weights, compute_metrics measures
  /// the weighted distribution (energy W1 and W2, outlier fraction, distance TVD and W2) and
  /// leaves out equivariant W2 and the virial temperature, which have no weighted form here.
  torch::Tensor weights{};
};

struct MetricsOptions {
  int64_t distance_bins = 200;  ///< bins of the interatomic-distance TVD
  /// Samples per set (the first ones) for equivariant_w2; 0 skips it (O(n^2) alignments)
  int64_t equivariant_samples = 0;
};

/// Every metric of spec/METHOD.md for one generated set against a reference. The energy
/// metrics are absent when either set has no energies.
struct Metrics {
  int64_t n_generated = 0;
  int64_t n_reference = 0;
  std::optional<double> energy_w1{};
  std::optional<double> energy_w2{};
  std::optional<double> energy_w2_squared{};  ///< what POT's emd2_1d returns, as some papers
  double distance_tvd = 0;  ///< generated distances outside the reference range count in full
  double distance_w2 = 0;
  double distance_w2_squared = 0;
  /// Energy above the reference's maximum, or none (NaN): clashes and other broken samples
  std::optional<double> outlier_fraction{};
  /// Generated frames without an energy (NaN): left out of energy W1 and W2, counted as outliers
  int64_t energy_failures = 0;
  std::optional<double> equivariant_w2{};
  int64_t equivariant_samples = 0;  ///< samples per set behind equivariant_w2
  /// The temperature the generated frames' forces imply (data/force_check.h): the reference's
  /// kT for Boltzmann samples. Sensitive to the stiff, short-range structure that the energy
  /// distribution hardly sees. Set when the generated set has forces on at least two frames.
  std::optional<VirialTemperature> virial{};

  nlohmann::json to_json() const;
};

/// Computes Metrics for `generated` against `reference` (all frames of both); the energy
/// metrics only when both have energies, energy W1 and W2 over the generated frames that have
/// one (none when no frame has). Throws psm::Error on mismatched shapes (atoms, dimension),
/// energies that are not one per frame, NaN positions or NaN reference energies.
Metrics compute_metrics(const Samples& generated, const Samples& reference,
                        MetricsOptions options = {});

}  // namespace psm
