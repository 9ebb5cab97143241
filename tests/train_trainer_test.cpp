// The trainer (train/): learning-rate schedule, loss bands, a short run that learns, exact
// resume, checkpoint round trip, and config errors.

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "psm/core/config.h"
#include "psm/core/error.h"
#include "psm/train/callbacks.h"
#include "psm/train/checkpoint.h"
#include "psm/train/run_config.h"
#include "psm/train/trainer.h"
#include "test_util.h"
#include "train_test_util.h"

namespace fs = std::filesystem;

namespace {

using TrainResume = psm::test::ScratchDir;
using TrainCheckpoint = psm::test::ScratchDir;
using TrainMetricLogger = psm::test::ScratchDir;

/// Runs the body with one intra-op thread (bitwise-reproducible reductions), then restores.
struct OneThread {
  OneThread() : previous(torch::get_num_threads()) { torch::set_num_threads(1); }
  ~OneThread() { torch::set_num_threads(previous); }
  int previous;
};

using psm::test::small_network;
using psm::test::triangle_loss;

psm::TrainerOptions quick_options(int64_t steps) {
  return {.steps = steps,
          .batch_size = 32,
          .lr = 3e-3,
          .lr_min = 3e-4,
          .warmup_steps = 5,
          .ema_decay = 0.99,
          .seed = 11,
          .validation_fraction = 0.25,
          .validation_every = 1000,
          .log_every = 10};
}

std::vector<torch::Tensor> parameters_of(const psm::ScoreModel& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

double max_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  }
  return worst;
}

TEST(TrainLearningRate, WarmsUpLinearlyThenDecaysByCosineToLrMin) {
  const psm::TrainerOptions o{.steps = 110, .lr = 1e-3, .lr_min = 1e-5, .warmup_steps = 10};
  EXPECT_DOUBLE_EQ(psm::learning_rate(o, 0), 1e-4);
  EXPECT_DOUBLE_EQ(psm::learning_rate(o, 9), 1e-3);
  EXPECT_DOUBLE_EQ(psm::learning_rate(o, 10), 1e-3);
  EXPECT_NEAR(psm::learning_rate(o, 10 + 99 / 2.0), 0.5 * (1e-3 + 1e-5), 1e-5);
  EXPECT_DOUBLE_EQ(psm::learning_rate(o, 109), 1e-5);
  for (int64_t s = 11; s < 110; ++s)
    EXPECT_LT(psm::learning_rate(o, s), psm::learning_rate(o, s - 1));
}

TEST(TrainSigmaBands, SplitsTheLogRangeEvenly) {
  const psm::SigmaBands bands(0.01, 100.0, 4);
  ASSERT_EQ(bands.count(), 4);
  EXPECT_NEAR(bands.edges()[1], 0.1, 1e-12);
  EXPECT_NEAR(bands.edges()[3], 10.0, 1e-9);
  const auto index =
      bands.index(torch::tensor({0.01, 0.05, 0.2, 5.0, 99.0, 100.0}, torch::kFloat64));
  const std::vector<int64_t> expected{0, 0, 1, 2, 3, 3};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(index[i].item<int64_t>(), expected[i]);
}

TEST(TrainTrainer, ShortRunLowersTheEmaValidationLoss) {
  const psm::Dataset data = psm::test::spring_triangle(256, 1);
  psm::TrainerOptions options = quick_options(150);
  options.validation_every = 150;
  options.lr = 1e-2;
  options.lr_min = 1e-3;
  psm::Trainer trainer(data, small_network(), triangle_loss(), options);
  EXPECT_EQ(trainer.num_validation_frames(), 64);
  EXPECT_EQ(trainer.num_train_frames(), 192);
  // sigma_c from the forces: sqrt(d_eff kT^2 / E|F|^2), a finite length below the data's size.
  ASSERT_TRUE(trainer.loss_options().sigma_c.has_value());
  EXPECT_GT(*trainer.loss_options().sigma_c, 0.01);
  EXPECT_LT(*trainer.loss_options().sigma_c, 0.5);

  const double before = trainer.validation_loss();
  EXPECT_EQ(before, trainer.validation_loss()) << "validation draws must be the same each call";
  trainer.train();
  const double after = trainer.validation_loss();
  EXPECT_EQ(trainer.step_count(), 150);
  // Measured: after / before = 0.63 (the remainder is the irreducible noise of the targets).
  EXPECT_LT(after, 0.75 * before) << "before " << before << " after " << after;
}

