// The `psm run` pipeline: its configuration checks, and a tiny DW4 experiment end to end
// (every stage's files, the noise-floor row, stages skipped on a rerun, --fresh).

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "psm/experiment/experiment_config.h"
#include "psm/experiment/pipeline.h"
#include "psm/io/dataset.h"
#include "psm/train/checkpoint.h"
#include "test_util.h"

namespace psm {
namespace {

namespace fs = std::filesystem;

constexpr const char* kTinyDw4 = R"(
name = "tiny"
seed = 3
variants = ["dsm", "psm"]
[system]
name = "dw4"
[reference]
samples = 300
test_samples = 200
chains = 20
burn_in = 200
thin = 5
[[sets]]
name = "limited"
kind = "limited"
frames = 60
[[sets]]
name = "hot"
kind = "temperature"
kT_data = 2.0
frames = 60
[sample]
n = 80
steps = 6
[model]
layers = 1
width = 8
noise_features = 4
[train]
steps = 12
batch_size = 16
warmup_steps = 2
checkpoint_every = 6
validation_every = 6
log_every = 3
)";

Config tiny_config() { return Config::from_toml_string(kTinyDw4, "tiny.toml"); }

TEST(ExperimentConfig, ReadsTheDefaultJob) {
  const ExperimentConfig experiment = read_experiment_config(default_experiment_config());
  EXPECT_EQ(experiment.system["name"], "lj13");
  EXPECT_EQ(experiment.variants, (std::vector<std::string>{"dsm", "hybrid"}));
  ASSERT_EQ(experiment.sets.size(), 2u);
  EXPECT_EQ(experiment.sets[1].kind, "temperature");
  EXPECT_DOUBLE_EQ(*experiment.sets[1].kT_data, 1.5);
}

TEST(ExperimentConfig, ReadsEveryPreset) {
  const fs::path configs = fs::path(PSM_TEST_DATA_DIR) / ".." / ".." / "configs";
  for (const char* name : {"lj13_quick", "lj13", "dw4", "lj55"}) {
    const ExperimentConfig experiment =
        read_experiment_config(Config::from_toml_file(configs / (std::string(name) + ".toml")));
    EXPECT_EQ(experiment.name, name);
    EXPECT_GE(experiment.sets.size(), 2u) << name;
  }
}

TEST(ExperimentConfig, TrainingConfigSetsDataAndCrossover) {
  const ExperimentConfig experiment = read_experiment_config(tiny_config());
  const Config config = training_config(experiment, "sets/hot.npz", "psm");
  EXPECT_EQ(config.tree["data"]["train"], "sets/hot.npz");
  EXPECT_EQ(config.tree["diffusion"]["crossover"], "psm");
  EXPECT_EQ(config.tree["model"]["width"], 8);
}

TEST(ExperimentConfig, BadConfigurationsNameTheKey) {
  auto with = [](const std::string& assignment) {
    Config config = tiny_config();
    config.set(assignment);
    return config;
  };
  EXPECT_PSM_ERROR(read_experiment_config(Config::from_toml_string("name = \"x\"\n", "a.toml")),
                   "a.toml", "[system]");
  EXPECT_PSM_ERROR(read_experiment_config(with("reference.sample=10")), "tiny.toml",
                   "reference.sample");
  EXPECT_PSM_ERROR(read_experiment_config(with("variants=[\"dsm\", \"pms\"]")), "tiny.toml", "pms");
  EXPECT_PSM_ERROR(read_experiment_config(with("train.stpes=3")), "tiny.toml", "train.stpes");
  EXPECT_PSM_ERROR(read_experiment_config(with("sample.n=0")), "tiny.toml", "sample.n");
  EXPECT_PSM_ERROR(read_experiment_config(with("name=\"a/b\"")), "tiny.toml", "name");

  Config bad_set = tiny_config();
  bad_set.tree["sets"][0]["kind"] = "hottest";
  EXPECT_PSM_ERROR(read_experiment_config(bad_set), "sets[0]", "hottest");
  Config too_many = tiny_config();
  too_many.tree["sets"][0]["frames"] = 301;
  EXPECT_PSM_ERROR(read_experiment_config(too_many), "sets[0]", "exceeds reference.samples");
  Config no_kT = tiny_config();
  no_kT.tree["sets"][1].erase("kT_data");
  EXPECT_PSM_ERROR(read_experiment_config(no_kT), "sets[1]", "kT_data");
}

class ExperimentPipeline : public test::ScratchDir {};

TEST_F(ExperimentPipeline, RunsEveryStageThenSkipsThem) {
  const ExperimentConfig experiment = read_experiment_config(tiny_config());
  const RunOptions options{.out = path("run"), .progress = false, .plots = false};
  const ExperimentResult result = run_experiment(experiment, options);

  ASSERT_EQ(result.rows.size(), 6u);  // per set: the MCMC noise floor, dsm, psm
  EXPECT_EQ(result.rows[0].model, "mcmc");
  EXPECT_EQ(result.rows[2].model, "psm");
  EXPECT_EQ(result.rows[3].set, "hot");
  for (const auto& row : result.rows) {
    EXPECT_TRUE(std::isfinite(row.metrics.energy_w1)) << row.set << " " << row.model;
    EXPECT_GE(row.metrics.distance_tvd, 0.0);
    EXPECT_LE(row.metrics.distance_tvd, 1.0);
  }
  EXPECT_EQ(result.rows[1].metrics.n_generated, 80);
  EXPECT_EQ(result.rows[1].metrics.n_reference, 200);

  const Dataset hot = load_dataset(path("run/sets/hot.npz"));
  EXPECT_EQ(hot.num_frames(), 60);
  EXPECT_DOUBLE_EQ(hot.kT, 1.0);
  EXPECT_DOUBLE_EQ(hot.sampled_kT.value_or(0), 2.0);
  const Dataset samples = load_dataset(path("run/samples/hot_psm.npz"));
  EXPECT_EQ(samples.num_frames(), 80);
  for (const char* file :
       {"report.md", "metrics.json", "report/limited/metrics.json", "report/hot/report.md",
        "models/hot/dsm/checkpoint.pt", "models/limited/psm/metrics.jsonl", "reference/test.npz"}) {
    EXPECT_TRUE(fs::exists(path("run") / file)) << file;
  }

  // A rerun reuses every stage's files.
  const auto sample_time = fs::last_write_time(path("run/samples/limited_dsm.npz"));
  const auto model_time = fs::last_write_time(path("run/models/hot/psm/checkpoint.pt"));
  const ExperimentResult again = run_experiment(experiment, options);
  EXPECT_EQ(fs::last_write_time(path("run/samples/limited_dsm.npz")), sample_time);
  EXPECT_EQ(fs::last_write_time(path("run/models/hot/psm/checkpoint.pt")), model_time);
  EXPECT_DOUBLE_EQ(again.rows[4].metrics.energy_w1, result.rows[4].metrics.energy_w1);

  // Another configuration may not reuse the directory unless asked to start afresh.
  Config changed = tiny_config();
  changed.set("train.steps=6");
  const ExperimentConfig other = read_experiment_config(changed);
  EXPECT_PSM_ERROR(run_experiment(other, options), "another configuration", "--fresh");
  RunOptions fresh = options;
  fresh.fresh = true;
  run_experiment(other, fresh);
  EXPECT_EQ(read_checkpoint_info(path("run/models/hot/psm/checkpoint.pt")).step, 6);
}

TEST_F(ExperimentPipeline, RefusesADirectoryItDidNotMake) {
  fs::create_directories(path("mine"));
  std::ofstream(path("mine/notes.txt")) << "keep me\n";
  const ExperimentConfig experiment = read_experiment_config(tiny_config());
  EXPECT_PSM_ERROR(run_experiment(experiment, {.out = path("mine"), .fresh = true}),
                   "not a psm run directory");
  EXPECT_TRUE(fs::exists(path("mine/notes.txt")));
}

}  // namespace
}  // namespace psm
