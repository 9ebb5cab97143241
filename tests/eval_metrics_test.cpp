#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/eval/metrics.h"

namespace {

torch::Tensor values(std::vector<double> v) { return torch::tensor(v, torch::kFloat64); }

/// Random orthogonal matrices [B, D, D] (QR of Gaussian matrices); half of them reflections.
torch::Tensor random_orthogonal(int64_t batch, int64_t dim, torch::Generator& rng) {
  auto [q, r] = torch::linalg_qr(torch::randn({batch, dim, dim}, rng, torch::kFloat64));
  return q * torch::diagonal(r, 0, -2, -1).sign().unsqueeze(-2);
}

TEST(EvalWasserstein, ShiftedSampleIsAtTheShift) {
  torch::Generator rng = psm::make_generator(1);
  const torch::Tensor a = torch::randn({257}, rng, torch::kFloat64);
  const torch::Tensor b = a.index_select(0, torch::randperm(257, rng)) + 0.7;
  EXPECT_NEAR(psm::wasserstein_1d(a, b, 1.0), 0.7, 1e-12);
  EXPECT_NEAR(psm::wasserstein_1d(a, b, 2.0), 0.7, 1e-12);
  EXPECT_NEAR(psm::wasserstein_1d(a, b, 3.0), 0.7, 1e-12);
}

TEST(EvalWasserstein, TwoPointSamplesByHand) {
  // Sorted coupling pairs 0-0 and 1-3.
  EXPECT_NEAR(psm::wasserstein_1d(values({1, 0}), values({0, 3}), 1.0), 1.0, 1e-15);
  EXPECT_NEAR(psm::wasserstein_1d(values({1, 0}), values({0, 3}), 2.0), std::sqrt(2.0), 1e-15);
}

TEST(EvalWasserstein, UnequalSizesUseTheExactQuantileCoupling) {
  // {0,1} vs {0,1,2}: |F_a - F_b| is 1/6 on [0,1) and 1/3 on [1,2) -> W1 = 1/2; the quantile
  // functions differ by 1 on (1/3,1/2] and (2/3,1] -> W2^2 = 1/6 + 1/3.
  EXPECT_NEAR(psm::wasserstein_1d(values({0, 1}), values({2, 0, 1}), 1.0), 0.5, 1e-15);
  EXPECT_NEAR(psm::wasserstein_1d(values({0, 1}), values({2, 0, 1}), 2.0), std::sqrt(0.5), 1e-15);
  // One point against three: W1 = mean distance, W2^2 = mean squared distance.
  EXPECT_NEAR(psm::wasserstein_1d(values({0}), values({1, 2, 3}), 1.0), 2.0, 1e-15);
  EXPECT_NEAR(psm::wasserstein_1d(values({0}), values({1, 2, 3}), 2.0), std::sqrt(14.0 / 3.0),
              1e-14);
  // Symmetric in its arguments.
  EXPECT_NEAR(psm::wasserstein_1d(values({2, 0, 1}), values({0, 1}), 1.0), 0.5, 1e-15);
}

TEST(EvalWasserstein, InfiniteValueGivesAnInfiniteDistanceNotNaN) {
  // The levels of {0, 1} and {0, 1, inf} share 1; the shared level's zero-width step must not
  // turn 0 x inf into NaN.
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(psm::wasserstein_1d(values({0, 1}), values({0, 1, inf}), 1.0), inf);
  EXPECT_EQ(psm::wasserstein_1d(values({0, 1}), values({0, 1, inf}), 2.0), inf);
}

TEST(EvalWasserstein, RejectsNaNAndEmpty) {
  EXPECT_THROW(psm::wasserstein_1d(values({0, NAN}), values({0, 1})), psm::Error);
  EXPECT_THROW(psm::wasserstein_1d(torch::empty({0}, torch::kFloat64), values({0})), psm::Error);
}

TEST(EvalDistances, RightTriangle) {
  const torch::Tensor x = values({0, 0, 0, 3, 0, 0, 0, 4, 0}).reshape({1, 3, 3});
  const torch::Tensor d = psm::pairwise_distances(x);
  ASSERT_EQ(d.sizes(), (std::vector<int64_t>{1, 3}));
  EXPECT_TRUE(torch::allclose(d[0], values({3, 4, 5}), 0, 1e-15));  // (0,1), (0,2), (1,2)
}

TEST(EvalTvd, IdenticalIsZeroDisjointIsOne) {
  torch::Generator rng = psm::make_generator(2);
  const torch::Tensor a = torch::rand({1000}, rng, torch::kFloat64);
  EXPECT_DOUBLE_EQ(psm::histogram_tvd(a.flip(0), a), 0.0);
  EXPECT_DOUBLE_EQ(psm::histogram_tvd(a + 5.0, a), 1.0);  // all generated mass outside
  EXPECT_DOUBLE_EQ(psm::histogram_tvd(a, a + 5.0), 1.0);
}

TEST(EvalTvd, OutsideMassCountsInFull) {
  // Reference {0, 1} in 2 bins: p = [1/2, 1/2]; generated q = [1/2, 1/4], 1/4 outside.
  EXPECT_DOUBLE_EQ(psm::histogram_tvd(values({0.25, 0.25, 0.75, 5.0}), values({0, 1}), 2), 0.25);
}

TEST(EvalOutliers, FractionAboveReferenceMaximum) {
  EXPECT_DOUBLE_EQ(psm::outlier_fraction(values({0, 3, 3.5, 10}), values({1, 2, 3})), 0.5);
  EXPECT_DOUBLE_EQ(psm::outlier_fraction(values({0, NAN}), values({1, 2, 3})), 0.5);
}

TEST(EvalKabsch, RecoversAKnownRotation) {
  torch::Generator rng = psm::make_generator(3);
  const torch::Tensor x = torch::randn({4, 7, 3}, rng, torch::kFloat64);
  torch::Tensor rotation = random_orthogonal(4, 3, rng);
  rotation = rotation * torch::linalg_det(rotation).view({4, 1, 1});  // proper rotations
  const torch::Tensor y = x.matmul(rotation) + torch::randn({4, 1, 3}, rng, torch::kFloat64);
  const torch::Tensor found = psm::kabsch_rotation(x, y, /*allow_reflection=*/false);
  EXPECT_TRUE(torch::allclose(found, rotation, 0, 1e-12));
  EXPECT_LT(psm::aligned_rmsd(x, y, false).max().item<double>(), 1e-12);
}

TEST(EvalKabsch, ReflectionOnlyWhenAllowed) {
  torch::Generator rng = psm::make_generator(4);
  const torch::Tensor x = torch::randn({3, 6, 3}, rng, torch::kFloat64);
  const torch::Tensor mirrored = x * values({-1, 1, 1});
  EXPECT_LT(psm::aligned_rmsd(x, mirrored, true).max().item<double>(), 1e-12);
  EXPECT_GT(psm::aligned_rmsd(x, mirrored, false).min().item<double>(), 1e-3);
}

double brute_force_assignment(const torch::Tensor& cost) {
  const int64_t n = cost.size(0), m = cost.size(1);
  std::vector<int64_t> cols(m);
  std::iota(cols.begin(), cols.end(), 0);
  double best = INFINITY;
  do {
    double total = 0;
    for (int64_t i = 0; i < n; ++i) total += cost[i][cols[i]].item<double>();
    best = std::min(best, total);
  } while (std::next_permutation(cols.begin(), cols.end()));
  return best;
}

TEST(EvalAssignment, MatchesBruteForce) {
  torch::Generator rng = psm::make_generator(5);
  for (int64_t n = 1; n <= 6; ++n) {
    for (int64_t m = n; m <= std::min<int64_t>(n + 2, 7); ++m) {
      // Integer costs make ties (several optimal assignments) common.
      const torch::Tensor cost = torch::randint(0, 10, {n, m}, rng, torch::kFloat64) - 3.0;
      const std::vector<int64_t> match = psm::linear_sum_assignment(cost);
      ASSERT_EQ(static_cast<int64_t>(match.size()), n);
      std::vector<int64_t> sorted = match;
      std::sort(sorted.begin(), sorted.end());
      EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end()) << "columns reused";
      double total = 0;
      for (int64_t i = 0; i < n; ++i) total += cost[i][match[i]].item<double>();
      EXPECT_DOUBLE_EQ(total, brute_force_assignment(cost)) << n << " x " << m;
    }
  }
  EXPECT_THROW(psm::linear_sum_assignment(torch::zeros({3, 2}, torch::kFloat64)), psm::Error);
}

