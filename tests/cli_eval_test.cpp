#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "psm/core/random.h"
#include "psm/core/remove_tree.h"
#include "psm/eval/metrics.h"
#include "psm/io/dataset.h"
#include "psm/systems/potential.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using psm::test::run_psm;

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

/// LJ13-shaped frames: a jittered cubic lattice (no overlaps), spacing 1.1.
psm::Dataset lattice_frames(int64_t frames, torch::Generator& rng) {
  const torch::Tensor grid =
      torch::stack(torch::meshgrid({torch::arange(3), torch::arange(3), torch::arange(2)}, "ij"),
                   -1)
          .reshape({-1, 3})
          .slice(0, 0, 13)
          .to(torch::kFloat64);
  psm::Dataset data;
  data.positions =
      1.1 * grid.unsqueeze(0) + 0.05 * torch::randn({frames, 13, 3}, rng, torch::kFloat64);
  data.species = std::vector<int64_t>(13, 0);
  return data;
}

class CliEval : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("psm_cli_eval_{}", ::getpid());
    psm::remove_tree(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { psm::remove_tree(dir_); }
  fs::path dir_;
};

TEST_F(CliEval, EnergiesFromFilesShiftedByOne) {
  torch::Generator rng = psm::make_generator(1);
  psm::Dataset reference = lattice_frames(60, rng);
  reference.energies = torch::randn({60}, rng, torch::kFloat64);
  psm::Dataset samples = reference;
  samples.energies = reference.energies + 1.0;
  psm::save_dataset(dir_ / "ref.npz", reference);
  psm::save_dataset(dir_ / "samples.npz", samples);
  const auto [code, output] = run_psm(fmt::format(
      "eval --samples {} --reference {} --out {} --no-plots", (dir_ / "samples.npz").string(),
      (dir_ / "ref.npz").string(), (dir_ / "out").string()));
  ASSERT_EQ(code, 0) << output;
  EXPECT_NE(output.find("energy W2 (ε)                            1\n"), std::string::npos)
      << output;
  const nlohmann::json json = read_json(dir_ / "out" / "metrics.json");
  const nlohmann::json& model = json["models"][0];
  EXPECT_NEAR(model["energy_w1"].get<double>(), 1.0, 1e-12);
  EXPECT_NEAR(model["energy_w2_squared"].get<double>(), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(model["distance_tvd"].get<double>(), 0.0);
  EXPECT_GT(model["outlier_fraction"].get<double>(), 0.0);
  EXPECT_TRUE(fs::exists(dir_ / "out" / "report.md"));
  EXPECT_FALSE(fs::exists(dir_ / "out" / "energy_histogram.png"));
}

TEST_F(CliEval, EnergiesComputedWithTheSystemWhenFilesLackThem) {
  torch::Generator rng = psm::make_generator(2);
  const psm::Dataset reference = lattice_frames(40, rng);
  const psm::Dataset samples = lattice_frames(50, rng);
  psm::save_dataset(dir_ / "ref.npz", reference);
  psm::save_dataset(dir_ / "samples.npz", samples);
  const std::string files = fmt::format("--samples {} --reference {} --out {} --no-plots --n 40",
                                        (dir_ / "samples.npz").string(),
                                        (dir_ / "ref.npz").string(), (dir_ / "out").string());
  const auto [failed, message] = run_psm("eval " + files);
  EXPECT_EQ(failed, 1);
  EXPECT_NE(message.find("no energies"), std::string::npos) << message;

  const auto [code, output] = run_psm("eval " + files + " --system lj13");
  ASSERT_EQ(code, 0) << output;
  const auto system = psm::make_system({{"name", "lj13"}});
  const torch::Tensor e_ref = system->evaluate(reference.positions, {.forces = false}).energy;
  const torch::Tensor e_gen =
      system->evaluate(samples.positions.slice(0, 0, 40), {.forces = false}).energy;
  const nlohmann::json model = read_json(dir_ / "out" / "metrics.json")["models"][0];
  EXPECT_EQ(model["n_generated"], 40);
  EXPECT_NEAR(model["energy_w1"].get<double>(), psm::wasserstein_1d(e_gen, e_ref, 1.0), 1e-9);
}

/// Ethanol (tests/data/ethanol.xyz) with 0.02 Å noise, in kcal/mol and Å with made-up energies.
psm::Dataset ethanol_frames(int64_t frames, torch::Generator& rng) {
  psm::Dataset data =
      psm::load_dataset(psm::test::data_path("ethanol.xyz"), {.temperature_kelvin = 500.0});
  data.positions = data.positions + 0.02 * torch::randn({frames, 9, 3}, rng, torch::kFloat64);
  data.energies = torch::randn({frames}, rng, torch::kFloat64);
  return data;
}

TEST_F(CliEval, MoleculesGetBondTorsionAndXtbMetrics) {
  torch::Generator rng = psm::make_generator(3);
  const psm::Dataset reference = ethanol_frames(30, rng);
  psm::Dataset samples = reference;
  // H3 pulled 1.5 Å away from O2 in the first 3 frames: 10% of the graphs broken.
  const torch::Tensor oh = samples.positions.select(1, 3) - samples.positions.select(1, 2);
  samples.positions = samples.positions.clone();
  samples.positions.slice(0, 0, 3).select(1, 3).add_(1.5 * oh.slice(0, 0, 3) /
                                                     oh.slice(0, 0, 3).norm(2, -1, true));
  psm::save_dataset(dir_ / "ref.npz", reference);
  psm::save_dataset(dir_ / "samples.npz", samples);
  const std::string files =
      fmt::format("--samples {} --reference {} --out {}", (dir_ / "samples.npz").string(),
                  (dir_ / "ref.npz").string(), (dir_ / "out").string());
#ifdef PSM_WITH_XTB
  const auto [code, output] = run_psm("--threads 1 eval " + files + " --xtb-frames 5");
#else
  const auto [code, output] = run_psm("eval " + files + " --xtb-frames 0");
#endif
  ASSERT_EQ(code, 0) << output;
  EXPECT_NE(output.find("intact bond graph fraction               0.9\n"), std::string::npos)
      << output;
  const nlohmann::json molecular =
      read_json(dir_ / "out" / "metrics.json")["models"][0]["molecular"];
  EXPECT_EQ(molecular["bonds"], 8);
  EXPECT_EQ(molecular["torsions"], 2);
  EXPECT_DOUBLE_EQ(molecular["intact_fraction"].get<double>(), 0.9);
  // The stretched frames are not intact and are left out of the bond and torsion metrics: the
  // 27 measured are reference frames, so every divergence is small.
  EXPECT_LT(molecular["bond_length_js"]["O2-H3"].get<double>(), 0.05);
  EXPECT_LT(molecular["bond_length_js_max"].get<double>(), 0.05);
  EXPECT_LT(molecular["torsion_js_max"].get<double>(), 0.05);
#ifdef PSM_WITH_XTB
  // Frames 0, 7, 14, 22, 29: frame 0 is stretched, the others are the reference's own frames.
  const nlohmann::json& xtb = molecular["potential_energy"];
  EXPECT_EQ(xtb["generated"], 5);
  EXPECT_EQ(xtb["reference"], 5);
  EXPECT_GT(xtb["w1"].get<double>(), 0.0);
  EXPECT_NE(output.find("xtb energy W1 (kcal/mol)"), std::string::npos) << output;
#endif
  // Plots: the bond with the largest JS (O2-H3) and both torsions are drawn.
  EXPECT_TRUE(fs::exists(dir_ / "out" / "bond_length_O2-H3.png"));
  EXPECT_TRUE(fs::exists(dir_ / "out" / "torsion_C0-C1-O2-H3.png"));
  std::ifstream report(dir_ / "out" / "report.md");
  const std::string markdown((std::istreambuf_iterator<char>(report)), {});
  EXPECT_NE(markdown.find("## Molecular metrics"), std::string::npos);
}

// Samples of a model trained on DFT frames carry no energies and no system: the structural
// metrics still come out, the energy ones are marked missing.
TEST_F(CliEval, MoleculesWithoutEnergiesGetStructuralMetrics) {
  torch::Generator rng = psm::make_generator(5);
  const psm::Dataset reference = ethanol_frames(20, rng);
  psm::Dataset samples = reference;
  samples.energies = torch::Tensor();
  psm::save_dataset(dir_ / "ref.npz", reference);
  psm::save_dataset(dir_ / "samples.npz", samples);
  const auto [code, output] = run_psm(fmt::format(
      "eval --samples {} --reference {} --out {} --no-plots --xtb-frames 0",
      (dir_ / "samples.npz").string(), (dir_ / "ref.npz").string(), (dir_ / "out").string()));
  ASSERT_EQ(code, 0) << output;
  EXPECT_NE(output.find("energy metrics skipped"), std::string::npos) << output;
  EXPECT_NE(output.find("- (no energies)"), std::string::npos) << output;
  EXPECT_NE(output.find("intact bond graph fraction               1\n"), std::string::npos)
      << output;
  const nlohmann::json model = read_json(dir_ / "out" / "metrics.json")["models"][0];
  EXPECT_FALSE(model.contains("energy_w1") && !model["energy_w1"].is_null()) << model.dump();
  EXPECT_DOUBLE_EQ(model["distance_tvd"].get<double>(), 0.0);
}

#ifdef PSM_WITH_XTB
// Generated molecules without energies get them from the file's system (GFN2-xTB); a sample
// with overlapping atoms, which xTB refuses, is a failure of the model: counted, not fatal.
TEST_F(CliEval, SamplesThePotentialRejectsAreCountedNotFatal) {
  torch::Generator rng = psm::make_generator(6);
  const psm::Dataset reference = ethanol_frames(10, rng);
  psm::Dataset samples = reference;
  samples.energies = torch::Tensor();
  samples.system = {{"name", "xtb"}, {"species", samples.species}};
  samples.positions = samples.positions.clone();
  samples.positions[0][5] = samples.positions[0][0] + 0.1;  // H5 0.17 Å from C0
  psm::save_dataset(dir_ / "ref.npz", reference);
  psm::save_dataset(dir_ / "samples.npz", samples);
  const auto [code, output] = run_psm(fmt::format(
      "--threads 1 eval --samples {} --reference {} --out {} --no-plots --xtb-frames 0",
      (dir_ / "samples.npz").string(), (dir_ / "ref.npz").string(), (dir_ / "out").string()));
  ASSERT_EQ(code, 0) << output;
  EXPECT_NE(output.find("the potential failed on 1 of 10 frames"), std::string::npos) << output;
  const nlohmann::json model = read_json(dir_ / "out" / "metrics.json")["models"][0];
  EXPECT_EQ(model["energy_failures"], 1);
  EXPECT_EQ(model["n_generated"], 10);
}
#endif

TEST_F(CliEval, MismatchedAtomCountsNameBothFiles) {
  torch::Generator rng = psm::make_generator(4);
  const psm::Dataset reference = ethanol_frames(5, rng);
  psm::Dataset samples = reference;
  samples.positions = reference.positions.slice(1, 0, 8).contiguous();
  samples.species.pop_back();
  psm::save_dataset(dir_ / "ref.npz", reference);
  psm::save_dataset(dir_ / "samples.npz", samples);
  const auto [code, output] =
      run_psm(fmt::format("eval --samples {} --reference {} --no-plots",
                          (dir_ / "samples.npz").string(), (dir_ / "ref.npz").string()));
  EXPECT_EQ(code, 1);
  EXPECT_NE(output.find("samples.npz has 8 atoms per frame but " + (dir_ / "ref.npz").string() +
                        " has 9"),
            std::string::npos)
      << output;
}

}  // namespace