TEST_F(TrainResume, ContinuesExactly) {
  OneThread one_thread;
  const psm::Dataset data = psm::test::spring_triangle(64, 2);
  const psm::TrainerOptions options = quick_options(12);

  psm::Trainer straight(data, small_network(), triangle_loss(), options);
  straight.train();

  psm::Trainer first(data, small_network(), triangle_loss(), options);
  for (int i = 0; i < 5; ++i) first.step();
  first.save_checkpoint(dir_ / "checkpoint.pt");
  psm::Trainer resumed(data, small_network(), triangle_loss(), options);
  resumed.resume(dir_ / "checkpoint.pt");
  EXPECT_EQ(resumed.step_count(), 5);
  resumed.train();

  EXPECT_EQ(resumed.step_count(), 12);
  EXPECT_EQ(max_difference(parameters_of(straight.model()), parameters_of(resumed.model())), 0.0);
  EXPECT_EQ(max_difference(parameters_of(straight.ema_model()), parameters_of(resumed.ema_model())),
            0.0);
  // The generator and optimiser state were restored too: the next steps agree.
  EXPECT_EQ(straight.step().loss, resumed.step().loss);
}

TEST(TrainTrainer, PainnLearnsTheSpringTriangleWithEitherReadout) {
  // The same run as the EGNN's above with the other network kind; the conservative readout
  // trains through a double backward pass, in chunks.
  const psm::Dataset data = psm::test::spring_triangle(256, 1);
  for (const bool conservative : {false, true}) {
    SCOPED_TRACE(conservative ? "conservative" : "vector readout");
    psm::TrainerOptions options = quick_options(150);
    options.validation_every = 150;
    options.lr = 1e-2;
    options.lr_min = 1e-3;
    const auto network = psm::PainnOptions(0, torch::Tensor())
                             .layers(2)
                             .hidden(16)
                             .noise_features(8)
                             .num_rbf(0)
                             .num_input_rbf(8)
                             .conservative(conservative)
                             .chunk_size(16);
    psm::Trainer trainer(data, network, triangle_loss(), options);
    const double before = trainer.validation_loss();
    trainer.train();
    const double after = trainer.validation_loss();
    EXPECT_LT(after, 0.75 * before) << "before " << before << " after " << after;
  }
}

TEST_F(TrainResume, PainnContinuesExactlyAndLoadsForSampling) {
  OneThread one_thread;
  const psm::Dataset data = psm::test::spring_triangle(64, 2);
  const psm::TrainerOptions options = quick_options(8);
  const auto network =
      psm::PainnOptions(0, torch::Tensor()).layers(2).hidden(8).noise_features(4).num_rbf(4);
  psm::Trainer straight(data, network, triangle_loss(), options);
  straight.train();
  psm::Trainer first(data, network, triangle_loss(), options);
  for (int i = 0; i < 3; ++i) first.step();
  first.save_checkpoint(dir_ / "checkpoint.pt");
  psm::Trainer resumed(data, network, triangle_loss(), options);
  resumed.resume(dir_ / "checkpoint.pt");
  resumed.train();
  EXPECT_EQ(max_difference(parameters_of(straight.model()), parameters_of(resumed.model())), 0.0);
  resumed.save_checkpoint(dir_ / "final.pt");
  const psm::TrainedModel loaded = psm::load_trained_model(dir_ / "final.pt");
  EXPECT_EQ(psm::network_kind(loaded.info.network), "painn");
  const auto x = data.positions.narrow(0, 0, 4);
  const auto sigma = torch::full({4}, 0.1, torch::kFloat64);
  EXPECT_TRUE(torch::equal(loaded.score()(x, sigma), resumed.ema_model()->forward(x, sigma)));
}