/// Each frame rigidly moved (rotation, or with `reflections` also reflection; translation) and
/// its particles relabelled.
torch::Tensor scrambled_copy(const torch::Tensor& x, torch::Generator& rng,
                             bool reflections = true) {
  const int64_t batch = x.size(0), n = x.size(1), dim = x.size(2);
  torch::Tensor rotation = random_orthogonal(batch, dim, rng);
  if (!reflections) rotation = rotation * torch::linalg_det(rotation).view({batch, 1, 1});
  torch::Tensor moved = x.matmul(rotation) + torch::randn({batch, 1, dim}, rng, torch::kFloat64);
  std::vector<torch::Tensor> frames;
  for (int64_t b = 0; b < batch; ++b)
    frames.push_back(moved[b].index_select(0, torch::randperm(n, rng)));
  return torch::stack(frames);
}

TEST(EvalEquivariant, RigidlyMovedRelabelledCopyIsAtZero) {
  torch::Generator rng = psm::make_generator(6);
  for (int64_t dim : {2, 3}) {
    const torch::Tensor x = torch::randn({12, 7, dim}, rng, torch::kFloat64);
    const torch::Tensor y = scrambled_copy(x, rng).index_select(0, torch::randperm(12, rng));
    EXPECT_LT(psm::equivariant_w2(x, y), 1e-10) << "dim " << dim;
  }
}

