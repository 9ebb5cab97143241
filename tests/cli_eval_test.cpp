#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "psm/core/random.h"
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
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
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

}  // namespace
