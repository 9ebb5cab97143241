#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "psm/core/random.h"
#include "psm/data/subsets.h"
#include "psm/eval/metrics.h"
#include "psm/eval/molecular.h"
#include "psm/io/dataset.h"
#include "psm/io/smiles.h"
#include "psm/systems/potential.h"
#include "test_util.h"

namespace {

const double ln2 = std::numbers::ln2;

/// The ethanol of tests/data/ethanol.xyz (anti: H-O-C-C 180 degrees): C0 C1 O2 H3 (on O), H4-H6
/// on C0, H7 H8 on C1. `frames` copies with Gaussian noise of `sigma` Å.
torch::Tensor ethanol_frames(int64_t frames, double sigma, uint64_t seed) {
  const psm::Dataset molecule =
      psm::load_dataset(psm::test::data_path("ethanol.xyz"), {.temperature_kelvin = 300.0});
  torch::Generator rng = psm::make_generator(seed);
  return molecule.positions + sigma * torch::randn({frames, 9, 3}, rng, torch::kFloat64);
}
const std::vector<int64_t> ethanol_species = {6, 6, 8, 1, 1, 1, 1, 1, 1};

/// Ethanol frames with their identical atoms in a random order, as a permutation-equivariant
/// model produces them: each frame's six hydrogens shuffled, and its two carbons swapped in every
/// odd frame (O2 is the only oxygen).
torch::Tensor shuffle_identical_atoms(const torch::Tensor& frames, uint64_t seed) {
  torch::Generator rng = psm::make_generator(seed);
  std::vector<torch::Tensor> orders;
  for (int64_t b = 0; b < frames.size(0); ++b) {
    const torch::Tensor heavy = torch::tensor(
        b % 2 ? std::vector<int64_t>{1, 0, 2} : std::vector<int64_t>{0, 1, 2}, torch::kInt64);
    orders.push_back(torch::cat({heavy, 3 + torch::randperm(6, rng, torch::kInt64)}));
  }
  return frames.gather(1, torch::stack(orders).unsqueeze(-1).expand_as(frames));
}

/// The atoms of each frame sorted by x: [B, k, 3] sets of atoms compared regardless of order.
torch::Tensor sorted_by_x(const torch::Tensor& atoms) {
  const torch::Tensor order = atoms.select(2, 0).argsort(int64_t{1});
  return atoms.gather(1, order.unsqueeze(-1).expand_as(atoms));
}

/// A carbon chain 0-1-2-3 (bonds 1.49, 1.5, 1.49 Å) whose dihedral (0, 1, 2, 3) is `degrees`.
torch::Tensor butane_skeleton(double degrees) {
  const double phi = degrees * std::numbers::pi / 180.0;
  return torch::tensor({1.4, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5, 1.4 * std::cos(phi),
                        1.4 * std::sin(phi), 2.0},
                       torch::kFloat64)
      .reshape({1, 4, 3});
}

/// Two-atom frames whose one distance is each of `distances`.
torch::Tensor dimers(const std::vector<double>& distances) {
  torch::Tensor frames =
      torch::zeros({static_cast<int64_t>(distances.size()), 2, 3}, torch::kFloat64);
  frames.select(1, 1).select(1, 0).copy_(torch::tensor(distances, torch::kFloat64));
  return frames;
}

TEST(MolecularMetrics, JensenShannonOfEqualPartlyAndFullyDisjointHistograms) {
  const torch::Tensor p = torch::tensor({{1.0, 1.0, 0.0}, {1.0, 1.0, 0.0}, {3.0, 0.0, 0.0}});
  const torch::Tensor q = torch::tensor({{2.0, 2.0, 0.0}, {1.0, 0.0, 0.0}, {0.0, 0.0, 5.0}});
  const torch::Tensor js = psm::jensen_shannon_divergence(p, q);
  // Row 2: m = (3/4, 1/4); KL(p||m) = ½ ln(4/3), KL(q||m) = ln(4/3); JS = ¾ ln(4/3).
  EXPECT_NEAR(js[0].item<double>(), 0.0, 1e-15);
  EXPECT_NEAR(js[1].item<double>(), 0.75 * std::log(4.0 / 3.0), 1e-15);
  EXPECT_NEAR(js[2].item<double>(), ln2, 1e-15);  // nats
  EXPECT_PSM_ERROR(psm::jensen_shannon_divergence(p, torch::zeros({3, 3})), "positive total");
}

TEST(MolecularMetrics, EthanolBondGraphAndRotatableTorsions) {
  const torch::Tensor frames = ethanol_frames(20, 0.02, 1);
  const torch::Tensor bonds = psm::majority_bonds(frames, ethanol_species);
  const torch::Tensor expected =
      torch::tensor({0, 1, 0, 4, 0, 5, 0, 6, 1, 2, 1, 7, 1, 8, 2, 3}, torch::kInt64)
          .reshape({8, 2});
  EXPECT_TRUE(torch::equal(bonds, expected)) << bonds;
  // C0-C1 (H4 as the lowest-index heaviest neighbour of C0, O2 of C1) and C1-O2; C-H and O-H
  // bonds end in a terminal atom.
  const torch::Tensor torsions = psm::rotatable_torsions(bonds, ethanol_species);
  EXPECT_TRUE(torch::equal(torsions,
                           torch::tensor({4, 0, 1, 2, 0, 1, 2, 3}, torch::kInt64).reshape({2, 4})))
      << torsions;
  const torch::Tensor anti = psm::dihedral_angles(frames.slice(0, 0, 1), torsions.slice(0, 1, 2));
  EXPECT_NEAR(std::abs(anti.item<double>()), 180.0, 5.0);
  EXPECT_EQ(psm::atom_label({0, 1, 2, 3}, ethanol_species), "C0-C1-O2-H3");
}

TEST(MolecularMetrics, LabelFreeTorsionsFoldTheMethylRotorAndIgnoreHydrogenLabels) {
  const torch::Tensor frames = ethanol_frames(40, 0.02, 5);
  const torch::Tensor bonds = psm::majority_bonds(frames, ethanol_species);
  const torch::Tensor torsions =
      psm::rotatable_torsions(bonds, ethanol_species);  // H4-C0-C1-O2, C0-C1-O2-H3
  const torch::Tensor plain = psm::dihedral_angles(frames, torsions);
  const torch::Tensor folded =
      psm::label_free_dihedral_angles(frames, torsions, bonds, ethanol_species);
  ASSERT_EQ(folded.sizes(), plain.sizes());
  // The methyl's three hydrogens sit about 120 degrees apart: its torsion is folded onto
  // [0, 120), equal to the plain angle modulo 120 up to the noise of the frames (a few degrees).
  const torch::Tensor methyl = folded.select(1, 0);
  EXPECT_TRUE((methyl >= 0).all().item<bool>() && (methyl < 125).all().item<bool>()) << methyl;
  const torch::Tensor offset = torch::remainder(methyl - plain.select(1, 0), 120.0);
  EXPECT_LT(torch::minimum(offset, 120.0 - offset).max().item<double>(), 10.0);
  // C1-O2 ends in the only hydroxyl hydrogen and in C0: a plain dihedral angle.
  EXPECT_TRUE(torch::equal(folded.select(1, 1), plain.select(1, 1)));
  // Exchanging the methyl hydrogens (a permutation within H4-H6 per frame) changes nothing.
  torch::Generator rng = psm::make_generator(6);
  std::vector<torch::Tensor> orders;
  for (int64_t b = 0; b < frames.size(0); ++b) {
    orders.push_back(
        torch::cat({torch::arange(4, torch::kInt64), 4 + torch::randperm(3, rng, torch::kInt64),
                    torch::arange(7, 9, torch::kInt64)}));
  }
  const torch::Tensor exchanged =
      frames.gather(1, torch::stack(orders).unsqueeze(-1).expand_as(frames));
  EXPECT_FALSE(torch::equal(psm::dihedral_angles(exchanged, torsions), plain));
  EXPECT_TRUE(torch::equal(
      psm::label_free_dihedral_angles(exchanged, torsions, bonds, ethanol_species), folded));
}

TEST(MolecularMetrics, RingBondsAreNotRotatable) {
  // A six-ring 0..5 with a chain 0-6-7: only 0-6 has two non-terminal ends outside the ring.
  const torch::Tensor bonds =
      torch::tensor({0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 0, 5, 0, 6, 6, 7}, torch::kInt64)
          .reshape({8, 2});
  const torch::Tensor torsions = psm::rotatable_torsions(bonds, std::vector<int64_t>(8, 6));
  EXPECT_TRUE(torch::equal(torsions, torch::tensor({1, 0, 6, 7}, torch::kInt64).reshape({1, 4})))
      << torsions;
}

TEST(MolecularMetrics, ChainDihedralKeepsItsSign) {
  for (const double degrees : {60.0, -60.0, 150.0}) {
    const torch::Tensor chain = butane_skeleton(degrees);
    const std::vector<int64_t> carbons(4, 6);
    const torch::Tensor bonds = psm::majority_bonds(chain, carbons);
    ASSERT_EQ(bonds.size(0), 3) << bonds;
    const torch::Tensor torsions = psm::rotatable_torsions(bonds, carbons);
    ASSERT_TRUE(torch::equal(torsions, torch::tensor({0, 1, 2, 3}, torch::kInt64).reshape({1, 4})))
        << torsions;
    // IUPAC: positive when, looking along 1 -> 2, the bond 1-0 turns clockwise onto 2-3.
    EXPECT_NEAR(psm::dihedral_angles(chain, torsions).item<double>(), degrees, 1e-10);
  }
}

// A dihedral φ_t that follows an AR(1) process with coefficient a has, for small φ, sin φ ≈ φ with
// integrated autocorrelation time (1 + a) / (1 - a); cos φ ≈ 1 - φ²/2 decorrelates faster
// ((1 + a²) / (1 - a²)), so the sine sets the torsion's time.
TEST(MolecularMetrics, SlowestTorsionOfAnAutoregressiveDihedral) {
  const int64_t chains = 4, length = 4000;
  const double a = 0.8;
  torch::Generator rng = psm::make_generator(5);
  const torch::Tensor kicks = torch::randn({chains, length}, rng, torch::kFloat64);
  std::vector<torch::Tensor> phi{0.3 * kicks.select(1, 0)};
  for (int64_t t = 1; t < length; ++t) {
    phi.push_back(a * phi.back() + 0.3 * std::sqrt(1 - a * a) * kicks.select(1, t));
  }
  const torch::Tensor angle = torch::stack(phi, 1);  // [C, T] radians, stationary std 0.3
  // butane_skeleton's carbons with the dihedral (0, 1, 2, 3) equal to angle.
  torch::Tensor trajectories = butane_skeleton(0.0).expand({chains, length, 4, 3}).clone();
  trajectories.select(2, 3).select(2, 0).copy_(1.4 * angle.cos());
  trajectories.select(2, 3).select(2, 1).copy_(1.4 * angle.sin());

  const auto slowest = psm::slowest_torsion(trajectories, std::vector<int64_t>(4, 6));
  ASSERT_TRUE(slowest.has_value());
  EXPECT_EQ(slowest->atoms, (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_NEAR(slowest->tau.tau, (1 + a) / (1 - a), 0.15 * (1 + a) / (1 - a));
  EXPECT_TRUE(slowest->tau.reliable);

  // Water has no rotatable bond.
  const torch::Tensor water =
      torch::tensor({0.0, 0.0, 0.0, 0.96, 0.0, 0.0, -0.24, 0.93, 0.0}, torch::kFloat64)
          .reshape({1, 1, 3, 3})
          .expand({2, 10, 3, 3});
  EXPECT_FALSE(psm::slowest_torsion(water, {8, 1, 1}).has_value());
  EXPECT_PSM_ERROR(psm::slowest_torsion(water, {8, 1}), "slowest_torsion", "[2, 10, 3, 3]");
}

TEST(MolecularMetrics, IdenticalSetsScoreZeroAndIntact) {
  const torch::Tensor frames = ethanol_frames(50, 0.02, 2);
  const psm::MolecularMetrics m = psm::compute_molecular_metrics(frames, frames, ethanol_species);
  EXPECT_EQ(m.bonds.size(0), 8);
  EXPECT_EQ(m.torsions.size(0), 2);
  ASSERT_TRUE(m.bond_length_js_mean.has_value());
  EXPECT_NEAR(*m.bond_length_js_mean, 0.0, 1e-12);
  EXPECT_NEAR(*m.bond_length_js_max, 0.0, 1e-12);
  ASSERT_TRUE(m.torsion_js_mean.has_value());
  EXPECT_NEAR(*m.torsion_js_mean, 0.0, 1e-12);
  EXPECT_NEAR(m.distance_density_mae, 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(m.intact_fraction, 1.0);
  const nlohmann::json json = m.to_json(ethanol_species);
  EXPECT_EQ(json["bonds"], 8);
  EXPECT_TRUE(json["bond_length_js"].contains("C0-C1"));
  EXPECT_TRUE(json["torsion_js"].contains("C0-C1-O2-H3"));
}

TEST(MolecularMetrics, BondWidthRatioSeesBondsTooNarrow) {
  // The same geometry with half the noise: every bond length varies about half as much.
  const torch::Tensor reference = ethanol_frames(2000, 0.02, 10);
  const torch::Tensor narrow = shuffle_identical_atoms(ethanol_frames(2000, 0.01, 11), 12);
  const psm::MolecularMetrics m =
      psm::compute_molecular_metrics(narrow, reference, ethanol_species);
  ASSERT_EQ(m.bond_width_ratio.size(), 4u);  // C-C, C-H, C-O, H-O
  for (const auto& [type, ratio] : m.bond_width_ratio) EXPECT_NEAR(ratio, 0.5, 0.05) << type;
  EXPECT_EQ(m.to_json(ethanol_species)["bond_width_ratio"].size(), 4u);
  const psm::MolecularMetrics same =
      psm::compute_molecular_metrics(reference, reference, ethanol_species);
  for (const auto& [type, ratio] : same.bond_width_ratio) EXPECT_DOUBLE_EQ(ratio, 1.0) << type;
}

TEST(MolecularMetrics, WrongBondsCountBrokenAndMovedBondsByElementPair) {
  const torch::Tensor reference = ethanol_frames(20, 0.02, 7);
  const torch::Tensor bonds = psm::majority_bonds(reference, ethanol_species);
  torch::Tensor frames = shuffle_identical_atoms(ethanol_frames(3, 0.02, 8), 9);
  // Frame 1: the hydroxyl H3 pulled 1.5 Å away from O2: one O-H bond missing. Frames are
  // shuffled, so find it as the hydrogen nearest the oxygen.
  const auto nearest_hydrogen = [&](int64_t frame, int64_t atom) {
    const torch::Tensor hydrogens = frames[frame].slice(0, 3, 9);
    return 3 + (hydrogens - frames[frame][atom]).norm(2, -1).argmin().item<int64_t>();
  };
  const int64_t h_on_o = nearest_hydrogen(1, 2);
  const torch::Tensor oh = frames[1][h_on_o] - frames[1][2];
  frames[1][h_on_o] += 1.5 * oh / oh.norm();
  // Frame 2: the same hydrogen moved onto C1's far side, 1.1 Å out: an O-H missing and a C-H
  // extra, 2 wrong bonds.
  const int64_t h_on_o2 = nearest_hydrogen(2, 2);
  const int64_t carbon = (frames[2][0] - frames[2][2]).norm().item<double>() <
                                 (frames[2][1] - frames[2][2]).norm().item<double>()
                             ? 0
                             : 1;  // the carbon bonded to O2
  const torch::Tensor away = frames[2][carbon] - frames[2][2];
  frames[2][h_on_o2] = frames[2][carbon] + 1.1 * away / away.norm();
  const torch::Tensor counts = psm::wrong_bond_counts(frames, ethanol_species, bonds);
  EXPECT_EQ(counts[0].item<int64_t>(), 0);
  EXPECT_EQ(counts[1].item<int64_t>(), 1);
  EXPECT_EQ(counts[2].item<int64_t>(), 2);
  const psm::MolecularMetrics m =
      psm::compute_molecular_metrics(frames, reference, ethanol_species);
  EXPECT_NEAR(m.intact_fraction, 1.0 / 3, 1e-12);
  EXPECT_NEAR(m.wrong_bonds_mean, 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(m.to_json(ethanol_species)["wrong_bonds_mean"].get<double>(), 1.0);
  EXPECT_PSM_ERROR(psm::wrong_bond_counts(frames, ethanol_species, bonds + 20), "wrong_bond_counts",
                   "out of range");
}

TEST(MolecularMetrics, StretchedBondBreaksTheGraph) {
  // The reference holds 20 frames twice, so that either half has exactly its distribution.
  const torch::Tensor twenty = ethanol_frames(20, 0.02, 3);
  const torch::Tensor reference = torch::cat({twenty, twenty});
  torch::Tensor generated = reference.clone();
  // Move H3 1.5 Å further from O2 in the first half of the frames: O-H becomes ~2.5 Å.
  const torch::Tensor oh = generated.select(1, 3) - generated.select(1, 2);
  const torch::Tensor stretched = generated.select(1, 3) + 1.5 * oh / oh.norm(2, -1, true);
  generated.slice(0, 0, 20).select(1, 3).copy_(stretched.slice(0, 0, 20));
  const psm::MolecularMetrics half =
      psm::compute_molecular_metrics(generated, reference, ethanol_species);
  EXPECT_DOUBLE_EQ(half.intact_fraction, 0.5);
  // Bonds are measured on the intact half only, which is exactly the reference's distribution.
  EXPECT_EQ(half.relabelled.size(0), 20);
  ASSERT_TRUE(half.bond_length_js_max.has_value());
  EXPECT_NEAR(*half.bond_length_js_max, 0.0, 1e-12);

  generated.select(1, 3).copy_(stretched);
  const psm::MolecularMetrics all =
      psm::compute_molecular_metrics(generated, reference, ethanol_species);
  EXPECT_DOUBLE_EQ(all.intact_fraction, 0.0);
  // No frame left to measure bonds and torsions on: absent, not zero.
  EXPECT_EQ(all.relabelled.size(0), 0);
  EXPECT_FALSE(all.bond_length_js_mean.has_value());
  EXPECT_FALSE(all.torsion_js_mean.has_value());
  ASSERT_EQ(all.bond_length_js.size(), 8u);
  EXPECT_TRUE(std::isnan(all.bond_length_js[7]));
  EXPECT_TRUE(all.to_json(ethanol_species)["bond_length_js_mean"].is_null());
}

TEST(MolecularMetrics, RelabellingUndoesPermutationsOfIdenticalAtoms) {
  const torch::Tensor frames = ethanol_frames(100, 0.02, 7);
  const torch::Tensor bonds = psm::majority_bonds(frames, ethanol_species);
  const torch::Tensor shuffled = shuffle_identical_atoms(frames, 8);
  // The shuffled labels break most index-based bonds.
  const torch::Tensor o_h = psm::bond_lengths(shuffled, torch::tensor({{2, 3}}, torch::kInt64));
  EXPECT_GT((o_h > 1.5).to(torch::kFloat64).mean().item<double>(), 0.5);

  const psm::Relabelling relabelled = psm::relabel_onto_reference(shuffled, ethanol_species, bonds);
  EXPECT_TRUE(relabelled.intact.all().item<bool>());
  EXPECT_EQ(relabelled.search_limited, 0);
  // Up to ethanol's symmetries: the heavy atoms and the hydroxyl H are back in place; the methyl
  // hydrogens H4-H6 and the methylene H7 H8 are each the original atoms in some order.
  const torch::Tensor x = relabelled.positions;
  EXPECT_TRUE(torch::equal(x.slice(1, 0, 4), frames.slice(1, 0, 4)));
  EXPECT_TRUE(torch::equal(sorted_by_x(x.slice(1, 4, 7)), sorted_by_x(frames.slice(1, 4, 7))));
  EXPECT_TRUE(torch::equal(sorted_by_x(x.slice(1, 7, 9)), sorted_by_x(frames.slice(1, 7, 9))));
  // Frames already in the reference labelling keep it.
  EXPECT_TRUE(
      torch::equal(psm::relabel_onto_reference(frames, ethanol_species, bonds).positions, frames));
}

TEST(MolecularMetrics, RelabellingLeavesBrokenGraphsAndGivesUpAtTheVisitLimit) {
  torch::Tensor frames = ethanol_frames(10, 0.02, 9);
  const torch::Tensor bonds = psm::majority_bonds(frames, ethanol_species);
  // Frames 0-2: H3 3 Å from O2 (shuffled afterwards, so the search has to look).
  const torch::Tensor oh = frames.select(1, 3) - frames.select(1, 2);
  frames.slice(0, 0, 3).select(1, 3).copy_(
      (frames.select(1, 2) + 3.0 * oh / oh.norm(2, -1, true)).slice(0, 0, 3));
  const torch::Tensor shuffled = shuffle_identical_atoms(frames, 10);
  const psm::Relabelling relabelled = psm::relabel_onto_reference(shuffled, ethanol_species, bonds);
  const torch::Tensor expected = torch::arange(10) >= 3;
  EXPECT_TRUE(torch::equal(relabelled.intact, expected)) << relabelled.intact;
  EXPECT_EQ(relabelled.search_limited, 0);
  // Not intact: the frame keeps its labels.
  EXPECT_TRUE(torch::equal(relabelled.positions.slice(0, 0, 3), shuffled.slice(0, 0, 3)));

  // One visit cannot map nine atoms: every frame that needs a search (the intact odd frames,
  // whose carbons are swapped) gives up.
  const torch::Tensor odd = shuffled.slice(0, 3, 10, 2);
  const psm::Relabelling limited = psm::relabel_onto_reference(odd, ethanol_species, bonds, 1.2, 1);
  EXPECT_FALSE(limited.intact.any().item<bool>());
  EXPECT_EQ(limited.search_limited, 4);
  EXPECT_TRUE(torch::equal(limited.positions, odd));

  EXPECT_PSM_ERROR(psm::relabel_onto_reference(frames, ethanol_species, bonds, 1.2, 0),
                   "max_visits must be >= 1");
  EXPECT_PSM_ERROR(
      psm::relabel_onto_reference(frames, ethanol_species, torch::tensor({{0, 9}}, torch::kInt64)),
      "relabel_onto_reference", "bond (0, 9) out of range for 9 atoms");
  EXPECT_PSM_ERROR(psm::relabel_onto_reference(frames, ethanol_species, torch::zeros({3})),
                   "bonds must have shape [K, 2], got [3]");
}

TEST(MolecularMetrics, ShuffledSamplesScoreAsTheirOriginals) {
  const torch::Tensor frames = ethanol_frames(100, 0.02, 11);
  const torch::Tensor shuffled = shuffle_identical_atoms(frames, 12);
  const psm::MolecularMetrics m = psm::compute_molecular_metrics(shuffled, frames, ethanol_species);
  EXPECT_DOUBLE_EQ(m.intact_fraction, 1.0);
  EXPECT_EQ(m.search_limited, 0);
  // Bonds among C0 C1 O2 H3 (rows 0, 4, 7) and the torsion C0-C1-O2-H3 are measured on the very
  // atoms of the originals; the C-H bonds on a mix of equivalent hydrogens (whose lengths differ
  // slightly in this rigid reference).
  for (const int64_t k : {0, 4, 7}) EXPECT_NEAR(m.bond_length_js[k], 0.0, 1e-12) << k;
  EXPECT_LT(m.bond_length_js_mean.value(), 0.05);
  ASSERT_EQ(m.torsion_js.size(), 2u);
  EXPECT_NEAR(m.torsion_js[1], 0.0, 1e-12);
  EXPECT_TRUE(torch::equal(m.relabelled.slice(1, 0, 4), frames.slice(1, 0, 4)));

  // Without relabelling (a search that gives up at once) the same samples look broken.
  const psm::MolecularMetrics unrelabelled =
      psm::compute_molecular_metrics(shuffled, frames, ethanol_species, {.relabel_max_visits = 1});
  // Only frames whose shuffle happens to be a symmetry of ethanol (H4-H6 among themselves, H7 H8)
  // keep the reference graph index by index and need no search.
  EXPECT_LE(unrelabelled.intact_fraction, 0.05);
  EXPECT_DOUBLE_EQ(unrelabelled.intact_fraction + unrelabelled.search_limited / 100.0, 1.0);
  // Only those are measured: the others' labels are the shuffle's, not the molecule's.
  EXPECT_EQ(unrelabelled.relabelled.size(0), 100 - unrelabelled.search_limited);
}

TEST(MolecularMetrics, RelabellingATetrapeptideNeedsNoBacktracking) {
#ifndef PSM_WITH_RDKIT
  GTEST_SKIP() << "built without RDKit";
#endif
  // Ac-Ala3-NHMe (42 atoms, 22 hydrogens, five methyl groups): every element's atoms shuffled in
  // each frame, as a permutation-equivariant model may produce them.
  const psm::Dataset peptide = psm::molecule_from_smiles(
      "CC(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)NC", {.seed = 1});
  const int64_t frames = 20, atoms = peptide.positions.size(1);
  torch::Generator rng = psm::make_generator(13);
  const torch::Tensor noisy =
      peptide.positions + 0.01 * torch::randn({frames, atoms, 3}, rng, torch::kFloat64);
  const torch::Tensor species = torch::tensor(peptide.species, torch::kInt64);
  std::vector<torch::Tensor> orders;
  for (int64_t b = 0; b < frames; ++b) {
    torch::Tensor order = torch::arange(atoms, torch::kInt64);
    for (const int64_t z : {1, 6, 7, 8}) {
      const torch::Tensor same = (species == z).nonzero().flatten();
      order.index_put_({same}, same.index({torch::randperm(same.numel(), rng, torch::kInt64)}));
    }
    orders.push_back(order);
  }
  const torch::Tensor shuffled =
      noisy.gather(1, torch::stack(orders).unsqueeze(-1).expand_as(noisy));
  const torch::Tensor bonds = psm::majority_bonds(noisy, peptide.species);

  // One visit per atom: the colours and the order (hydrogens last) leave nothing to undo.
  const psm::Relabelling relabelled =
      psm::relabel_onto_reference(shuffled, peptide.species, bonds, 1.2, atoms);
  EXPECT_TRUE(relabelled.intact.all().item<bool>());
  EXPECT_EQ(relabelled.search_limited, 0);
  // Every relabelled frame has the reference graph index by index.
  const torch::Tensor reference_graph = psm::covalent_adjacency(peptide.positions, peptide.species);
  EXPECT_TRUE((psm::covalent_adjacency(relabelled.positions, peptide.species) == reference_graph)
                  .all()
                  .item<bool>());
}

TEST(MolecularMetrics, DistanceDensityMaeOfDimers) {
  // Reference distance 1.0 Å: h(r) on [0, 1.1] Å in 200 bins of 0.0055 Å. A spike of density
  // 1/0.0055 in one bin against one in another: MAE = 2 / (200 x 0.0055) = 2/1.1 per Å.
  const torch::Tensor reference = dimers({1.0, 1.0});
  EXPECT_NEAR(psm::distance_density_mae(dimers({1.05, 1.05}), reference), 2.0 / 1.1, 1e-9);
  // Half the mass moved: MAE = 1/1.1.
  EXPECT_NEAR(psm::distance_density_mae(dimers({1.0, 1.05}), reference), 1.0 / 1.1, 1e-9);
  // Distances beyond the range are lost mass: only the reference spike remains, 1/1.1.
  EXPECT_NEAR(psm::distance_density_mae(dimers({2.0, 3.0}), reference), 1.0 / 1.1, 1e-9);
  EXPECT_NEAR(psm::distance_density_mae(reference, reference), 0.0, 1e-12);
}

TEST(MolecularMetrics, BadInputIsRejected) {
  const torch::Tensor frames = ethanol_frames(4, 0.02, 5);
  EXPECT_PSM_ERROR(psm::compute_molecular_metrics(frames.slice(1, 0, 8), frames, ethanol_species),
                   "generated", "8 atoms", "species list 9");
  EXPECT_PSM_ERROR(psm::compute_molecular_metrics(frames, frames, std::vector<int64_t>(9, 0)),
                   "atomic number 0");
}

#ifdef PSM_WITH_XTB
TEST(MolecularMetrics, PotentialEnergiesLeaveOutFramesTheSystemRejects) {
  const auto xtb = psm::make_system({{"name", "xtb"}, {"species", ethanol_species}});
  const torch::Tensor reference = ethanol_frames(6, 0.01, 6);
  torch::Tensor generated = reference.clone();
  generated[1][3] = generated[1][2] + 0.2;  // H3 0.35 Å from O2: rejected before xtb runs
  // Every other frame of 6 is used with max_frames 3 (indices 0, 2 (rounded from 2.5), 5).
  const psm::PotentialEnergies some = psm::potential_energies(*xtb, generated, 3);
  EXPECT_EQ(some.evaluated, 3);
  EXPECT_EQ(some.failed, 0);
  const psm::PotentialEnergies all = psm::potential_energies(*xtb, generated, 6);
  EXPECT_EQ(all.failed, 1);
  EXPECT_NE(all.first_error.find("atoms 2 and 3 of frame 0"), std::string::npos) << all.first_error;
  ASSERT_EQ(all.energies.numel(), 5);
  const psm::PotentialEnergies ref = psm::potential_energies(*xtb, reference, 6);
  const psm::PotentialEnergyW1 w1 = psm::potential_energy_w1("xtb", all, ref);
  EXPECT_EQ(w1.generated, 6);
  EXPECT_EQ(w1.failed_generated, 1);
  EXPECT_EQ(w1.reference, 6);
  // The five good frames are reference frames: W1 is the 1-D distance to the full six.
  EXPECT_NEAR(w1.w1, psm::wasserstein_1d(all.energies, ref.energies, 1.0), 1e-12);
  EXPECT_GT(w1.w1, 0.0);
  // No reference frame evaluates: an error that says why.
  const psm::PotentialEnergies clash = psm::potential_energies(*xtb, generated.slice(0, 1, 2), 1);
  EXPECT_PSM_ERROR(psm::potential_energy_w1("xtb", all, clash),
                   "none of the 1 reference frames evaluated", "atoms 2 and 3");
}
#endif

}  // namespace