TEST(EvalEquivariant, ScaledCopyDistanceIsTheRadiusOfGyration) {
  // min over R, P of |x_P R - 2x|^2 = 5|x|^2 - 4 max tr(...) = |x|^2 (Cauchy-Schwarz), so the
  // distance of x to a moved, relabelled 2x is the rms distance of x from its centroid.
  torch::Generator rng = psm::make_generator(7);
  for (int64_t atoms : {5, 9}) {  // exhaustive and searched labellings
    const torch::Tensor x = torch::randn({5, atoms, 3}, rng, torch::kFloat64);
    const torch::Tensor y = scrambled_copy(2.0 * x, rng);
    const torch::Tensor gyration = (x - x.mean(1, true)).square().sum(-1).mean(-1).sqrt();
    EXPECT_TRUE(torch::allclose(psm::equivariant_rmsd(x, y), gyration, 0, 1e-10)) << atoms;
  }
}

TEST(EvalEquivariant, MirrorImageOnlyEquivalentWithReflections) {
  torch::Generator rng = psm::make_generator(10);
  for (int64_t atoms : {5, 8}) {
    const torch::Tensor x = torch::randn({4, atoms, 3}, rng, torch::kFloat64);
    const torch::Tensor mirrored =
        scrambled_copy(x * values({1, 1, -1}), rng, /*reflections=*/false);
    EXPECT_LT(psm::equivariant_rmsd(x, mirrored).max().item<double>(), 1e-10) << atoms;
    EXPECT_GT(psm::equivariant_rmsd(x, mirrored, {.allow_reflection = false}).min().item<double>(),
              1e-3)
        << atoms;
  }
}

