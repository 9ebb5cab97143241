// The virial force check: exact on Gaussian (harmonic) frames, and it catches forces of another
// potential or in other units. The thermal check reads it per bond type beside the kinetic
// temperature.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <utility>

#include "psm/core/random.h"
#include "psm/data/force_check.h"
#include "psm/data/thermal_check.h"
#include "psm/io/dataset.h"
#include "test_util.h"

namespace {

/// Frames of independent 3-D harmonic wells U = k/2 sum_i |x_i|^2 at kT, exactly sampled, with
/// their forces -k x.
psm::Dataset harmonic_frames(int64_t frames, int64_t atoms, double k, double kT, uint64_t seed) {
  torch::Generator rng = psm::make_generator(seed);
  psm::Dataset data;
  data.species = std::vector<int64_t>(atoms, 18);
  data.kT = kT;
  data.positions = std::sqrt(kT / k) * torch::randn({frames, atoms, 3}, rng, torch::kFloat64);
  data.forces = -k * data.positions;
  return data;
}

TEST(ForceCheck, VirialTemperatureOfHarmonicFramesIsTheirKt) {
  const psm::Dataset data = harmonic_frames(4000, 5, 3.0, 0.7, 1);
  const psm::VirialTemperature virial = psm::virial_temperature(data);
  EXPECT_EQ(virial.frames, 4000);
  // Per frame, kT_virial = k |x - x̄|² / 12 is kT χ²₁₂ / 12: standard deviation kT sqrt(2/12).
  EXPECT_NEAR(virial.standard_error, 0.7 * std::sqrt(2.0 / 12.0) / std::sqrt(4000.0), 2e-4);
  EXPECT_LT(virial.deviation(0.7), psm::kForceCheckSigmas);
  EXPECT_NE(psm::describe_force_check(virial, 0.7).find("consistent"), std::string::npos);
}

TEST(ForceCheck, CatchesForcesOfAnotherPotential) {
  psm::Dataset data = harmonic_frames(4000, 5, 3.0, 0.7, 2);
  data.forces = 1.2 * data.forces;  // a stiffer well than the one that sampled the frames
  const psm::VirialTemperature virial = psm::virial_temperature(data);
  EXPECT_NEAR(virial.kT, 1.2 * 0.7, 6 * virial.standard_error);
  EXPECT_GT(virial.deviation(0.7), psm::kForceCheckSigmas);
  EXPECT_NE(psm::describe_force_check(virial, 0.7).find("PSM learns the forces' distribution"),
            std::string::npos);
}

/// `frames` exact samples of a bond length r with density proportional to r² exp(-k (r - r0)² /
/// 2 kT), the radial law of a 3-D harmonic bond: Gaussian proposals accepted with (r / r_max)².
torch::Tensor harmonic_bond_lengths(int64_t frames, double k, double r0, double kT,
                                    torch::Generator& rng) {
  const double width = std::sqrt(kT / k), r_max = r0 + 8 * width;
  const torch::Tensor r = r0 + width * torch::randn({8 * frames}, rng, torch::kFloat64);
  const torch::Tensor keep = torch::rand({8 * frames}, rng, torch::kFloat64) < (r / r_max).square();
  return r.index({keep & (r > 0)}).slice(0, 0, frames);
}

/// Random unit vectors [frames, 3].
torch::Tensor random_directions(int64_t frames, torch::Generator& rng) {
  const torch::Tensor v = torch::randn({frames, 3}, rng, torch::kFloat64);
  return v / v.norm(2, -1, true);
}

/// A bent triatomic A-B-C with independent harmonic bonds (k 600 at 1.1 Å for A-B, k 300 at
/// 1.5 Å for B-C), exactly sampled at kT: the bond vectors are independent with the radial law
/// above. Returns positions [F, 3, 3] and the forces of bonds whose constants are
/// `force_scale_ab` and 1 times the sampling ones.
std::pair<torch::Tensor, torch::Tensor> triatomic_frames(int64_t frames, double kT,
                                                         double force_scale_ab, uint64_t seed) {
  torch::Generator rng = psm::make_generator(seed);
  const torch::Tensor r_ab = harmonic_bond_lengths(frames, 600.0, 1.1, kT, rng).unsqueeze(-1);
  const torch::Tensor r_bc = harmonic_bond_lengths(frames, 300.0, 1.5, kT, rng).unsqueeze(-1);
  const torch::Tensor u_ab = random_directions(frames, rng), u_bc = random_directions(frames, rng);
  const torch::Tensor b = torch::randn({frames, 3}, rng, torch::kFloat64);
  const torch::Tensor a = b + r_ab * u_ab, c = b + r_bc * u_bc;
  // F on A from its bond: -k (r - r0) u, u from B to A; B feels the opposite of both.
  const torch::Tensor f_a = -force_scale_ab * 600.0 * (r_ab - 1.1) * u_ab;
  const torch::Tensor f_c = -300.0 * (r_bc - 1.5) * u_bc;
  return {torch::stack({a, b, c}, 1), torch::stack({f_a, -f_a - f_c, f_c}, 1)};
}

TEST(ForceCheck, BondVirialTemperatureOfHarmonicBondsIsTheirKt) {
  const auto [positions, forces] = triatomic_frames(20000, 0.6, 1.0, 5);
  ASSERT_EQ(positions.size(0), 20000);
  const torch::Tensor ab = torch::tensor({{0, 1}}, torch::kInt64);
  const torch::Tensor bc = torch::tensor({{2, 1}}, torch::kInt64);  // either order
  for (const torch::Tensor& bonds : {ab, bc, torch::cat({ab, bc})}) {
    const psm::VirialTemperature bond = psm::bond_virial_temperature(positions, forces, bonds);
    EXPECT_EQ(bond.frames, 20000);
    EXPECT_GT(bond.standard_error, 0.0);
    EXPECT_LT(bond.deviation(0.6), 4.0) << bond.kT << " ± " << bond.standard_error;
  }
}

TEST(ForceCheck, BondVirialTemperatureFindsTheOneBondWhoseForcesDisagree) {
  // A-B's forces are 1.3 times as stiff as the spring that sampled it: along A-B the frames look
  // 1.3 times hotter than kT, B-C stays right.
  const auto [positions, forces] = triatomic_frames(20000, 0.6, 1.3, 6);
  const psm::VirialTemperature ab =
      psm::bond_virial_temperature(positions, forces, torch::tensor({{0, 1}}, torch::kInt64));
  EXPECT_NEAR(ab.kT, 1.3 * 0.6, 4 * ab.standard_error);
  EXPECT_GT(ab.deviation(0.6), psm::kForceCheckSigmas);
  const psm::VirialTemperature bc =
      psm::bond_virial_temperature(positions, forces, torch::tensor({{1, 2}}, torch::kInt64));
  EXPECT_LT(bc.deviation(0.6), 4.0);
}

TEST(ForceCheck, BondVirialTemperatureRejectsBadBonds) {
  const auto [positions, forces] = triatomic_frames(10, 0.6, 1.0, 7);
  EXPECT_PSM_ERROR(
      psm::bond_virial_temperature(positions, forces, torch::tensor({{0, 3}}, torch::kInt64)),
      "out of range for 3 atoms");
  EXPECT_PSM_ERROR(
      psm::bond_virial_temperature(positions, forces, torch::tensor({{1, 1}}, torch::kInt64)),
      "out of range");
  EXPECT_PSM_ERROR(
      psm::bond_virial_temperature(positions, forces, torch::zeros({0, 2}, torch::kInt64)),
      "[K, 2], K >= 1");
  EXPECT_PSM_ERROR(psm::bond_virial_temperature(positions.slice(2, 0, 2), forces.slice(2, 0, 2),
                                                torch::tensor({{0, 1}}, torch::kInt64)),
                   "[F, N, 3]");
  torch::Tensor overlapping = positions.clone();
  overlapping[3][0] = overlapping[3][1];
  EXPECT_PSM_ERROR(
      psm::bond_virial_temperature(overlapping, forces, torch::tensor({{0, 1}}, torch::kInt64)),
      "bonded atoms coincide");
}

/// Round-major chains (frame = round * chains + chain) in which each chain repeats one frame:
/// the extreme of correlated MD frames, `chains` independent frames worth.
torch::Tensor repeated_in_chains(const torch::Tensor& distinct, int64_t rounds) {
  return distinct.unsqueeze(0).expand({rounds, -1, -1, -1}).reshape({-1, distinct.size(1), 3});
}

TEST(ForceCheck, CorrelatedFramesOfAChainCountOnce) {
  const int64_t chains = 6, rounds = 50;
  const psm::Dataset distinct = harmonic_frames(chains, 5, 3.0, 0.7, 8);
  const torch::Tensor positions = repeated_in_chains(distinct.positions, rounds);
  const torch::Tensor forces = repeated_in_chains(distinct.forces, rounds);
  const torch::Tensor chain = torch::arange(chains * rounds, torch::kInt64) % chains;

  const psm::VirialTemperature independent = psm::virial_temperature(distinct);
  const psm::VirialTemperature spread = psm::virial_temperature(positions, forces, chain);
  EXPECT_EQ(spread.chains, chains);
  EXPECT_EQ(spread.frames, chains * rounds);
  EXPECT_NEAR(spread.kT, independent.kT, 1e-12);
  EXPECT_NEAR(spread.standard_error, independent.standard_error, 1e-12);
  // Taken as independent, the repeats would shrink the error by sqrt(rounds).
  const psm::VirialTemperature naive = psm::virial_temperature(positions, forces);
  EXPECT_EQ(naive.chains, 0);
  EXPECT_LT(naive.standard_error, 0.2 * spread.standard_error);
  EXPECT_NE(psm::describe_force_check(spread, 0.7).find("(spread of 6 chains)"), std::string::npos);

  const auto [bond_positions, bond_forces] = triatomic_frames(chains, 0.6, 1.0, 9);
  const torch::Tensor bonds = torch::tensor({{0, 1}, {1, 2}}, torch::kInt64);
  const psm::VirialTemperature bond_independent =
      psm::bond_virial_temperature(bond_positions, bond_forces, bonds);
  const psm::VirialTemperature bond_spread =
      psm::bond_virial_temperature(repeated_in_chains(bond_positions, rounds),
                                   repeated_in_chains(bond_forces, rounds), bonds, chain);
  EXPECT_EQ(bond_spread.chains, chains);
  EXPECT_NEAR(bond_spread.kT, bond_independent.kT, 1e-9);
  EXPECT_NEAR(bond_spread.standard_error, bond_independent.standard_error, 1e-9);
}

TEST(ForceCheck, FewerThanFourChainsAreTakenAsIndependentFrames) {
  const psm::Dataset data = harmonic_frames(30, 4, 2.0, 1.0, 10);
  const torch::Tensor three = torch::arange(30, torch::kInt64) % 3;
  const psm::VirialTemperature virial = psm::virial_temperature(data.positions, data.forces, three);
  EXPECT_EQ(virial.chains, 0);
  EXPECT_NEAR(virial.standard_error, psm::virial_temperature(data).standard_error, 1e-15);
  EXPECT_PSM_ERROR(psm::virial_temperature(data.positions, data.forces, three.slice(0, 0, 29)),
                   "chains must be [30]");
}

TEST(ForceCheck, FrameChainsComeFromASamplersProvenanceOnly) {
  psm::Dataset data = harmonic_frames(10, 2, 1.0, 1.0, 11);
  data.provenance = {{"sampler", "langevin-baoab"},
                     {"trajectories", 4},
                     {"frame_order", "round-major: frame = round * trajectories + trajectory"}};
  const torch::Tensor chains = psm::frame_chains(data);
  ASSERT_TRUE(chains.defined());
  EXPECT_TRUE(torch::equal(chains, torch::tensor({0, 1, 2, 3, 0, 1, 2, 3, 0, 1}, torch::kInt64)));
  EXPECT_EQ(psm::virial_temperature(data).chains, 4);

  data.provenance = {{"chains", 5}, {"frame_order", "round-major: frame = round * chains + chain"}};
  EXPECT_TRUE(torch::equal(psm::frame_chains(data), torch::arange(10, torch::kInt64) % 5));
  // A subset reorders frames: its source's order no longer holds.
  data.provenance = {{"subset", "limited"}, {"source", data.provenance}};
  EXPECT_FALSE(psm::frame_chains(data).defined());
  data.provenance = nlohmann::json();
  EXPECT_FALSE(psm::frame_chains(data).defined());
}

TEST(ForceCheck, IdenticalFramesWithZeroForcesAreFlagged) {
  psm::Dataset data = harmonic_frames(1, 3, 1.0, 1.0, 4);
  data.positions = data.positions.expand({3, 3, 3}).clone();
  data.forces = torch::zeros_like(data.positions);
  const psm::VirialTemperature virial = psm::virial_temperature(data);
  EXPECT_EQ(virial.standard_error, 0.0);
  EXPECT_EQ(virial.deviation(0.0), 0.0);
  EXPECT_GT(virial.deviation(1.0), psm::kForceCheckSigmas);
}

TEST(ForceCheck, NonFiniteEstimatesAreNotCalledConsistent) {
  const double inf = std::numeric_limits<double>::infinity();
  for (const psm::VirialTemperature& virial :
       {psm::VirialTemperature{.kT = 1.5e297, .standard_error = inf},
        psm::VirialTemperature{.kT = std::nan(""), .standard_error = std::nan("")}}) {
    const std::string line = psm::describe_force_check(virial, 1.0);
    EXPECT_NE(line.find("cannot be estimated"), std::string::npos) << line;
    EXPECT_EQ(line.find("consistent"), std::string::npos) << line;
    EXPECT_EQ(line.find("nan"), std::string::npos) << line;
  }
}

TEST(ForceCheck, NeedsForcesAndTwoFrames) {
  psm::Dataset data = harmonic_frames(1, 3, 1.0, 1.0, 3);
  EXPECT_PSM_ERROR(psm::virial_temperature(data), "needs >= 2 frames");
  data.forces = torch::Tensor();
  EXPECT_PSM_ERROR(psm::virial_temperature(data), "no forces");
}

/// The triatomic above as a molecule H-C-C in kcal/mol and Å, its frames at kT: the covalent
/// graph of most frames is the two springs (C-H 1.1 Å, C-C 1.5 Å).
psm::Dataset hcc_frames(int64_t frames, double kT, double force_scale_ch, uint64_t seed) {
  const auto [positions, forces] = triatomic_frames(frames, kT, force_scale_ch, seed);
  psm::Dataset data;
  data.positions = positions;
  data.forces = forces;
  data.species = {1, 6, 6};
  data.units = psm::Units::kcal_mol_angstrom;
  data.kT = kT;
  return data;
}

TEST(ThermalCheck, ReadsTheKineticTemperatureAndEveryBondType) {
  const psm::Dataset data = hcc_frames(20000, 0.6, 1.0, 8);
  torch::Generator rng = psm::make_generator(9);
  const torch::Tensor kinetic = 0.6 + 0.05 * torch::randn({8, 100}, rng, torch::kFloat64);
  const psm::ThermalCheck check = psm::check_thermal_equilibrium(data, kinetic);
  ASSERT_EQ(check.readings.size(), 3u);
  EXPECT_EQ(check.readings[0].name, "kinetic");
  EXPECT_EQ(check.readings[0].temperature.chains, 8);
  EXPECT_NEAR(check.readings[0].temperature.standard_error, 0.05 / std::sqrt(800.0), 1e-3);
  EXPECT_EQ(check.readings[1].name, "C-C");
  EXPECT_EQ(check.readings[2].name, "C-H");
  EXPECT_EQ(check.readings[2].bonds, 1);
  EXPECT_DOUBLE_EQ(check.target_kT, 0.6);
  EXPECT_TRUE(check.off_target().empty());
  const std::vector<std::string> lines = psm::describe_thermal_check(check);
  EXPECT_EQ(lines.back(), "at equilibrium: every thermometer within 3 standard errors");

  nlohmann::json provenance;
  psm::record_thermal_check(check, provenance);
  EXPECT_TRUE(provenance["at_equilibrium"].get<bool>());
  EXPECT_NEAR(provenance["thermometers"]["C-H"]["kT"].get<double>(), 0.6, 0.05);
}

TEST(ThermalCheck, NamesTheThermometersOffTarget) {
  // C-H's forces are 1.3 times the spring that sampled it (a stretch 1.3 times hotter than kT),
  // and the kinetic temperature runs cold: both are named, C-C is not.
  const psm::Dataset data = hcc_frames(20000, 0.6, 1.3, 10);
  torch::Generator rng = psm::make_generator(11);
  const torch::Tensor kinetic = 0.55 + 0.05 * torch::randn({8, 100}, rng, torch::kFloat64);
  const psm::ThermalCheck check = psm::check_thermal_equilibrium(data, kinetic);
  const std::vector<psm::ThermometerReading> off = check.off_target();
  ASSERT_EQ(off.size(), 2u);
  EXPECT_EQ(off[0].name, "kinetic");
  EXPECT_EQ(off[1].name, "C-H");
  EXPECT_EQ(psm::describe_thermal_check(check).back(),
            "NOT at equilibrium: kinetic, C-H beyond 3 standard errors (MD: a longer burn-in, more "
            "friction or a shorter time step; frames of another potential than the forces': no "
            "remedy)");
}

TEST(ThermalCheck, HasNoBondThermometersWithoutForcesOrForNonMolecules) {
  psm::Dataset data = hcc_frames(100, 0.6, 1.0, 12);
  data.forces = torch::Tensor();
  EXPECT_TRUE(psm::check_thermal_equilibrium(data).readings.empty());
  EXPECT_TRUE(psm::describe_thermal_check(psm::check_thermal_equilibrium(data)).empty());
  psm::Dataset reduced = hcc_frames(100, 0.6, 1.0, 12);
  reduced.units = psm::Units::reduced;
  EXPECT_TRUE(psm::check_thermal_equilibrium(reduced).readings.empty());
}

}  // namespace
