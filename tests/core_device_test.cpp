// Devices (core/device.h): names are parsed and checked. Where LibTorch has CUDA and a GPU is
// visible, training, checkpoints, sampling and simulation on the GPU agree with the CPU: both
// draw their random numbers from the same CPU generators, so only the arithmetic differs.

#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "psm/core/device.h"
#include "psm/core/random.h"
#include "psm/diffusion/sampler.h"
#include "psm/simulate/simulation.h"
#include "psm/systems/potential.h"
#include "psm/train/checkpoint.h"
#include "psm/train/trainer.h"
#include "test_util.h"
#include "train_test_util.h"

namespace {

using CudaCheckpoint = psm::test::ScratchDir;

bool have_cuda() { return torch::cuda::device_count() > 0; }

using psm::test::small_network;
using psm::test::triangle_loss;

psm::TrainerOptions quick_options(int64_t steps) {
  return {.steps = steps, .batch_size = 32, .lr = 3e-3, .warmup_steps = 2, .seed = 11};
}

double max_difference(const psm::ScoreModel& a, const psm::ScoreModel& b) {
  const auto pa = a->parameters(), pb = b->parameters();
  EXPECT_EQ(pa.size(), pb.size());
  double worst = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    worst = std::max(worst, (pa[i].cpu() - pb[i].cpu()).abs().max().item<double>());
  }
  return worst;
}

TEST(ParseDevice, NamesTheCpu) { EXPECT_TRUE(psm::parse_device("cpu").is_cpu()); }

TEST(ParseDevice, RejectsAnUnknownName) {
  EXPECT_PSM_ERROR(psm::parse_device("tpu"), "device 'tpu'", "known: cpu, cuda, cuda:N");
  EXPECT_PSM_ERROR(psm::parse_device("cuda:x"), "device 'cuda:x'", "known: cpu");
}

TEST(ParseDevice, SaysSoWhenThereIsNoGpu) {
  if (have_cuda()) GTEST_SKIP() << "a GPU is visible";
  EXPECT_PSM_ERROR(psm::parse_device("cuda"), "device 'cuda': no CUDA device", "--device cpu");
}

TEST(ParseDevice, RejectsAGpuIndexBeyondTheMachine) {
  if (!have_cuda()) GTEST_SKIP() << "no GPU";
  EXPECT_TRUE(psm::parse_device("cuda").is_cuda());
  EXPECT_PSM_ERROR(psm::parse_device("cuda:99"), "device 'cuda:99'", "CUDA device");
}

TEST(Cuda, TrainingMatchesTheCpu) {
  if (!have_cuda()) GTEST_SKIP() << "no GPU";
  const psm::Dataset data = psm::test::spring_triangle(64, 3);
  psm::Trainer on_cpu(data, small_network(), triangle_loss(), quick_options(5));
  psm::Trainer on_gpu(data.to(torch::kCUDA), small_network(), triangle_loss(), quick_options(5));
  ASSERT_TRUE(on_gpu.model()->parameters().front().is_cuda());
  for (int step = 0; step < 5; ++step) {
    const double cpu_loss = on_cpu.step().loss, gpu_loss = on_gpu.step().loss;
    EXPECT_NEAR(gpu_loss, cpu_loss, 1e-4 * std::abs(cpu_loss)) << "step " << step;
  }
  EXPECT_LT(max_difference(on_gpu.model(), on_cpu.model()), 1e-4);
}

/// A trainer on the GPU after three steps, its checkpoint saved to `file`.
psm::Trainer trained_on_the_gpu(const psm::Dataset& data, const std::filesystem::path& file) {
  psm::Trainer trainer(data.to(torch::kCUDA), small_network(), triangle_loss(), quick_options(6));
  for (int step = 0; step < 3; ++step) trainer.step();
  trainer.save_checkpoint(file);
  return trainer;
}