TEST(EvalEquivariant, SearchFindsTheExhaustiveOptimumOnSmallSystems) {
  torch::Generator rng = psm::make_generator(11);
  const torch::Tensor x = torch::randn({40, 6, 3}, rng, torch::kFloat64);
  const torch::Tensor y = torch::randn({40, 6, 3}, rng, torch::kFloat64);
  const torch::Tensor exact = psm::equivariant_rmsd(x, y);  // 6! labellings each
  const torch::Tensor searched = psm::equivariant_rmsd(x, y, {.exhaustive_max_atoms = 0});
  EXPECT_GE((searched - exact).min().item<double>(), -1e-12);  // never below the optimum
  EXPECT_LT((searched - exact).max().item<double>(), 1e-9);
}

TEST(EvalMetrics, IdenticalSetsGiveZeroAndJsonHasEveryField) {
  torch::Generator rng = psm::make_generator(8);
  const psm::Samples samples{torch::randn({50, 5, 3}, rng, torch::kFloat64),
                             torch::randn({50}, rng, torch::kFloat64)};
  const psm::Metrics m = psm::compute_metrics(samples, samples, {.equivariant_samples = 10});
  EXPECT_EQ(m.n_generated, 50);
  EXPECT_DOUBLE_EQ(*m.energy_w1, 0.0);
  EXPECT_DOUBLE_EQ(*m.energy_w2, 0.0);
  EXPECT_DOUBLE_EQ(m.distance_tvd, 0.0);
  EXPECT_DOUBLE_EQ(m.distance_w2, 0.0);
  EXPECT_DOUBLE_EQ(*m.outlier_fraction, 0.0);
  ASSERT_TRUE(m.equivariant_w2.has_value());
  EXPECT_LT(*m.equivariant_w2, 1e-10);
  const nlohmann::json j = m.to_json();
  for (const char* key :
       {"n_generated", "n_reference", "energy_w1", "energy_w2", "energy_w2_squared", "distance_tvd",
        "distance_w2", "outlier_fraction", "equivariant_w2"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
}

TEST(EvalMetrics, ShiftedEnergiesAndMismatchedShapes) {
  torch::Generator rng = psm::make_generator(9);
  const psm::Samples reference{torch::randn({40, 4, 2}, rng, torch::kFloat64),
                               torch::randn({40}, rng, torch::kFloat64)};
  const psm::Samples shifted{reference.positions, reference.energies + 2.0};
  const psm::Metrics m = psm::compute_metrics(shifted, reference);
  EXPECT_NEAR(*m.energy_w2, 2.0, 1e-12);
  EXPECT_NEAR(*m.energy_w2_squared, 4.0, 1e-12);
  EXPECT_GT(*m.outlier_fraction, 0.0);
  const psm::Samples other{torch::randn({40, 5, 2}, rng, torch::kFloat64), reference.energies};
  EXPECT_THROW(psm::compute_metrics(other, reference), psm::Error);
  const psm::Samples diverged{reference.positions.clone().index_put_({3, 0, 0}, NAN),
                              reference.energies};
  EXPECT_THROW(psm::compute_metrics(diverged, reference), psm::Error);
}

TEST(EvalMetrics, GeneratedFramesWithoutEnergyAreOutliersOutsideTheWassersteinDistances) {
  // NaN marks a generated frame the potential could not evaluate (xtb on clashing atoms).
  torch::Generator rng = psm::make_generator(11);
  const psm::Samples reference{torch::randn({30, 4, 3}, rng, torch::kFloat64),
                               torch::randn({30}, rng, torch::kFloat64)};
  const psm::Samples shifted{reference.positions, reference.energies + 1.0};
  torch::Tensor failed = shifted.energies.clone();
  failed.slice(0, 0, 3).fill_(NAN);
  const psm::Metrics m = psm::compute_metrics({reference.positions, failed}, reference);
  EXPECT_EQ(m.energy_failures, 3);
  EXPECT_EQ(m.to_json().at("energy_failures"), 3);
  EXPECT_DOUBLE_EQ(*m.energy_w1,
                   psm::wasserstein_1d(shifted.energies.slice(0, 3), reference.energies, 1.0));
  EXPECT_GE(*m.outlier_fraction, 0.1);  // the 3 of 30, and any above the reference's maximum
  const psm::Metrics none = psm::compute_metrics(
      {reference.positions, torch::full({30}, NAN, torch::kFloat64)}, reference);
  EXPECT_FALSE(none.energy_w1.has_value());
  EXPECT_DOUBLE_EQ(*none.outlier_fraction, 1.0);
  // The reference must have every energy.
  EXPECT_THROW(psm::compute_metrics(shifted, {reference.positions, failed}), psm::Error);
}

TEST(EvalMetrics, SetsWithoutEnergiesGiveNoEnergyMetrics) {
  torch::Generator rng = psm::make_generator(10);
  const psm::Samples reference{torch::randn({30, 4, 3}, rng, torch::kFloat64),
                               torch::randn({30}, rng, torch::kFloat64)};
  const psm::Samples positions_only{reference.positions + 0.1, torch::Tensor()};
  const psm::Metrics m = psm::compute_metrics(positions_only, reference);
  EXPECT_FALSE(m.energy_w1.has_value());
  EXPECT_FALSE(m.outlier_fraction.has_value());
  EXPECT_GT(m.distance_w2, 0.0);
  const nlohmann::json j = m.to_json();
  EXPECT_TRUE(j.at("energy_w1").is_null());
  EXPECT_TRUE(j.at("distance_tvd").is_number());
}

}  // namespace

namespace {

// Harmonic frames U = k/2 sum_i |x_i - x̄|^2 at kT, exactly sampled, with forces -k (x - x̄): the
// virial kT of generated frames is theirs, frames with a non-finite force are left out.
TEST(EvalMetrics, VirialTemperatureOfGeneratedFramesWithForces) {
  torch::Generator rng = psm::make_generator(13);
  const double k = 4.0, kT = 0.5;
  torch::Tensor x = std::sqrt(kT / k) * torch::randn({3000, 5, 3}, rng, torch::kFloat64);
  x = x - x.mean(1, /*keepdim=*/true);
  torch::Tensor forces = -k * x;
  const psm::Samples reference{x, torch::Tensor()};
  const psm::Metrics exact = psm::compute_metrics({x, torch::Tensor(), forces}, reference);
  ASSERT_TRUE(exact.virial.has_value());
  EXPECT_EQ(exact.virial->frames, 3000);
  EXPECT_LT(exact.virial->deviation(kT), 4.0);
  EXPECT_NEAR(exact.to_json()["virial_kT"].get<double>(), exact.virial->kT, 1e-15);

  // Twice the forces on the same frames imply twice the kT; a frame with an infinite force (a
  // clash) is left out.
  torch::Tensor stiff = 2.0 * forces;
  stiff.index_put_({0, 0, 0}, std::numeric_limits<double>::infinity());
  const psm::Metrics doubled = psm::compute_metrics({x, torch::Tensor(), stiff}, reference);
  EXPECT_EQ(doubled.virial->frames, 2999);
  EXPECT_NEAR(doubled.virial->kT, 2 * kT, 4 * doubled.virial->standard_error);

  EXPECT_FALSE(psm::compute_metrics(reference, reference).virial.has_value());
  EXPECT_TRUE(psm::compute_metrics(reference, reference).to_json()["virial_kT"].is_null());
  const psm::Samples misshapen{x, torch::Tensor(), forces.slice(1, 0, 4)};
  EXPECT_THROW(psm::compute_metrics(misshapen, reference), psm::Error);
}

}  // namespace