TEST_F(TrainResume, RefusesAnotherRunsCheckpoint) {
  const psm::Dataset data = psm::test::spring_triangle(64, 3);
  psm::Trainer first(data, small_network(), triangle_loss(), quick_options(4));
  first.save_checkpoint(dir_ / "checkpoint.pt");
  psm::Trainer wider(data, small_network().hidden(24), triangle_loss(), quick_options(4));
  EXPECT_PSM_ERROR(wider.resume(dir_ / "checkpoint.pt"), "'network' differs");
  psm::TrainerOptions other_lr = quick_options(4);
  other_lr.lr = 1e-2;
  psm::Trainer faster(data, small_network(), triangle_loss(), other_lr);
  EXPECT_PSM_ERROR(faster.resume(dir_ / "checkpoint.pt"), "train.lr differs");
}

TEST_F(TrainCheckpoint, LoadsTheEmaModelAndMetadata) {
  psm::Dataset data = psm::test::spring_triangle(64, 4);
  data.system = {{"name", "spring-triangle"}};
  psm::Trainer trainer(data, small_network(), triangle_loss(), quick_options(6),
                       {.config_toml = "[train]\nsteps = 6\n", .data_source = "triangle.npz"});
  trainer.train();
  trainer.save_checkpoint(dir_ / "checkpoint.pt");

  const psm::TrainedModel loaded = psm::load_trained_model(dir_ / "checkpoint.pt");
  torch::Generator rng = psm::make_generator(5);
  const torch::Tensor x = torch::randn({7, 3, 2}, rng, torch::kFloat64);
  const torch::Tensor sigma = torch::tensor({0.01, 0.03, 0.1, 0.3, 1.0, 2.0, 3.0}, torch::kFloat64);
  const torch::Tensor expected = trainer.ema_model()->forward(x, sigma);
  EXPECT_TRUE(torch::equal(loaded.score()(x, sigma), expected));
  EXPECT_FALSE(torch::equal(trainer.model()->forward(x, sigma), expected))
      << "the loaded model must be the EMA, not the raw weights";

  const psm::CheckpointInfo& info = loaded.info;
  EXPECT_EQ(info.step, 6);
  EXPECT_EQ(info.sigma_data, trainer.sigma_data());
  EXPECT_EQ(info.loss.sigma_c, trainer.loss_options().sigma_c);
  EXPECT_EQ(info.loss.schedule.sigma_max, 3.0);
  EXPECT_EQ(std::get<psm::EgnnOptions>(info.network).hidden(), 16);
  EXPECT_EQ(info.species(), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(info.dim(), 2);
  EXPECT_EQ(info.kT(), 1.0);
  EXPECT_EQ(info.units(), psm::Units::reduced);
  EXPECT_EQ(info.system(), data.system);
  EXPECT_EQ(info.config_toml, "[train]\nsteps = 6\n");
  EXPECT_EQ(info.data.at("source"), "triangle.npz");
  EXPECT_EQ(info.data.at("provenance"), data.provenance);
  EXPECT_EQ(info.data.at("validation_frames"), 16);
}

TEST_F(TrainCheckpoint, MissingOrForeignFilesGiveOneLineErrors) {
  const fs::path junk = dir_ / "junk.pt";
  std::ofstream(junk) << "not a checkpoint";
  for (const fs::path& path : {dir_ / "absent.pt", junk}) {
    EXPECT_PSM_ERROR(psm::load_trained_model(path), path.string());
  }
}

TEST_F(TrainMetricLogger, WritesBandsAndValidationAndTrimsOnResume) {
  const psm::Dataset data = psm::test::spring_triangle(64, 6);
  psm::TrainerOptions options = quick_options(20);
  options.validation_every = 10;
  options.log_every = 5;
  psm::Trainer trainer(data, small_network(), triangle_loss(), options);
  const psm::SigmaBands bands(0.01, 3.0);
  trainer.add_callback(
      std::make_unique<psm::MetricLogger>(dir_ / "metrics.jsonl", options.log_every, bands));
  trainer.train();

  std::vector<nlohmann::json> lines;
  {
    std::ifstream in(dir_ / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(lines.size(), 5u);  // step 0 (validation), 5, 10, 15, 20
  EXPECT_EQ(lines[0].at("step"), 0);
  EXPECT_TRUE(lines[0].contains("validation_loss"));
  EXPECT_EQ(lines[2].at("step"), 10);
  EXPECT_TRUE(lines[2].contains("validation_loss"));
  EXPECT_FALSE(lines[1].contains("validation_loss"));
  EXPECT_EQ(lines[1].at("band_losses").size(), 4u);
  EXPECT_EQ(lines[1].at("band_edges").size(), 5u);
  EXPECT_GT(lines[1].at("loss").get<double>(), 0.0);

  // Resuming at step 10 drops the lines of steps 15 and 20.
  psm::MetricLogger resumed(dir_ / "metrics.jsonl", 5, bands, /*resume_step=*/10);
  std::ifstream in(dir_ / "metrics.jsonl");
  int64_t count = 0;
  for (std::string line; std::getline(in, line);) ++count;
  EXPECT_EQ(count, 3);
}

TEST_F(TrainMetricLogger, ElapsedTimeGoesOnAfterAResume) {
  const psm::Dataset data = psm::test::spring_triangle(64, 6);
  psm::TrainerOptions options = quick_options(20);
  options.log_every = 5;
  const psm::SigmaBands bands(0.01, 3.0);
  psm::Trainer first(data, small_network(), triangle_loss(), options);
  {
    psm::MetricLogger logger(dir_ / "metrics.jsonl", 5, bands);
    logger.on_train_begin(first, std::nullopt);
    for (int i = 0; i < 10; ++i) logger.on_step_end(first, first.step());
  }
  first.save_checkpoint(dir_ / "checkpoint.pt");
  // The interrupted run had trained for 1000 s by step 10 (its log, edited: steps take ms here).
  std::vector<nlohmann::json> lines;
  {
    std::ifstream in(dir_ / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(lines.back().at("step"), 10);
  lines.back()["elapsed_s"] = 1000.0;
  {
    std::ofstream out(dir_ / "metrics.jsonl", std::ios::trunc);
    for (const auto& line : lines) out << line.dump() << '\n';
  }

  psm::Trainer resumed(data, small_network(), triangle_loss(), options);
  resumed.resume(dir_ / "checkpoint.pt");
  resumed.add_callback(
      std::make_unique<psm::MetricLogger>(dir_ / "metrics.jsonl", 5, bands, /*resume_step=*/10));
  resumed.train();
  std::ifstream in(dir_ / "metrics.jsonl");
  std::vector<double> elapsed;
  for (std::string line; std::getline(in, line);) {
    const auto record = nlohmann::json::parse(line);
    if (record.at("step").get<int64_t>() > 10) elapsed.push_back(record.at("elapsed_s"));
  }
  ASSERT_EQ(elapsed.size(), 2u);  // steps 15 and 20
  EXPECT_GE(elapsed[0], 1000.0);
  EXPECT_LT(elapsed[0], 1000.0 + 60.0);
  EXPECT_GE(elapsed[1], elapsed[0]);
}

TEST(TrainRunConfig, ReadsSectionsAndDefaults) {
  psm::Config config = psm::Config::from_toml_string(
      "threads = 2\n[data]\ntrain = \"x.npz\"\nvalidation_fraction = 0.2\n"
      "[model]\nlayers = 3\nwidth = 32\n"
      "[diffusion]\ncrossover = \"psm\"\nsigma_c = 0.2\nweighting = \"unit\"\n"
      "[train]\nsteps = 10\noptimizer = \"adamw\"\nseed = 4\n",
      "test.toml");
  config.set("train.lr=2e-4");
  const psm::RunConfig run = psm::read_run_config(config);
  EXPECT_EQ(run.train_data, "x.npz");
  EXPECT_EQ(run.threads, 2);
  const auto& network = std::get<psm::EgnnOptions>(run.network);
  EXPECT_EQ(network.layers(), 3);
  EXPECT_EQ(network.hidden(), 32);
  EXPECT_EQ(network.seed(), 4u);
  EXPECT_EQ(run.loss.crossover, psm::Crossover::psm);
  EXPECT_EQ(run.loss.sigma_c, 0.2);
  EXPECT_EQ(run.loss.weighting, psm::LossWeighting::unit);
  EXPECT_EQ(run.trainer.steps, 10);
  EXPECT_EQ(run.trainer.optimizer, psm::OptimizerKind::adamw);
  EXPECT_EQ(run.trainer.lr, 2e-4);
  EXPECT_EQ(run.trainer.validation_fraction, 0.2);
  EXPECT_EQ(run.trainer.batch_size, psm::TrainerOptions{}.batch_size);
}

TEST(TrainRunConfig, ReadsThePainnKind) {
  const psm::RunConfig run = psm::read_run_config(psm::Config::from_toml_string(
      "[data]\ntrain = \"x.npz\"\n[model]\nkind = \"painn\"\nwidth = 32\ncutoff = 4.0\n"
      "neighbours = \"sparse\"\ninput_rbf = 8\nbond_graph = false\nconservative = true\n"
      "[train]\nseed = 9\n",
      "painn.toml"));
  const auto& network = std::get<psm::PainnOptions>(run.network);
  EXPECT_EQ(network.hidden(), 32);
  EXPECT_EQ(network.cutoff(), 4.0);
  EXPECT_EQ(network.neighbours(), psm::NeighbourMode::sparse);
  EXPECT_EQ(network.num_input_rbf(), 8);
  EXPECT_FALSE(network.bond_graph());
  EXPECT_TRUE(network.conservative());
  EXPECT_EQ(network.seed(), 9u);
}

TEST(TrainRunConfig, BadValuesGiveOneLineErrorsNamingTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[data]\ntrain = \"x.npz\"\n[train]\nstpes = 10\n", "train.stpes"},
      {"[data]\ntrain = \"x.npz\"\n[train]\nsteps = -5\n", "train.steps must be >= 1"},
      {"[data]\ntrain = \"x.npz\"\n[diffusion]\ncrossover = \"both\"\n", "diffusion.crossover"},
      {"[data]\ntrain = \"x.npz\"\n[diffusion]\nsigma_c = \"big\"\n", "diffusion.sigma_c"},
      {"[data]\ntrain = \"x.npz\"\n[diffusion]\nsigma_min = 20.0\n", "sigma_min < sigma_max"},
      {"[data]\ntrain = \"x.npz\"\n[model]\nwidth = 0\n", "model.width"},
      {"[data]\ntrain = \"x.npz\"\n[modle]\nwidth = 8\n", "modle"},
      {"[data]\ntrain = \"x.npz\"\n[model]\nkind = \"mace\"\n",
       "model.kind: unknown model kind 'mace' (known: egnn, painn)"},
      {"[data]\ntrain = \"x.npz\"\n[model]\nconservative = true\n", "model.conservative"},
      {"[data]\ntrain = \"x.npz\"\n[model]\nkind = \"painn\"\nneighbours = \"sparse\"\n",
       "model.neighbours = \"sparse\" needs model.cutoff > 0"},
      {"[data]\nvalidation_fraction = 0.1\n", "data.train"},
  };
  for (const auto& [text, expected] : cases) {
    SCOPED_TRACE(text);
    EXPECT_PSM_ERROR(psm::read_run_config(psm::Config::from_toml_string(text, "bad.toml")),
                     expected, "bad.toml");
  }
}

TEST(TrainTrainer, RejectsDataItCannotTrainOn) {
  psm::Dataset data = psm::test::spring_triangle(3, 7);
  psm::TrainerOptions options = quick_options(2);
  options.validation_fraction = 0.9;
  EXPECT_THROW(psm::Trainer(data, small_network(), triangle_loss(), options), psm::Error);
  data.forces = torch::Tensor();  // the hybrid loss needs force labels
  EXPECT_THROW(psm::Trainer(data, small_network(), triangle_loss(), quick_options(2)), psm::Error);
  psm::LossOptions dsm = triangle_loss();
  dsm.crossover = psm::Crossover::dsm;
  EXPECT_NO_THROW(psm::Trainer(data, small_network(), dsm, quick_options(2)));
}

}  // namespace
