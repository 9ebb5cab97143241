#include <gtest/gtest.h>

#include "psm/core/units.h"
#include "psm/io/dataset.h"
#include "test_util.h"

namespace {

using psm::test::run_psm;
using psm::test::RunResult;

int64_t line_count(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

class CliData : public psm::test::ScratchDir {};

TEST_F(CliData, InfoSummarisesADataset) {
  psm::Dataset data;
  // Two ethanol frames: the file's geometry and a copy shifted by 0.01 Å.
  const psm::Dataset molecule =
      psm::load_dataset(psm::test::data_path("ethanol.xyz"), {.temperature_kelvin = 500.0});
  data.positions = torch::cat({molecule.positions, molecule.positions + 0.01});
  data.forces = torch::zeros({2, 9, 3}, torch::kFloat64);
  data.forces[0][0][0] = 3.0;
  data.forces[1][4] = torch::tensor({0.0, 3.0, 4.0}, torch::kFloat64);  // |F| = 5
  data.energies = torch::tensor({-2.0, 4.0}, torch::kFloat64);
  data.species = {6, 6, 8, 1, 1, 1, 1, 1, 1};
  data.units = psm::Units::kcal_mol_angstrom;
  data.temperature_kelvin = 500.0;
  data.kT = psm::kT_from_kelvin(500.0);
  data.provenance = {{"seed", 11}};
  psm::save_dataset(path("ethanol.npz"), data);

  const RunResult result = run_psm("data info " + path("ethanol.npz").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const std::string line :
       {"frames      2\n", "atoms       9\n", "dim         3\n", "species     C2H6O\n",
        "units       kcal/mol,angstrom\n", "kT          0.993602 (500 K)\n",
        "energy      min -2.000000  mean 1.000000  std 3.000000  max 4.000000\n",
        "|F|         min 0.000000  max 5.000000  rms 1.374369\n",  // sqrt((9 + 25) / 18)
        "provenance  {\"seed\":11}\n", "bond kT     C-C ", "            C-H ", "            C-O ",
        "            H-O "}) {
    EXPECT_NE(result.output.find(line), std::string::npos) << line << "\n" << result.output;
  }
}

TEST_F(CliData, BadOptionAndMissingFileFailWithOneLine) {
  const RunResult bogus = run_psm("data info --bogus " + path("x.npz").string());
  EXPECT_NE(bogus.exit_code, 0);
  EXPECT_EQ(line_count(bogus.output), 1) << bogus.output;
  EXPECT_NE(bogus.output.find("--bogus"), std::string::npos) << bogus.output;

  const RunResult missing = run_psm("data info " + path("missing.npz").string());
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_EQ(line_count(missing.output), 1) << missing.output;
  EXPECT_NE(missing.output.find("missing.npz: no such file"), std::string::npos) << missing.output;
}

TEST_F(CliData, MoleculeFromSmilesFeedsSimulate) {
#ifndef PSM_WITH_RDKIT
  GTEST_SKIP() << "built without RDKit";
#endif
  const RunResult made =
      run_psm("data molecule --smiles CCO --seed 3 --out " + path("ethanol.xyz").string());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  EXPECT_NE(made.output.find("C2H6O (9 atoms), RDKit ETKDGv3 seed 3, force field MMFF94"),
            std::string::npos)
      << made.output;
  const psm::Dataset molecule =
      psm::load_dataset(path("ethanol.xyz"), {.temperature_kelvin = 500.0});
  EXPECT_EQ(molecule.num_atoms(), 9);
#ifdef PSM_WITH_XTB
  const RunResult simulated =
      run_psm("--threads 1 simulate --system xtb --molecule " + path("ethanol.xyz").string() +
              " --samples 2 --chains 1 --burn-in 2 --thin 1 --no-progress --out " +
              path("ethanol.npz").string());
  ASSERT_EQ(simulated.exit_code, 0) << simulated.output;
  EXPECT_EQ(psm::load_dataset(path("ethanol.npz")).num_frames(), 2);
#endif
  const RunResult bad = run_psm("data molecule --smiles 'C1CC' --out " + path("bad.xyz").string());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("SMILES 'C1CC': not a valid molecule"), std::string::npos)
      << bad.output;
  EXPECT_EQ(line_count(bad.output), 1) << bad.output;
  EXPECT_FALSE(std::filesystem::exists(path("bad.xyz")));
}

}  // namespace