// With PyTorch's LibTorch 2.11 these tests crashed (SIGSEGV) in their scratch directory's
// std::filesystem::remove_all (psm/core/remove_tree.h says why); it now goes through remove_tree.
TEST_F(CudaCheckpoint, SavedOnTheGpuHasItsStep) {
  if (!have_cuda()) GTEST_SKIP() << "no GPU";
  trained_on_the_gpu(psm::test::spring_triangle(64, 4), dir_ / "c.pt");
  EXPECT_EQ(psm::read_checkpoint_info(dir_ / "c.pt").step, 3);
}

TEST_F(CudaCheckpoint, SavedOnTheGpuLoadsOnTheCpu) {
  if (!have_cuda()) GTEST_SKIP() << "no GPU";
  const psm::Trainer on_gpu = trained_on_the_gpu(psm::test::spring_triangle(64, 4), dir_ / "c.pt");
  const psm::TrainedModel loaded = psm::load_trained_model(dir_ / "c.pt");
  EXPECT_TRUE(loaded.model->parameters().front().is_cpu());
  EXPECT_EQ(max_difference(loaded.model, on_gpu.ema_model()), 0.0);
}

TEST_F(CudaCheckpoint, SavedOnTheGpuResumesOnTheCpu) {
  if (!have_cuda()) GTEST_SKIP() << "no GPU";
  const psm::Dataset data = psm::test::spring_triangle(64, 4);
  psm::Trainer on_gpu = trained_on_the_gpu(data, dir_ / "c.pt");
  psm::Trainer on_cpu(data, small_network(), triangle_loss(), quick_options(6));
  on_cpu.resume(dir_ / "c.pt");
  EXPECT_TRUE(on_cpu.model()->parameters().front().is_cpu());
  const double resumed = on_cpu.step().loss, continued = on_gpu.step().loss;
  EXPECT_NEAR(resumed, continued, 1e-4 * std::abs(continued));
}

TEST(Cuda, SamplingMatchesTheCpu) {
  if (!have_cuda()) GTEST_SKIP() << "no GPU";
  psm::Trainer trainer(psm::test::spring_triangle(64, 5), small_network(), triangle_loss(),
                       quick_options(4));
  trainer.train();
  psm::ScoreModel on_cpu = trainer.ema_model();
  auto on_gpu = std::dynamic_pointer_cast<psm::ScoreModelImpl>(on_cpu->clone(torch::kCUDA));
  const psm::SamplerOptions options{.steps = 20, .sigma_min = 0.01, .sigma_max = 3.0, .seed = 7};
  const auto sample = [&](psm::ScoreModel model, torch::Device device) {
    return psm::sample_diffusion(psm::as_score_fn(model), 16, 3, 2, options,
                                 torch::dtype(torch::kFloat64).device(device));
  };
  const torch::Tensor cpu = sample(on_cpu, torch::kCPU);
  const torch::Tensor gpu = sample(psm::ScoreModel(on_gpu), torch::kCUDA);
  ASSERT_TRUE(gpu.is_cuda());
  EXPECT_LT((gpu.cpu() - cpu).abs().max().item<double>(), 1e-4);
}

TEST(Cuda, MetropolisMatchesTheCpu) {
  if (!have_cuda()) GTEST_SKIP() << "no GPU";
  const auto system = psm::make_system({{"name", "lj13"}});
  psm::SimulationSettings settings{
      .kT = 1.0, .samples = 16, .chains = 8, .burn_in = 50, .thin = 10, .seed = 3};
  const psm::Dataset cpu = psm::simulate(*system, settings).dataset;
  settings.device = torch::kCUDA;
  const psm::Dataset gpu = psm::simulate(*system, settings).dataset;
  ASSERT_TRUE(gpu.positions.is_cpu()) << "simulate returns CPU frames from any device";
  EXPECT_LT((gpu.positions - cpu.positions).abs().max().item<double>(), 1e-9);
  EXPECT_LT((gpu.forces - cpu.forces).abs().max().item<double>(), 1e-6);
}

}  // namespace
