// psm under several MPI ranks (mpirun -np 2): `psm simulate` and `psm sample` write the frames
// of one process, bit for bit, and one rank's failure ends the run with a non-zero exit and no
// output. The MpiRanks tests are skipped, with a message, when psm is built without MPI.

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "psm/core/communicator.h"
#include "psm/io/dataset.h"
#include "psm/train/checkpoint.h"
#include "test_util.h"
#include "tiny_experiment.h"
#include "train_test_util.h"

namespace fs = std::filesystem;

namespace {

using psm::test::run_psm;
using psm::test::run_shell;
using psm::test::RunResult;

TEST(MpiCommunicator, OneProcessCollectivesReturnTheirInput) {
  const psm::Communicator one;
  EXPECT_EQ(one.rank(), 0);
  EXPECT_EQ(one.size(), 1);
  EXPECT_TRUE(one.is_root());
  const torch::Tensor x = torch::arange(6, torch::kFloat64).view({3, 2});
  EXPECT_TRUE(torch::equal(one.allreduce_sum(x), x));
  EXPECT_TRUE(torch::equal(one.allreduce_mean(x.to(torch::kFloat32)), x.to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(one.gather(x), x));
  EXPECT_TRUE(torch::equal(one.broadcast(x.to(torch::kInt64)), x.to(torch::kInt64)));
  EXPECT_FALSE(one.all(false));
  EXPECT_EQ(one.block(7), (std::pair<int64_t, int64_t>{0, 7}));
  EXPECT_PSM_ERROR(one.allreduce_sum(x.to(torch::kInt32)), "allreduce", "Int");
}

#ifdef PSM_MPIEXEC

/// The launcher's command for programs that run on this machine only (test containers often
/// run as root, which Open MPI refuses unless told).
std::string launcher() {
  return std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ") + PSM_MPIEXEC +
         " --oversubscribe";
}

/// psm with `arguments` on two ranks.
RunResult run_psm_on_two_ranks(const std::string& arguments) {
  return run_shell(launcher() + " -np 2 " + PSM_BINARY + " " + arguments);
}

void expect_same_frames(const fs::path& one_process, const fs::path& two_ranks) {
  const psm::Dataset a = psm::load_dataset(one_process), b = psm::load_dataset(two_ranks);
  ASSERT_EQ(a.num_frames(), b.num_frames());
  EXPECT_TRUE(torch::equal(a.positions, b.positions));
  EXPECT_EQ(a.has_energies(), b.has_energies());
  if (a.has_energies()) EXPECT_TRUE(torch::equal(a.energies, b.energies));
  EXPECT_EQ(a.has_forces(), b.has_forces());
  if (a.has_forces()) EXPECT_TRUE(torch::equal(a.forces, b.forces));
}

class MpiRanks : public psm::test::ScratchDir {};

TEST_F(MpiRanks, SimulateWritesTheFramesOfOneProcess) {
  // MCMC with forces labelled after sampling, and Langevin with forces from the dynamics; odd
  // chain counts give the ranks blocks of different sizes.
  for (const std::string sampler :
       {"--system dw4 --chains 5 --burn-in 30 --thin 2 --samples 47",
        "--system lj13 --sampler langevin --chains 3 --burn-in 10 --thin 5 --samples 12"}) {
    const std::string options = "--threads 1 simulate --no-progress --seed 4 " + sampler;
    const RunResult one = run_psm(options + " --out " + path("one.npz").string());
    ASSERT_EQ(one.exit_code, 0) << one.output;
    const RunResult two = run_psm_on_two_ranks(options + " --out " + path("two.npz").string());
    ASSERT_EQ(two.exit_code, 0) << two.output;
    // Rank 0 alone reports.
    EXPECT_EQ(two.output.find("psm simulate:"), two.output.rfind("psm simulate:")) << two.output;
    expect_same_frames(path("one.npz"), path("two.npz"));
  }
}

TEST_F(MpiRanks, SimulateStateFilesResumeOnAnyNumberOfRanks) {
  // The first half of the frames with a state file, the rest resumed from it: on two ranks then
  // one, and on one then two, against one process throughout; MCMC, and Langevin with its
  // velocities and kinetic energies.
  for (const std::string sampler :
       {"--system dw4 --chains 5 --burn-in 30 --thin 2",
        "--system lj13 --sampler langevin --chains 3 --burn-in 10 --thin 5"}) {
    const std::string options =
        "--threads 1 simulate --no-progress --seed 4 --checkpoint-every 6 " + sampler;
    const auto part = [&](const std::string& run, bool resumed) {
      return options + (resumed ? " --samples 24 --resume" : " --samples 12") + " --checkpoint " +
             path(run + ".pt").string() + " --out " +
             path(run + (resumed ? ".npz" : "_first.npz")).string();
    };
    const RunResult whole = run_psm(options + " --samples 24 --out " + path("whole.npz").string());
    ASSERT_EQ(whole.exit_code, 0) << whole.output;
    for (const auto& [run, first_on_two] :
         {std::pair{"two_then_one", true}, {"one_then_two", false}}) {
      SCOPED_TRACE(sampler + ": " + run);
      const RunResult a =
          first_on_two ? run_psm_on_two_ranks(part(run, false)) : run_psm(part(run, false));
      ASSERT_EQ(a.exit_code, 0) << a.output;
      const RunResult b =
          first_on_two ? run_psm(part(run, true)) : run_psm_on_two_ranks(part(run, true));
      ASSERT_EQ(b.exit_code, 0) << b.output;
      expect_same_frames(path("whole.npz"), path(std::string(run) + ".npz"));
      fs::remove(path(std::string(run) + ".pt"));
    }
  }
}

TEST_F(MpiRanks, SampleWritesTheSamplesOfOneProcess) {
  psm::save_dataset(path("triangle.npz"), psm::test::spring_triangle(32, 9));
  std::ofstream(path("run.toml")) << "threads = 1\n[data]\ntrain = \""
                                  << path("triangle.npz").string()
                                  << "\"\nvalidation_fraction = 0.25\n"
                                  << "[model]\nlayers = 1\nwidth = 8\nnoise_features = 4\n"
                                  << "[train]\nsteps = 2\nbatch_size = 8\nwarmup_steps = 1\n";
  const RunResult trained = run_psm("--threads 1 train --no-progress --config " +
                                    path("run.toml").string() + " --out " + path("run").string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  // Five chunks of 3 (the last of 1): ranks take 3 and 2.
  const std::string options = "--threads 1 sample --no-progress --checkpoint " +
                              (path("run") / "checkpoint.pt").string() +
                              " --n 13 --batch 3 --steps 5 --solver sde --seed 2";
  const RunResult one = run_psm(options + " --out " + path("one.npz").string());
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const RunResult two = run_psm_on_two_ranks(options + " --out " + path("two.npz").string());
  ASSERT_EQ(two.exit_code, 0) << two.output;
  expect_same_frames(path("one.npz"), path("two.npz"));
}

/// The largest difference between the EMA weights of two checkpoints.
double max_parameter_difference(const fs::path& a, const fs::path& b) {
  const auto pa = psm::load_trained_model(a).model->parameters();
  const auto pb = psm::load_trained_model(b).model->parameters();
  EXPECT_EQ(pa.size(), pb.size());
  double largest = 0;
  for (size_t i = 0; i < std::min(pa.size(), pb.size()); ++i) {
    largest = std::max(largest, (pa[i] - pb[i]).abs().max().item<double>());
  }
  return largest;
}

TEST_F(MpiRanks, TrainingMatchesOneProcessToRoundingAndResumesOnAnyCount) {
  psm::save_dataset(path("triangle.npz"), psm::test::spring_triangle(48, 9));
  std::ofstream(path("run.toml")) << "threads = 1\n[data]\ntrain = \""
                                  << path("triangle.npz").string()
                                  << "\"\nvalidation_fraction = 0.25\n"
                                  << "[model]\nlayers = 2\nwidth = 16\nnoise_features = 4\n"
                                  << "[train]\nsteps = 50\nbatch_size = 7\nwarmup_steps = 5\n"
                                  << "checkpoint_every = 25\nvalidation_every = 25\n";
  const std::string train =
      "--threads 1 train --no-progress --config " + path("run.toml").string() + " --out ";
  const RunResult one = run_psm(train + path("one").string());
  ASSERT_EQ(one.exit_code, 0) << one.output;
  // Global batch 7: the ranks take 4 and 3 frames.
  const RunResult two = run_psm_on_two_ranks(train + path("two").string());
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("allreduce of"), std::string::npos) << two.output;
  const double difference =
      max_parameter_difference(path("one") / "checkpoint.pt", path("two") / "checkpoint.pt");
  std::printf("max |EMA parameter difference| after 50 steps, 2 ranks vs 1 process: %.3g\n",
              difference);
  EXPECT_LT(difference, 1e-5);

  // Half the steps on two ranks, the rest resumed by one process, against both halves on one
  // (train.steps sets the learning-rate schedule, so both runs stop at 25 the same way).
  for (const std::string run : {"one_resumed", "mixed"}) {
    const std::string first = train + path(run).string() + " --set train.steps=25";
    const RunResult half = run == "mixed" ? run_psm_on_two_ranks(first) : run_psm(first);
    ASSERT_EQ(half.exit_code, 0) << half.output;
    const RunResult rest = run_psm(train + path(run).string() + " --resume");
    ASSERT_EQ(rest.exit_code, 0) << rest.output;
  }
  EXPECT_LT(max_parameter_difference(path("one_resumed") / "checkpoint.pt",
                                     path("mixed") / "checkpoint.pt"),
            1e-5);
}

TEST_F(MpiRanks, RunSharesTheModelsAndWritesOneReport) {
  std::ofstream(path("tiny.toml")) << psm::test::kTinyDw4Experiment;
  const std::string run =
      "--threads 1 run " + path("tiny.toml").string() + " --no-progress --no-plots --out ";
  const RunResult one = run_psm(run + path("one").string());
  ASSERT_EQ(one.exit_code, 0) << one.output;

  // Whole models: the four models are dealt to the ranks in turn, each made as one process
  // makes it, so the samples are the same bit for bit.
  const RunResult two = run_psm_on_two_ranks(run + path("two").string());
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("ranks: 2, sharing whole models"), std::string::npos) << two.output;
  EXPECT_NE(two.output.find("[rank 1]   limited/psm"), std::string::npos) << two.output;
  EXPECT_EQ(two.output.find("[1/5]"), two.output.rfind("[1/5]")) << two.output;  // rank 0's
  EXPECT_TRUE(fs::exists(path("two") / "report.md"));
  for (const std::string model : {"limited_dsm", "limited_psm", "hot_dsm", "hot_psm"}) {
    SCOPED_TRACE(model);
    expect_same_frames(path("one") / "samples" / (model + ".npz"),
                       path("two") / "samples" / (model + ".npz"));
  }
  // The table that rank 0 prints is the one-process run's.
  const auto table = [](const std::string& output) {
    const size_t start = output.find("set          model");
    return output.substr(start, output.find("report:") - start);
  };
  EXPECT_EQ(table(one.output), table(two.output));

  // Each model's training batches shared: the same models to rounding.
  const RunResult data =
      run_psm_on_two_ranks(run + path("data").string() + " --spread data --only limited/psm");
  ASSERT_EQ(data.exit_code, 0) << data.output;
  EXPECT_LT(max_parameter_difference(path("one") / "models" / "limited" / "psm" / "checkpoint.pt",
                                     path("data") / "models" / "limited" / "psm" / "checkpoint.pt"),
            1e-5);
  EXPECT_TRUE(fs::exists(path("data") / "samples" / "limited_psm.npz"));
}

TEST_F(MpiRanks, OneRankFailingEndsTheRunWithoutOutput) {
  // Rank 1 is given a starting-configuration file that does not exist; rank 0 samples and then
  // waits for rank 1's chains, which never come. The run must end, non-zero, and leave no file
  // (temporary or final).
  fs::create_directories(path("out"));
  const std::string options =
      "--threads 1 simulate --no-progress --system dw4 --chains 4 --burn-in 20 --thin 2 "
      "--samples 40 --out " +
      (path("out") / "dw4.npz").string();
  const RunResult run =
      run_shell(launcher() + " -np 1 " + PSM_BINARY + " " + options + " : -np 1 " + PSM_BINARY +
                " " + options + " --init " + path("nosuch.npz").string());
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("psm simulate: error (rank 1):"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("nosuch.npz"), std::string::npos) << run.output;
  EXPECT_TRUE(fs::is_empty(path("out")));

  // A command that does not share its work refuses to repeat it on every rank.
  const RunResult other = run_psm_on_two_ranks("validate --system dw4");
  EXPECT_NE(other.exit_code, 0) << other.output;
  EXPECT_NE(other.output.find("psm validate: error (rank "), std::string::npos) << other.output;
  EXPECT_NE(other.output.find("runs as one process"), std::string::npos) << other.output;
  EXPECT_TRUE(fs::is_empty(path("out")));
}

#else

TEST(MpiRanks, SkippedWithoutMpi) {
  GTEST_SKIP() << "psm was built without MPI (PSM_WITH_MPI=OFF; Debian: apt-get install "
                  "libopenmpi-dev openmpi-bin, then reconfigure)";
}

#endif

}  // namespace
