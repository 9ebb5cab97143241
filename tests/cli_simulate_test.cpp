// `psm simulate` and `psm validate` through the psm binary: output files, resume, and one-line
// errors for impossible options.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>

#include "test_util.h"
#include "psm/core/random.h"
#include "psm/io/dataset.h"
#include "psm/io/npy.h"
#include "psm/simulate/metropolis.h"
#include "psm/simulate/presets.h"
#include "psm/systems/potential.h"

namespace {

using psm::test::run_psm;
using psm::test::RunResult;

class CliSimulate : public psm::test::ScratchDir {
 protected:
  /// A small, fast DW4 run; `extra` adds or overrides options.
  RunResult simulate(const std::string& out, const std::string& extra = "") const {
    return run_psm(
        "--threads 1 simulate --system dw4 --chains 8 --burn-in 50 --thin 2 "
        "--no-progress --out " +
        path(out).string() + " " + extra);
  }
};

TEST_F(CliSimulate, WritesDatasetWithForcesAndPrintsSummary) {
  const RunResult result = simulate("dw4.npz", "--samples 100 --seed 3");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const std::string line : {"acceptance", "tau(energy)", "CPU s / indep.",
                                 "= sampling CPU seconds / (kept frames / tau)"}) {
    EXPECT_NE(result.output.find(line), std::string::npos) << line << "\n" << result.output;
  }
  const psm::Dataset data = psm::load_dataset(path("dw4.npz"));
  ASSERT_EQ(data.num_frames(), 100);
  ASSERT_TRUE(data.has_forces());
  const auto system = psm::make_system(data.system);
  const auto evaluation = system->evaluate(data.positions);
  EXPECT_TRUE(torch::allclose(data.energies, evaluation.energy));
  EXPECT_TRUE(torch::allclose(data.forces, evaluation.forces));
  EXPECT_EQ(data.provenance["sampler"], "metropolis");
  EXPECT_EQ(data.provenance["seed"], 3);
  EXPECT_DOUBLE_EQ(data.kT, 1.0);
}

TEST_F(CliSimulate, LangevinWithoutForces) {
  const RunResult result =
      simulate("langevin.npz", "--samples 40 --sampler langevin --time-step 0.01 --no-forces");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("kinetic kT"), std::string::npos) << result.output;
  const psm::Dataset data = psm::load_dataset(path("langevin.npz"));
  EXPECT_EQ(data.provenance["sampler"], "langevin-baoab");
  EXPECT_FALSE(data.has_forces());
}

TEST_F(CliSimulate, ResumeContinuesTheRunExactly) {
  const std::string state = path("state.pt").string();
  ASSERT_EQ(simulate("first.npz", "--samples 40 --checkpoint " + state).exit_code, 0);
  const RunResult resumed = simulate("resumed.npz", "--samples 80 --resume --checkpoint " + state);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  ASSERT_EQ(simulate("whole.npz", "--samples 80").exit_code, 0);
  const auto a = psm::load_dataset(path("resumed.npz")), b = psm::load_dataset(path("whole.npz"));
  EXPECT_TRUE(torch::equal(a.positions, b.positions));
  EXPECT_TRUE(torch::equal(a.forces, b.forces));
}

TEST_F(CliSimulate, ImpossibleOptionsGiveOneLineErrorsAndNoOutput) {
  const std::string out = " --out " + path("bad.npz").string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--system dw4 --samples -5", "--samples must be positive, got -5"},
      {"--system dw4 --kT 0", "--kT must be positive, got 0"},
      {"--system dw4 --thin 0", "thin must be positive, got 0"},
      {"--system dw4 --temperature 300", "--temperature is for molecular systems"},
      {"--system nosuch", "unknown system 'nosuch'"},
  };
  for (const auto& [options, message] : cases) {
    const RunResult result = run_psm("simulate " + options + out);
    EXPECT_EQ(result.exit_code, 1) << options;
    EXPECT_EQ(result.output.rfind("psm simulate: error: ", 0), 0) << result.output;
    EXPECT_NE(result.output.find(message), std::string::npos) << options << "\n" << result.output;
    EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
  }
  EXPECT_EQ(file_count(), 0);
}

TEST_F(CliSimulate, ValidateComparesWithAReferenceFile) {
  // A reference in the layout of the shared files, [F, N * D] float32, drawn by psm itself.
  const auto system = psm::make_system({{"name", "dw4"}});
  psm::MetropolisSampler sampler(
      *system, {.chains = 8, .burn_in = 50, .thin = 2, .samples = 400, .forces = false, .seed = 1});
  auto generator = psm::make_generator(1);
  auto state = sampler.start(psm::lattice_configurations(*system, 8, 4.0, generator));
  sampler.run(state);
  const auto reference = sampler.dataset(state).positions;
  psm::write_npy(path("reference.npy"), reference.reshape({400, 8}).to(torch::kFloat32));

  const RunResult result = run_psm(
      "--threads 1 validate --system dw4 --chains 8 --burn-in 50 --thin 2 --no-progress --seed 2 "
      "--reference " +
      path("reference.npy").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const std::string line : {"psm samples        800 (8 chains", "energy W1",
                                 "psm half vs half", "standard errors", "CPU s / indep."}) {
    EXPECT_NE(result.output.find(line), std::string::npos) << line << "\n" << result.output;
  }
  const RunResult wrong_shape =
      run_psm("validate --system lj13 --no-progress --reference " + path("reference.npy").string());
  EXPECT_EQ(wrong_shape.exit_code, 1);
  EXPECT_NE(wrong_shape.output.find("expected [frames, 39] positions of lj13"), std::string::npos)
      << wrong_shape.output;
}

}  // namespace
