#include <gtest/gtest.h>

#include "psm/core/units.h"
#include "psm/io/file_bytes.h"
#include "psm/io/xyz.h"
#include "test_util.h"

namespace {

// Two water frames exactly as ase.io.write(..., format="extxyz") lays them out for Atoms with a
// SinglePointCalculator(energy=..., forces=...): eV and Å, no units key.
constexpr std::string_view ase_water = R"(3
Properties=species:S:1:pos:R:3:forces:R:3 energy=-14.2 pbc="F F F"
O        0.00000000       0.00000000       0.11926200       0.00000000       0.00000000      -0.10000000
H        0.00000000       0.76323900      -0.47704700       0.00000000       0.05000000       0.05000000
H        0.00000000      -0.76323900      -0.47704700       0.00000000      -0.05000000       0.05000000
3
Properties=species:S:1:pos:R:3:forces:R:3 energy=-14.25 pbc="F F F"
O        0.00000000       0.00000000       0.12000000       0.00000000       0.00000000      -0.20000000
H        0.00000000       0.77000000      -0.48000000       0.00000000       0.10000000       0.10000000
H        0.00000000      -0.77000000      -0.48000000       0.00000000      -0.10000000       0.10000000
)";

TEST(ExtxyzInfo, ParsesCommentLinesLikeAse) {
  const auto info = psm::parse_extxyz_info(
      R"(Properties=species:S:1:pos:R:3 energy=-1.5 pbc="F F F" name='a b' flag )"
      R"(Lattice="1 0 0 0 1 0 0 0 1" quoted="say \"hi\"" cell={1 2} list=[3 4] key =value)");
  EXPECT_EQ(info.at("Properties"), "species:S:1:pos:R:3");
  EXPECT_EQ(info.at("energy"), "-1.5");
  EXPECT_EQ(info.at("pbc"), "F F F");
  EXPECT_EQ(info.at("name"), "a b");
  EXPECT_EQ(info.at("flag"), "T");
  EXPECT_EQ(info.at("Lattice"), "1 0 0 0 1 0 0 0 1");
  EXPECT_EQ(info.at("quoted"), R"(say "hi")");
  EXPECT_EQ(info.at("cell"), "1 2");
  EXPECT_EQ(info.at("list"), "3 4");
  EXPECT_EQ(info.at("key"), "value");
  EXPECT_EQ(info.size(), 10u);
}

TEST(Extxyz, ReadsAseFilesInElectronvolts) {
  const psm::Dataset data = psm::parse_extxyz(ase_water, "water.xyz", {.temperature_kelvin = 300});
  data.validate("water.xyz");
  const double eV = psm::constants::electronvolt_in_kcal_mol;
  EXPECT_EQ(data.species, (std::vector<int64_t>{8, 1, 1}));
  EXPECT_EQ(data.units, psm::Units::kcal_mol_angstrom);
  EXPECT_EQ(data.positions.sizes(), (std::vector<int64_t>{2, 3, 3}));
  EXPECT_DOUBLE_EQ(data.positions[1][1][1].item<double>(), 0.77);
  EXPECT_DOUBLE_EQ(data.positions[0][2][2].item<double>(), -0.477047);
  EXPECT_DOUBLE_EQ(data.energies[0].item<double>(), -14.2 * eV);
  EXPECT_DOUBLE_EQ(data.energies[1].item<double>(), -14.25 * eV);
  EXPECT_DOUBLE_EQ(data.forces[1][0][2].item<double>(), -0.2 * eV);
  EXPECT_DOUBLE_EQ(data.kT, psm::kT_from_kelvin(300));
  EXPECT_EQ(data.temperature_kelvin, 300.0);
}

