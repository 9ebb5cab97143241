// `psm train` and `psm sample` through the binary, on a tiny dataset file made here.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "psm/core/run_lock.h"
#include "psm/io/dataset.h"
#include "psm/train/checkpoint.h"
#include "test_util.h"
#include "train_test_util.h"

namespace fs = std::filesystem;

namespace {

using psm::test::run_psm;

/// A scratch directory holding a 48-frame spring-triangle dataset and a tiny training config.
class TrainCli : public psm::test::ScratchDir {
 protected:
  void SetUp() override {
    ScratchDir::SetUp();
    psm::save_dataset(path("triangle.npz"), psm::test::spring_triangle(48, 9));
    std::ofstream(path("run.toml"))
        << "threads = 1\n"
        << "[data]\ntrain = \"" << path("triangle.npz").string()
        << "\"\nvalidation_fraction = 0.25\n"
        << "[model]\nlayers = 2\nwidth = 8\nnoise_features = 4\n"
        << "[diffusion]\nsigma_min = 0.01\nsigma_max = 3.0\n"
        << "[train]\nsteps = 6\nbatch_size = 8\nwarmup_steps = 2\n"
        << "checkpoint_every = 3\nvalidation_every = 3\nlog_every = 3\n";
  }
};

TEST_F(TrainCli, TrainsResumesAndSamples) {
  const fs::path run = path("run");
  const fs::path checkpoint = run / "checkpoint.pt";
  const std::string train = "--threads 1 train --no-progress --config " +
                            path("run.toml").string() + " --out " + run.string();
  psm::test::RunResult r = run_psm(train);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("sigma_data"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("sigma_c from forces"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("parameters"), std::string::npos) << r.output;
  ASSERT_TRUE(fs::exists(checkpoint));
  ASSERT_TRUE(fs::exists(run / "metrics.jsonl"));
  ASSERT_TRUE(fs::exists(run / "config.toml"));
  EXPECT_EQ(psm::read_checkpoint_info(checkpoint).step, 6);

  // A second run into the same directory must not overwrite it silently.
  r = run_psm(train);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--resume"), std::string::npos) << r.output;

  // Resume with more steps.
  r = run_psm(train + " --resume --set train.steps=9");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed     step 6 of 9"), std::string::npos) << r.output;
  EXPECT_EQ(psm::read_checkpoint_info(checkpoint).step, 9);

  const fs::path samples = path("samples.npz");
  r = run_psm("--threads 1 sample --no-progress --checkpoint " + checkpoint.string() +
              " --n 10 --steps 4 --solver sde --grid geometric --batch 4 --seed 3 --out " +
              samples.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("samples/s"), std::string::npos) << r.output;
  const psm::Dataset data = psm::load_dataset(samples);
  EXPECT_EQ(data.num_frames(), 10);
  EXPECT_EQ(data.num_atoms(), 3);
  EXPECT_EQ(data.dim(), 2);
  EXPECT_EQ(data.species, (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(data.kT, 1.0);
  EXPECT_FALSE(data.has_energies());  // the test data name no system psm knows
  EXPECT_EQ(data.provenance.at("solver"), "euler_maruyama");
  EXPECT_EQ(data.provenance.at("steps"), 4);
  EXPECT_EQ(data.provenance.at("seed"), 3);
  EXPECT_NEAR(data.positions.mean(1).abs().max().item<double>(), 0.0, 1e-9)
      << "samples must be centre-of-mass free";

  // Partial diffusion from the training frames, with corrector steps; --from needs --sigma-max.
  const std::string renoise = "--threads 1 sample --no-progress --checkpoint " +
                              checkpoint.string() + " --from " + path("triangle.npz").string() +
                              " --steps 4 --corrector-steps 1 --out " +
                              path("renoised.npz").string();
  r = run_psm(renoise);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--sigma-max"), std::string::npos) << r.output;
  // More frames than the file has is an error, not fewer samples than asked for.
  r = run_psm(renoise + " --sigma-max 0.1 --n 100");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--n 100 but " + path("triangle.npz").string() + " has 48 frames"),
            std::string::npos)
      << r.output;
  r = run_psm(renoise + " --sigma-max 0.1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const psm::Dataset renoised = psm::load_dataset(path("renoised.npz"));
  EXPECT_EQ(renoised.num_frames(), 48);  // without --n: all the frames there are
  EXPECT_EQ(renoised.provenance.at("corrector_steps"), 1);
  EXPECT_EQ(renoised.provenance.at("renoised_frames"), path("triangle.npz").string());
}

// `psm sample --likelihood` and `psm likelihood` give the same log q for the same frames and
// options; samples of the SDE have no density, and `psm eval --weights` needs log q.
TEST_F(TrainCli, LikelihoodOfSamplesAndOfFrames) {
  const fs::path checkpoint = path("run") / "checkpoint.pt";
  ASSERT_EQ(run_psm("--threads 1 train --no-progress --config " + path("run.toml").string() +
                    " --out " + path("run").string())
                .exit_code,
            0);
  const std::string sample = "--threads 1 sample --no-progress --checkpoint " +
                             checkpoint.string() + " --n 6 --steps 4 --batch 4 --likelihood " +
                             "--likelihood-steps 6 --out " + path("samples.npz").string();
  psm::test::RunResult r = run_psm(sample + " --solver sde");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("the reverse SDE's samples have no tractable density"), std::string::npos)
      << r.output;
  r = run_psm(sample);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("log q       mean"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("weights     none: the samples have no energies"), std::string::npos)
      << r.output;
  const psm::Dataset samples = psm::load_dataset(path("samples.npz"));
  ASSERT_TRUE(samples.has_log_q());
  EXPECT_EQ(samples.log_q.size(0), 6);
  EXPECT_TRUE(samples.log_q_error.defined());
  EXPECT_FALSE(samples.log_weights.defined());
  EXPECT_EQ(samples.provenance.at("denoise_final"), true);
  EXPECT_EQ(samples.provenance.at("likelihood").at("denoised"), true);
  EXPECT_EQ(samples.provenance.at("likelihood").at("divergence"), "exact");

  r = run_psm("--threads 1 likelihood --no-progress --checkpoint " + checkpoint.string() +
              " --frames " + path("samples.npz").string() + " --steps 6 --batch 4 --out " +
              path("scored.npz").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("NLL "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("4-dimensional centre-of-mass-free space"), std::string::npos)
      << r.output;
  const psm::Dataset scored = psm::load_dataset(path("scored.npz"));
  EXPECT_TRUE(torch::allclose(scored.log_q, samples.log_q, 1e-9, 1e-9));

  r = run_psm("--threads 1 likelihood --no-progress --checkpoint " + checkpoint.string() +
              " --frames " + path("triangle.npz").string() + " --steps 5");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("steps must be even for the error estimate (got 5)"), std::string::npos)
      << r.output;
  r = run_psm("eval --no-plots --weights --samples " + path("triangle.npz").string() +
              " --reference " + path("triangle.npz").string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("has no log q (draw it with psm sample --likelihood)"), std::string::npos)
      << r.output;
}

TEST_F(TrainCli, ASecondTrainingInTheSameDirectoryIsRefused) {
  const psm::RunLock held = psm::lock_run_directory(path("run"));
  const psm::test::RunResult r =
      run_psm("--threads 1 train --no-progress --config " + path("run.toml").string() + " --out " +
              path("run").string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(path("run").string() + ": in use by another psm process (pid "),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(path("run") / "checkpoint.pt"));
}

TEST_F(TrainCli, CheckpointsAndStateFilesAreNotMistakenForEachOther) {
  const fs::path checkpoint = path("run") / "checkpoint.pt";
  ASSERT_EQ(run_psm("--threads 1 train --no-progress --config " + path("run.toml").string() +
                    " --set train.steps=3 --out " + path("run").string())
                .exit_code,
            0);
  // A training checkpoint is not a simulation state file; the error names the file.
  psm::test::RunResult r = run_psm("simulate --system dw4 --no-progress --resume --checkpoint " +
                                   checkpoint.string() + " --out " + path("x.npz").string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(checkpoint.string() + ": not a psm"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << r.output;

  // Frames of other species: the message says which.
  psm::Dataset other = psm::test::spring_triangle(4, 1);
  other.species = {1, 1, 8};
  other.units = psm::Units::reduced;
  psm::save_dataset(path("other.npz"), other);
  r = run_psm("--threads 1 sample --no-progress --checkpoint " + checkpoint.string() + " --from " +
              path("other.npz").string() + " --sigma-max 0.1 --out " + path("y.npz").string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("its atoms are H2O, the checkpoint's are X3"), std::string::npos)
      << r.output;
}

TEST_F(TrainCli, MissingDataFileFailsWithOneLine) {
  const psm::test::RunResult r = run_psm(
      "--threads 1 train --no-progress --config " + path("run.toml").string() +
      " --set data.train=" + path("missing.npz").string() + " --out " + path("run").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("missing.npz"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << r.output;
}

}  // namespace