TEST(Extxyz, ReadsAseKtInElectronvoltsAndPlainXyz) {
  const psm::Dataset data = psm::parse_extxyz("2\nkT=0.025\nH 0 0 0\nH 0 0 0.74\n", "h2.xyz");
  EXPECT_DOUBLE_EQ(data.kT, 0.025 * psm::constants::electronvolt_in_kcal_mol);
  EXPECT_FALSE(data.has_forces());
  EXPECT_FALSE(data.has_energies());
  EXPECT_DOUBLE_EQ(data.positions[0][1][2].item<double>(), 0.74);
}

psm::Dataset model_particles() {
  psm::Dataset data;
  data.positions = torch::randn({3, 4, 3}, torch::kFloat64);
  data.forces = torch::randn({3, 4, 3}, torch::kFloat64);
  data.energies = torch::tensor({-1.25, 2.0, 1e-7}, torch::kFloat64);
  data.species = {0, 0, 0, 0};
  data.units = psm::Units::reduced;
  data.kT = 1.0;
  data.sampled_kT = 2.5;
  data.system = {{"name", "lj"}, {"n", 4}};
  data.provenance = {{"command", R"(psm simulate --out "a b.npz" C:\tmp)"}, {"seed", 7}};
  return data;
}

TEST(Extxyz, WritesAseLayout) {
  psm::Dataset data = model_particles();
  data.positions[0][0] = torch::tensor({0.0, 1.5, -22.25}, torch::kFloat64);
  data.forces[0][0] = torch::tensor({1.0, -2.0, 3.0}, torch::kFloat64);
  const std::string text = psm::extxyz_string(data);
  const size_t third_newline = text.find('\n', text.find('\n', text.find('\n') + 1) + 1);
  EXPECT_EQ(
      text.substr(0, third_newline + 1),
      std::string(
          "4\n"
          "Properties=species:S:1:pos:R:3:forces:R:3 units=reduced kT=1.0 sampled_kT=2.5 "
          R"(system="_JSON {\"n\":4,\"name\":\"lj\"}" )"
          R"(provenance="_JSON {\"command\":\"psm simulate --out \\\"a b.npz\\\" C:\\\\tmp\",\"seed\":7}" )"
          "energy=-1.25 pbc=\"F F F\"\n"
          "X        0.00000000       1.50000000     -22.25000000       1.00000000      -2.00000000"
          "       3.00000000\n"));
}

TEST(Extxyz, RoundTripsPsmDatasets) {
  const psm::Dataset data = model_particles();
  const psm::Dataset back = psm::parse_extxyz(psm::extxyz_string(data), "lj4.xyz");
  back.validate("lj4.xyz");
  EXPECT_EQ(back.species, data.species);
  EXPECT_EQ(back.units, psm::Units::reduced);
  EXPECT_EQ(back.kT, 1.0);
  EXPECT_EQ(back.sampled_kT, 2.5);
  EXPECT_FALSE(back.temperature_kelvin.has_value());
  EXPECT_EQ(back.system, data.system);
  EXPECT_EQ(back.provenance, data.provenance);
  // Positions and forces carry ASE's 8 decimals; energies are exact.
  EXPECT_LE((back.positions - data.positions).abs().max().item<double>(), 5.1e-9);
  EXPECT_LE((back.forces - data.forces).abs().max().item<double>(), 5.1e-9);
  EXPECT_TRUE(torch::equal(back.energies, data.energies));

  psm::Dataset molecule;
  molecule.positions = torch::randn({2, 3, 3}, torch::kFloat64);
  molecule.species = {8, 1, 1};
  molecule.units = psm::Units::kcal_mol_angstrom;
  molecule.kT = psm::kT_from_kelvin(500);
  molecule.temperature_kelvin = 500;
  const psm::Dataset molecule_back = psm::parse_extxyz(psm::extxyz_string(molecule), "w.xyz");
  EXPECT_EQ(molecule_back.units, psm::Units::kcal_mol_angstrom);
  EXPECT_EQ(molecule_back.kT, molecule.kT);
  EXPECT_EQ(molecule_back.temperature_kelvin, 500.0);
  EXPECT_EQ(molecule_back.species, molecule.species);
}

TEST(Extxyz, RejectsBadFiles) {
  const auto parse = [](std::string_view text) {
    return psm::parse_extxyz(text, "bad.xyz", {.temperature_kelvin = 300});
  };
  EXPECT_PSM_ERROR(parse("two\n\nH 0 0 0\n"), "bad.xyz", "line 1", "atom count", "'two'");
  EXPECT_PSM_ERROR(parse("2\n\nH 0 0 0\n"), "bad.xyz", "line 2", "file ends after 1 of 2");
  EXPECT_PSM_ERROR(parse("1\n\nH 0 0\n"), "bad.xyz", "line 3", "expected 4 columns, got 3");
  EXPECT_PSM_ERROR(parse("1\n\nQq 0 0 0\n"), "bad.xyz", "line 3", "unknown element symbol 'Qq'");
  EXPECT_PSM_ERROR(parse("1\n\nH 0 zero 0\n"), "bad.xyz", "line 3", "'zero' is not a number");
  EXPECT_PSM_ERROR(parse("1\npbc=\"T T T\" Lattice=\"5 0 0 0 5 0 0 0 5\"\nH 0 0 0\n"), "bad.xyz",
                   "periodic frames are not supported");
  EXPECT_PSM_ERROR(parse("1\nLattice=\"5 0 0 0 5 0 0 0 5\"\nH 0 0 0\n"), "bad.xyz", "periodic");
  EXPECT_PSM_ERROR(parse("1\n\nH 0 0 0\n1\n\nO 0 0 0\n"), "bad.xyz", "frame 2", "species differ");
  EXPECT_PSM_ERROR(parse("1\nenergy=1\nH 0 0 0\n1\n\nH 0 0 0\n"), "bad.xyz", "frame 2",
                   "energy present in some frames only");
  EXPECT_PSM_ERROR(parse("1\nProperties=species:S:1:pos:Q:3\nH 0 0 0\n"), "bad.xyz",
                   "unknown type 'Q'");
  EXPECT_PSM_ERROR(parse("1\nunits=furlongs\nH 0 0 0\n"), "bad.xyz", "unknown units 'furlongs'");
  EXPECT_PSM_ERROR(parse(""), "bad.xyz", "no frames");
  // A count the file cannot hold fails before any memory is reserved for it.
  EXPECT_PSM_ERROR(parse("1000000000000\n\nH 0 0 0\n"), "bad.xyz", "line 1",
                   "the count line says 1000000000000 atoms, but the 9 bytes left in the file "
                   "hold at most 2 atom lines");
  EXPECT_PSM_ERROR(psm::parse_extxyz("1\n\nH 0 0 0\n", "notemp.xyz"), "notemp.xyz",
                   "no kT or temperature_kelvin");
}

class ExtxyzFiles : public psm::test::ScratchDir {};

TEST_F(ExtxyzFiles, TwoDimensionalDatasetsAreRefusedWithoutAFile) {
  psm::Dataset dw4;
  dw4.positions = torch::zeros({2, 4, 2}, torch::kFloat64);
  dw4.species = {0, 0, 0, 0};
  EXPECT_PSM_ERROR(psm::write_extxyz(path("dw4.xyz"), dw4), "dw4.xyz", "2-D");
  EXPECT_EQ(file_count(), 0);
}

TEST_F(ExtxyzFiles, WriteAndReadFile) {
  const psm::Dataset data = model_particles();
  psm::write_extxyz(path("lj4.extxyz"), data);
  const psm::Dataset back = psm::read_extxyz(path("lj4.extxyz"));
  EXPECT_EQ(back.num_frames(), 3);
  EXPECT_PSM_ERROR(psm::read_extxyz(path("absent.xyz")), "absent.xyz", "no such file");
}

}  // namespace
