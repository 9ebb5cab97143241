// The `psm run` pipeline: its configuration checks, a tiny DW4 experiment end to end (every
// stage's files, the noise-floor row, stages skipped on a rerun, --fresh, --only, --data-only,
// an interrupted reference simulation resumed), a tiny molecular one read from overlapping
// rMD17-layout files (duplicates and pool frames dropped from the test set, molecular metrics in
// the reports), and a tiny GFN2-xTB one (a molecule file, temperatures in kelvin, exact energies
// of the generated samples).

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "psm/core/random.h"
#include "psm/diffusion/importance_weights.h"
#include "psm/eval/evaluation_inputs.h"
#include "psm/eval/metrics.h"
#include "psm/experiment/experiment_config.h"
#include "psm/experiment/pipeline.h"
#include "psm/io/dataset.h"
#include "psm/io/npy.h"
#include "psm/simulate/simulation.h"
#include "psm/systems/potential.h"
#include "psm/train/checkpoint.h"
#include "psm/train/run_config.h"
#include "psm/train/training_run.h"
#include "test_util.h"
#include "tiny_experiment.h"

namespace psm {
namespace {

namespace fs = std::filesystem;

Config tiny_config() { return Config::from_toml_string(test::kTinyDw4Experiment, "tiny.toml"); }

/// tiny_config() with one `--set` assignment.
Config tiny_with(const std::string& assignment) {
  Config config = tiny_config();
  config.set(assignment);
  return config;
}

TEST(ExperimentConfig, ReadsTheDefaultJob) {
  const ExperimentConfig experiment = read_experiment_config(default_experiment_config());
  EXPECT_EQ(experiment.system["name"], "lj13");
  EXPECT_EQ(experiment.variants, (std::vector<std::string>{"dsm", "hybrid"}));
  ASSERT_EQ(experiment.sets.size(), 2u);
  EXPECT_EQ(experiment.sets[1].kind, psm::SubsetKind::temperature);
  EXPECT_DOUBLE_EQ(*experiment.sets[1].kT_data, 0.7);
  EXPECT_DOUBLE_EQ(*experiment.sets[1].sigma_c, 0.3);
}

TEST(ExperimentConfig, ReadsEveryPreset) {
  const fs::path root = fs::path(PSM_TEST_DATA_DIR) / ".." / "..";
  std::vector<std::string> names{"lj13_quick", "lj13",          "dw4",
                                 "lj55",       "rmd17_ethanol", "rmd17_aspirin"};
#ifdef PSM_WITH_XTB
  names.push_back("xtb_ethanol");
  names.push_back("xtb_ac_ala3_nhme");
#endif
  for (const auto& name : names) {
    Config config = Config::from_toml_file(root / "configs" / (name + ".toml"));
    // Molecule files are relative to the current directory: the presets' to the repository root.
    if (config.tree.contains("system") && config.tree["system"].contains("molecule")) {
      auto& molecule = config.tree["system"]["molecule"];
      molecule = (root / molecule.get<std::string>()).string();
    }
    const ExperimentConfig experiment = read_experiment_config(config);
    EXPECT_EQ(experiment.name, name);
    EXPECT_GE(experiment.variants.size(), 2u) << name;  // every preset compares DSM and PSM
    if (name.ends_with("ethanol")) {  // EDM's sampler with churn below σ = 0.3 Å, 59 evaluations
      EXPECT_EQ(experiment.sampler.solver, psm::Solver::edm) << name;
      EXPECT_EQ(experiment.sampler.steps, 29) << name;
      EXPECT_DOUBLE_EQ(experiment.sampler.churn_sigma_max, 0.3) << name;
    }
  }
}

TEST(ExperimentConfig, TrainingConfigSetsDataAndCrossover) {
  const ExperimentConfig experiment = read_experiment_config(tiny_config());
  const Config config = training_config(experiment, experiment.sets[1], "sets/hot.npz", "psm");
  EXPECT_EQ(config.tree["data"]["train"], "sets/hot.npz");
  EXPECT_EQ(config.tree["diffusion"]["crossover"], "psm");
  EXPECT_EQ(config.tree["model"]["width"], 8);
  EXPECT_FALSE(config.tree["diffusion"].contains("sigma_c"));
}

TEST(ExperimentConfig, ASetsSigmaCReplacesDiffusionSigmaC) {
  Config with_sigma_c = tiny_with("diffusion.sigma_c=0.05");
  with_sigma_c.tree["sets"][1]["sigma_c"] = 0.3;
  const ExperimentConfig experiment = read_experiment_config(with_sigma_c);
  EXPECT_FALSE(experiment.sets[0].sigma_c.has_value());
  EXPECT_DOUBLE_EQ(*experiment.sets[1].sigma_c, 0.3);
  const auto sigma_c = [&](size_t set) {
    const Config config = training_config(experiment, experiment.sets[set], "sets/x.npz", "hybrid");
    return *read_run_config(config).loss.sigma_c;
  };
  EXPECT_DOUBLE_EQ(sigma_c(0), 0.05);
  EXPECT_DOUBLE_EQ(sigma_c(1), 0.3);

  Config negative = tiny_config();
  negative.tree["sets"][1]["sigma_c"] = -0.3;
  EXPECT_PSM_ERROR(read_experiment_config(negative), "sets[1]", "sigma_c must be positive");
}

TEST(ExperimentConfig, ReadsTheReferenceSampler) {
  Config config = tiny_config();
  for (const char* assignment : {"reference.sampler=\"hmc\"", "reference.thin=4",
                                 "reference.leapfrog_steps=6", "reference.time_step=0.01"}) {
    config.set(assignment);
  }
  const ExperimentConfig experiment = read_experiment_config(config);
  EXPECT_EQ(experiment.reference.sampler, "hmc");
  EXPECT_EQ(experiment.reference.thin, 4);
  EXPECT_EQ(experiment.reference.leapfrog_steps, 6);
  EXPECT_EQ(experiment.reference.time_step, 0.01);
  EXPECT_FALSE(read_experiment_config(tiny_config()).reference.sampler.has_value());
}

TEST(ExperimentConfig, BadConfigurationsNameTheKey) {
  EXPECT_PSM_ERROR(read_experiment_config(Config::from_toml_string("name = \"x\"\n", "a.toml")),
                   "a.toml", "[system]");
  EXPECT_PSM_ERROR(read_experiment_config(tiny_with("reference.sample=10")), "tiny.toml",
                   "reference.sample");
  EXPECT_PSM_ERROR(read_experiment_config(tiny_with("variants=[\"dsm\", \"pms\"]")), "tiny.toml",
                   "pms");
  EXPECT_PSM_ERROR(read_experiment_config(tiny_with("train.stpes=3")), "tiny.toml", "train.stpes");
  EXPECT_PSM_ERROR(read_experiment_config(tiny_with("sample.n=0")), "tiny.toml", "sample.n");
  EXPECT_PSM_ERROR(read_experiment_config(tiny_with("name=\"a/b\"")), "tiny.toml", "name");
  EXPECT_PSM_ERROR(read_experiment_config(tiny_with("reference.sampler=\"mala\"")),
                   "tiny.toml: reference.sampler: unknown sampler 'mala'", "mcmc, hmc, langevin");

  Config bad_set = tiny_config();
  bad_set.tree["sets"][0]["kind"] = "hottest";
  EXPECT_PSM_ERROR(read_experiment_config(bad_set), "sets[0]", "hottest");
  Config too_many = tiny_config();
  too_many.tree["sets"][0]["frames"] = 301;
  EXPECT_PSM_ERROR(read_experiment_config(too_many), "sets[0]", "exceeds reference.samples");
  Config no_kT = tiny_config();
  no_kT.tree["sets"][1].erase("kT_data");
  EXPECT_PSM_ERROR(read_experiment_config(no_kT), "sets[1]", "kT_data");
  Config limited_kT = tiny_config();
  limited_kT.tree["sets"][0]["kT_data"] = 2.0;
  EXPECT_PSM_ERROR(read_experiment_config(limited_kT), "sets[0]", "takes no kT_data");
  EXPECT_PSM_ERROR(read_experiment_config(tiny_with("system.foo=1")), "tiny.toml", "[system]",
                   "unknown option 'foo'");
  EXPECT_PSM_ERROR(read_experiment_config(tiny_with("eval.min_ess=1.5")), "tiny.toml",
                   "eval.min_ess");
}

TEST(ExperimentConfig, LikelihoodsNeedTheProbabilityFlowOde) {
  Config config = tiny_with("sample.likelihood=true");
  config.set("sample.likelihood_steps=20");
  const ExperimentConfig experiment = read_experiment_config(config);
  ASSERT_TRUE(experiment.likelihood.has_value());
  EXPECT_EQ(experiment.likelihood->steps, 20);
  EXPECT_FALSE(read_experiment_config(tiny_config()).likelihood.has_value());

  config.set("sample.solver=\"sde\"");
  EXPECT_PSM_ERROR(read_experiment_config(config), "tiny.toml", "likelihood = true",
                   "probability-flow ODE");
  Config odd_steps = tiny_with("sample.likelihood=true");
  odd_steps.set("sample.likelihood_steps=21");
  EXPECT_PSM_ERROR(read_experiment_config(odd_steps), "tiny.toml", "even");
  Config divergence = tiny_with("sample.likelihood=true");
  divergence.set("sample.divergence=\"exakt\"");
  EXPECT_PSM_ERROR(read_experiment_config(divergence), "exakt");
}

TEST(ExperimentConfig, KelvinTemperaturesAreForMolecules) {
  EXPECT_DOUBLE_EQ(read_experiment_config(tiny_config()).temperature->kT, 1.0);
  EXPECT_FALSE(read_experiment_config(tiny_config()).temperature->kelvin.has_value());
  EXPECT_DOUBLE_EQ(read_experiment_config(tiny_with("system.kT=0.8")).temperature->kT, 0.8);
  EXPECT_PSM_ERROR(read_experiment_config(tiny_with("system.temperature=300")), "tiny.toml",
                   "system.temperature is for molecular systems", "dw4 is in reduced units");
  Config both = tiny_config();
  both.set("system.kT=1.0");
  both.set("system.temperature=300");
  EXPECT_PSM_ERROR(read_experiment_config(both), "tiny.toml",
                   "give system.kT or system.temperature, not both");
  EXPECT_PSM_ERROR(read_experiment_config(tiny_with("system.kT=-1")), "tiny.toml",
                   "system.kT must be positive");

  Config kelvin_data = tiny_config();
  kelvin_data.tree["sets"][1].erase("kT_data");
  kelvin_data.tree["sets"][1]["temperature_data"] = 300.0;
  EXPECT_PSM_ERROR(read_experiment_config(kelvin_data), "sets[1]",
                   "temperature_data is for molecular systems");
}

TEST(ExperimentConfig, MissingMoleculeFileNamesIt) {
  Config config = tiny_config();
  config.tree["system"] = {{"name", "xtb"}, {"molecule", "no_such_molecule.xyz"}};
  EXPECT_PSM_ERROR(read_experiment_config(config), "tiny.toml", "no_such_molecule.xyz",
                   "not found");
  config.tree["system"]["molecule"] = 3;
  EXPECT_PSM_ERROR(read_experiment_config(config), "tiny.toml", "'molecule' must be a file name");
  config.tree["system"] = {{"name", "xtb"},
                           {"molecule", test::data_path("ethanol.xyz").string()},
                           {"species", {6, 6, 8, 1, 1, 1, 1, 1, 1}}};
  EXPECT_PSM_ERROR(read_experiment_config(config), "tiny.toml", "not both");
}

#ifdef PSM_WITH_XTB

/// A tiny ethanol experiment under GFN2-xTB, started from the molecule file.
constexpr const char* kTinyEthanol = R"(
name = "ethanol"
seed = 5
variants = ["psm"]
[system]
name = "xtb"
temperature = 500
[reference]
samples = 8
test_samples = 8
chains = 2
burn_in = 10
thin = 5
[[sets]]
name = "limited"
kind = "limited"
frames = 6
[[sets]]
name = "cold"
kind = "temperature"
temperature_data = 300
frames = 6
[sample]
n = 8
steps = 4
[model]
layers = 1
width = 8
noise_features = 4
rbf = 4
[diffusion]
sigma_max = 5.0
[train]
steps = 4
batch_size = 4
warmup_steps = 1
checkpoint_every = 4
validation_every = 4
log_every = 2
)";

Config tiny_ethanol() {
  Config config = Config::from_toml_string(kTinyEthanol, "ethanol.toml");
  config.tree["system"]["molecule"] = test::data_path("ethanol.xyz").string();
  return config;
}

TEST(ExperimentConfig, MoleculeFileGivesSpeciesAndStartAndKelvinTemperatures) {
  const ExperimentConfig experiment = read_experiment_config(tiny_ethanol());
  EXPECT_EQ(experiment.system["name"], "xtb");
  EXPECT_FALSE(experiment.system.contains("molecule"));
  EXPECT_EQ(experiment.system["species"].get<std::vector<int64_t>>(),
            (std::vector<int64_t>{6, 6, 8, 1, 1, 1, 1, 1, 1}));
  const Dataset molecule = read_geometry(test::data_path("ethanol.xyz"));
  ASSERT_TRUE(experiment.start.defined());
  EXPECT_TRUE(torch::equal(experiment.start, molecule.positions));
  EXPECT_DOUBLE_EQ(*experiment.temperature->kelvin, 500.0);
  EXPECT_DOUBLE_EQ(experiment.temperature->kT, kT_from_kelvin(500.0));
  EXPECT_DOUBLE_EQ(*experiment.sets[1].kT_data, kT_from_kelvin(300.0));

  Config default_temperature = tiny_ethanol();
  default_temperature.tree["system"].erase("temperature");
  EXPECT_DOUBLE_EQ(*read_experiment_config(default_temperature).temperature->kelvin, 500.0);
  Config in_kcal = tiny_ethanol();
  in_kcal.tree["system"].erase("temperature");
  in_kcal.set("system.kT=0.5");
  EXPECT_NEAR(*read_experiment_config(in_kcal).temperature->kelvin, 251.6, 0.1);
  Config kT_data = tiny_ethanol();
  kT_data.tree["sets"][1]["kT_data"] = 0.6;
  EXPECT_PSM_ERROR(read_experiment_config(kT_data), "sets[1]",
                   "give kT_data or temperature_data, not both");
}

class XtbPipeline : public test::ScratchDir {};

TEST_F(XtbPipeline, SimulatesFromTheMoleculeAndScoresSamplesWithXtb) {
  const ExperimentResult result =
      run_experiment(read_experiment_config(tiny_ethanol()),
                     {.out = path("run"), .progress = false, .plots = false});

  const Dataset pool = load_dataset(path("run/reference/pool.npz"));
  EXPECT_EQ(pool.num_frames(), 8);
  EXPECT_DOUBLE_EQ(pool.temperature_kelvin.value_or(0), 500.0);
  // The reference settings override the Langevin preset (16 chains, 4000 burn-in steps, thin 200).
  EXPECT_EQ(pool.provenance["trajectories"], 2);
  EXPECT_EQ(pool.provenance["burn_in"], 10);
  EXPECT_EQ(pool.provenance["record_every"], 5);
  // The MD's thermometers are kept with the frames and quoted by the report.
  EXPECT_TRUE(pool.provenance["thermometers"].contains("kinetic")) << pool.provenance.dump();
  EXPECT_TRUE(pool.provenance["thermometers"].contains("C-H")) << pool.provenance.dump();
  std::ifstream report(path("run/report.md"));
  const std::string text((std::istreambuf_iterator<char>(report)),
                         std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("Thermometers of the test set's MD (kT 0.9936): C-C "), std::string::npos)
      << text;
  // 10-25 fs from the file's geometry: the C-C bond is intact (a lattice start would have none).
  const auto cc = (pool.positions.select(1, 0) - pool.positions.select(1, 1)).norm(2, -1);
  EXPECT_TRUE(((cc > 1.4) & (cc < 1.65)).all().item<bool>()) << cc;
  const Dataset cold = load_dataset(path("run/sets/cold.npz"));
  EXPECT_NEAR(cold.sampled_kT.value_or(0), kT_from_kelvin(300.0), 1e-12);
  EXPECT_DOUBLE_EQ(cold.temperature_kelvin.value_or(0), 500.0);

  ASSERT_EQ(result.rows.size(), 4u);  // per set: the MD noise floor, psm
  EXPECT_EQ(result.rows[0].model, "md");
  EXPECT_EQ(result.rows[0].metrics.energy_failures, 0);
  for (const auto& row : result.rows) {
    // Generated samples have xTB energies; frames xtb fails on (this model is barely trained)
    // are left out of energy W1 and counted as outliers.
    ASSERT_TRUE(row.metrics.outlier_fraction.has_value()) << row.set << " " << row.model;
    EXPECT_TRUE(row.metrics.energy_w1.has_value() ||
                row.metrics.energy_failures == row.metrics.n_generated)
        << row.set << " " << row.model;
    ASSERT_TRUE(row.molecular.has_value()) << row.set << " " << row.model;
    // No second xTB energy W1 on a subset of frames: the energy metrics are xTB's already.
    EXPECT_FALSE(row.molecular->potential_energy.has_value());
  }
}

#endif  // PSM_WITH_XTB

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
    EXPECT_TRUE(std::isfinite(row.metrics.energy_w1.value())) << row.set << " " << row.model;
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
  // The provenance of `psm sample`: the checkpoint, its step and every sampler option.
  const CheckpointInfo hot_psm = read_checkpoint_info(path("run/models/hot/psm/checkpoint.pt"));
  EXPECT_EQ(samples.provenance.at("command"), "psm run");
  EXPECT_EQ(samples.provenance.at("checkpoint"), path("run/models/hot/psm/checkpoint.pt").string());
  EXPECT_EQ(samples.provenance.at("training_step"), 12);
  EXPECT_EQ(samples.provenance.at("steps"), 6);
  EXPECT_EQ(samples.provenance.at("sigma_max"), hot_psm.loss.schedule.sigma_max);
  EXPECT_EQ(samples.provenance.at("diverged"), 0);
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
  EXPECT_DOUBLE_EQ(*again.rows[4].metrics.energy_w1, *result.rows[4].metrics.energy_w1);

  // The number of threads says how fast, not what: another one still reuses every stage.
  Config threaded = tiny_config();
  threaded.set("threads=2");
  run_experiment(read_experiment_config(threaded), options);
  EXPECT_EQ(fs::last_write_time(path("run/models/hot/psm/checkpoint.pt")), model_time);

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

/// A tiny water experiment on rMD17-layout files (no [system]: the files define it).
constexpr const char* kTinyWater = R"(
name = "water"
seed = 4
variants = ["psm"]
[reference]
pool = ["train_a.npz", "train_b.npz"]
test = "test_a.npz"
[[sets]]
name = "limited"
kind = "limited"
frames = 30
[[sets]]
name = "cold"
kind = "energy"
quantile = 0.3
[sample]
n = 40
steps = 4
[eval]
xtb_frames = 3
[model]
layers = 1
width = 8
noise_features = 4
rbf = 4
[diffusion]
sigma_max = 3.0
[train]
steps = 6
batch_size = 8
warmup_steps = 1
checkpoint_every = 6
validation_every = 6
log_every = 3
)";

class MolecularPipeline : public test::ScratchDir {
 protected:
  /// Frames with ids first..last-1 of one harmonic water trajectory (frame id k is the same
  /// configuration in every file), written in the rMD17 layout.
  void write_frames(const std::string& file, int64_t first, int64_t last) const {
    torch::Generator rng = make_generator(5);
    const int64_t total = 120;
    const torch::Tensor minimum =
        torch::tensor({0.0, 0.0, 0.12, 0.0, 0.76, -0.47, 0.0, -0.76, -0.47}, torch::kFloat64)
            .view({1, 3, 3});
    const torch::Tensor displacement = 0.03 * torch::randn({total, 3, 3}, rng, torch::kFloat64);
    const double k = 50.0;  // kcal/mol/Å²
    const auto frames = torch::indexing::Slice(first, last);
    write_npz(path(file),
              {{"nuclear_charges", torch::tensor({8, 1, 1}, torch::kUInt8)},
               {"coords", (minimum + displacement).index({frames})},
               {"energies", (0.5 * k * displacement.square().sum({1, 2})).index({frames})},
               {"forces", (-k * displacement).index({frames})},
               {"old_indices", torch::arange(first, last, torch::kInt64)}});
  }

  Config config() const {
    Config config = Config::from_toml_string(kTinyWater, "water.toml");
    config.tree["reference"]["directory"] = path("data").string();
    return config;
  }

  void SetUp() override {
    test::ScratchDir::SetUp();
    fs::create_directories(path("data"));
    write_frames("data/train_a.npz", 0, 40);
    write_frames("data/train_b.npz", 30, 70);  // ids 30..39 repeat train_a's
    write_frames("data/test_a.npz", 50, 120);  // ids 50..69 are in the pool files
  }
};

TEST_F(MolecularPipeline, ReadsFileListsAndRefusesSamplingKinds) {
  const ExperimentConfig experiment = read_experiment_config(config());
  EXPECT_TRUE(experiment.system.is_null());
  EXPECT_FALSE(experiment.temperature.has_value());
  ASSERT_EQ(experiment.reference.pool_files.size(), 2u);
  EXPECT_EQ(experiment.reference.pool_files[1], (path("data") / "train_b.npz").string());
  ASSERT_EQ(experiment.reference.test_files.size(), 1u);  // a single name is a list of one
  EXPECT_EQ(experiment.xtb_frames, 3);

  Config hot = config();
  hot.tree["sets"][1] = {{"name", "hot"}, {"kind", "temperature"}, {"kT_data", 2.0}};
  EXPECT_PSM_ERROR(read_experiment_config(hot), "sets[1]", "no potential to sample");
  Config no_test = config();
  no_test.tree["reference"].erase("test");
  EXPECT_PSM_ERROR(read_experiment_config(no_test), "water.toml", "[system]");
  Config not_files = config();
  not_files.tree["reference"]["pool"] = nlohmann::json::array({"a.npz", 3});
  EXPECT_PSM_ERROR(read_experiment_config(not_files), "reference.pool", "list of file names");

  Config missing = config();
  missing.tree["reference"]["pool"] = "train_c.npz";
  EXPECT_PSM_ERROR(
      run_experiment(read_experiment_config(missing), {.out = path("run"), .progress = false}),
      "train_c.npz", "not found");
  EXPECT_FALSE(fs::exists(path("run")));
}

TEST_F(MolecularPipeline, DropsRepeatedFramesAndReportsMolecularMetrics) {
  const ExperimentConfig experiment = read_experiment_config(config());
  const ExperimentResult result =
      run_experiment(experiment, {.out = path("run"), .progress = false, .plots = false});

  const Dataset pool = load_dataset(path("run/reference/pool.npz"));
  EXPECT_EQ(pool.num_frames(), 70);  // 80 frames, 10 repeated
  EXPECT_EQ(pool.provenance["duplicate_frames_dropped"], 10);
  EXPECT_NEAR(pool.kT, 0.99360, 1e-5);  // MD17: 500 K
  const Dataset test = load_dataset(path("run/reference/test.npz"));
  EXPECT_EQ(test.num_frames(), 50);  // ids 70..119
  EXPECT_EQ(test.provenance["pool_frames_dropped"], 20);
  EXPECT_EQ(load_dataset(path("run/sets/cold.npz")).num_frames(), 21);  // lowest 30 % of 70

  ASSERT_EQ(result.rows.size(), 4u);  // per set: the pool subset, psm
  EXPECT_EQ(result.rows[0].model, "pool");
  EXPECT_TRUE(result.rows[0].metrics.energy_w1.has_value());   // the data's own energies
  EXPECT_FALSE(result.rows[1].metrics.energy_w1.has_value());  // no potential for the samples
  for (const auto& row : result.rows) {
    ASSERT_TRUE(row.molecular.has_value()) << row.set << " " << row.model;
    EXPECT_EQ(row.molecular->bonds.size(0), 2);  // O-H, O-H
  }

  std::ifstream in(path("run/metrics.json"));
  const auto metrics = nlohmann::json::parse(in);
  const auto& molecular = metrics.at("cold").at("psm").at("molecular");
  for (const char* key : {"bond_length_js_mean", "distance_density_mae", "intact_fraction"}) {
    EXPECT_TRUE(molecular.at(key).is_number()) << key;
  }
  EXPECT_TRUE(metrics.at("cold").at("psm").at("energy_w1").is_null());
  std::ifstream set_report(path("run/report/limited/metrics.json"));
  EXPECT_TRUE(nlohmann::json::parse(set_report).at("models").at(1).contains("molecular"));
#ifdef PSM_WITH_XTB
  EXPECT_TRUE(molecular.contains("potential_energy"));
#endif
}

TEST_F(ExperimentPipeline, RunsInPiecesWithOnly) {
  const ExperimentConfig experiment = read_experiment_config(tiny_config());
  RunOptions options{.out = path("run"), .progress = false, .plots = false};
  options.only = {"limited/psm"};
  const ExperimentResult first = run_experiment(experiment, options);
  ASSERT_EQ(first.rows.size(), 3u);  // limited: mcmc, psm; hot: mcmc only
  EXPECT_EQ(first.rows[1].model, "psm");
  EXPECT_EQ(first.rows[2].set, "hot");
  EXPECT_FALSE(fs::exists(path("run/sets/hot.npz")));
  EXPECT_FALSE(fs::exists(path("run/models/limited/dsm")));
  std::stringstream report;
  report << std::ifstream(path("run/report.md")).rdbuf();
  EXPECT_NE(report.str().find("Not run yet: limited/dsm (not trained)"), std::string::npos)
      << report.str();

  // A model interrupted part way (here: trained to 6 of its 12 steps) is reported as partial.
  const Config dsm =
      training_config(experiment, experiment.sets[0], path("run/sets/limited.npz").string(), "dsm");
  Config interrupted = dsm;
  interrupted.set("train.steps=6");
  TrainingRun(interrupted, path("run/models/limited/dsm"), {.progress = false}).train();
  run_experiment(experiment, options);
  report = std::stringstream();
  report << std::ifstream(path("run/report.md")).rdbuf();
  EXPECT_NE(report.str().find("limited/dsm (partial: step 6 of 12)"), std::string::npos)
      << report.str();

  options.only = {"hot"};
  const ExperimentResult second = run_experiment(experiment, options);
  ASSERT_EQ(second.rows.size(), 5u);  // limited's psm comes from the first run
  EXPECT_DOUBLE_EQ(*second.rows[1].metrics.energy_w1, *first.rows[1].metrics.energy_w1);
  EXPECT_EQ(second.rows[4].model, "psm");

  options.only = {"limited/hybrid"};
  EXPECT_PSM_ERROR(run_experiment(experiment, options), "--only limited/hybrid",
                   "no variant 'hybrid'", "dsm, psm");
  options.only = {"cold"};
  EXPECT_PSM_ERROR(run_experiment(experiment, options), "no set named 'cold'", "limited, hot");
}

TEST_F(ExperimentPipeline, TrainsEachSetWithItsSigmaCAndReportsIt) {
  Config config = tiny_with("variants=[\"hybrid\"]");
  config.tree["sets"][1]["sigma_c"] = 0.3;
  const RunOptions options{.out = path("run"), .progress = false, .plots = false};
  run_experiment(read_experiment_config(config), options);

  const auto sigma_c = [&](const char* set) {
    return read_checkpoint_info(path("run/models") / set / "hybrid/checkpoint.pt").loss.sigma_c;
  };
  EXPECT_DOUBLE_EQ(sigma_c("hot").value(), 0.3);
  const double estimated = sigma_c("limited").value();
  EXPECT_NE(estimated, 0.3);
  std::stringstream report;
  report << std::ifstream(path("run/report.md")).rdbuf();
  EXPECT_NE(report.str().find("hybrid: σ_c = 0.3 (the set's sigma_c)."), std::string::npos);
  EXPECT_NE(report.str().find(fmt::format("hybrid: σ_c = {:.3g} (estimated from the training "
                                          "forces).",
                                          estimated)),
            std::string::npos)
      << report.str();
}

TEST_F(ExperimentPipeline, LikelihoodsGiveImportanceWeightsAndReweightedRows) {
  Config config = tiny_with("variants=[\"psm\"]");
  config.set("sample.likelihood=true");
  config.set("sample.likelihood_steps=20");
  config.set("eval.min_ess=0");  // a barely trained model: its weights must still give a row
  RunOptions options{.out = path("run"), .progress = false, .plots = false};
  options.only = {"limited"};
  const ExperimentResult result = run_experiment(read_experiment_config(config), options);

  const Dataset samples = load_dataset(path("run/samples/limited_psm.npz"));
  ASSERT_TRUE(samples.has_log_q());
  ASSERT_TRUE(samples.log_weights.defined());
  EXPECT_TRUE(torch::isfinite(samples.log_q).all().item<bool>());
  // q is the density of the samplers' output, after the final denoising step.
  EXPECT_EQ(samples.provenance.at("denoise_final"), true);
  EXPECT_EQ(samples.provenance.at("likelihood").at("denoised"), true);
  ASSERT_EQ(result.rows.size(), 4u);  // limited: mcmc, psm, psm reweighted; hot: mcmc
  EXPECT_EQ(result.rows[2].model, "psm reweighted");

  // The reweighted row measures the samples with their normalised importance weights.
  Samples weighted{.positions = samples.positions,
                   .energies = samples.energies,
                   .weights = torch::softmax(samples.log_weights, 0)};
  const Samples reference =
      samples_for_metrics(load_dataset(path("run/reference/test.npz")), nullptr);
  const Metrics expected = compute_metrics(weighted, reference);
  EXPECT_NEAR(*result.rows[2].metrics.energy_w1, *expected.energy_w1, 1e-9);
  EXPECT_NEAR(result.rows[2].metrics.distance_tvd, expected.distance_tvd, 1e-9);
  EXPECT_NE(*result.rows[2].metrics.energy_w1, *result.rows[1].metrics.energy_w1);

  std::stringstream report;
  report << std::ifstream(path("run/report.md")).rdbuf();
  EXPECT_NE(report.str().find("| psm reweighted |"), std::string::npos) << report.str();
  EXPECT_NE(report.str().find("ESS fraction"), std::string::npos);
  std::ifstream metrics(path("run/metrics.json"));
  const nlohmann::json weights =
      nlohmann::json::parse(metrics).at("limited").at("psm").at("importance_weights");
  EXPECT_NEAR(weights.at("ess_fraction").get<double>(), kish_ess_fraction(samples.log_weights),
              1e-12);
}

TEST_F(ExperimentPipeline, DataOnlyStopsAfterTheTrainingSets) {
  const ExperimentConfig experiment = read_experiment_config(tiny_config());
  RunOptions options{.out = path("run"), .progress = false, .plots = false};
  options.only = {"hot"};
  options.data_only = true;
  const ExperimentResult data = run_experiment(experiment, options);
  EXPECT_TRUE(data.rows.empty());
  EXPECT_TRUE(data.report.empty());
  for (const char* file : {"reference/pool.npz", "reference/test.npz", "sets/hot.npz"}) {
    EXPECT_TRUE(fs::exists(path("run") / file)) << file;
  }
  EXPECT_FALSE(fs::exists(path("run/sets/limited.npz")));  // not selected
  EXPECT_FALSE(fs::exists(path("run/models")));
  EXPECT_FALSE(fs::exists(path("run/report.md")));

  // Other data may not reuse the directory; another network may, while no model exists.
  Config other_data = tiny_config();
  other_data.set("reference.thin=6");
  EXPECT_PSM_ERROR(run_experiment(read_experiment_config(other_data), options),
                   "was made with other data", "--fresh");
  Config wider = tiny_config();
  wider.set("model.width=12");
  const auto pool_time = fs::last_write_time(path("run/reference/pool.npz"));

  // The same run directory then trains from those files.
  options.data_only = false;
  const ExperimentResult models = run_experiment(read_experiment_config(wider), options);
  EXPECT_EQ(models.rows.size(), 4u);  // limited: mcmc; hot: mcmc, dsm, psm
  EXPECT_TRUE(fs::exists(path("run/models/hot/psm/checkpoint.pt")));
  EXPECT_EQ(fs::last_write_time(path("run/reference/pool.npz")), pool_time);
  // With models made, the whole configuration has to agree.
  EXPECT_PSM_ERROR(run_experiment(experiment, options), "another configuration", "--fresh");
}

/// The run directory `psm run` leaves when it is stopped after `samples` of the tiny
/// experiment's pool frames: its experiment.toml and the state of the pool's simulation with
/// `seed` (the pool's is the experiment's seed on the "pool" stream).
void interrupted_run(const ExperimentConfig& experiment, const fs::path& out, int64_t samples,
                     uint64_t seed) {
  SimulationSettings settings{.kT = 1.0,
                              .samples = samples,
                              .chains = 20,
                              .burn_in = 200,
                              .thin = 5,
                              .seed = seed,
                              .checkpoint = out / "reference/pool.state"};
  fs::create_directories(out / "reference");
  std::ofstream(out / "experiment.toml") << experiment.config.to_toml();
  simulate(*make_system({{"name", "dw4"}}), settings);
}

TEST_F(ExperimentPipeline, ResumesAnInterruptedReferenceSimulation) {
  const ExperimentConfig experiment = read_experiment_config(tiny_config());
  RunOptions options{.out = path("whole"), .progress = false, .plots = false};
  options.only = {"hot"};
  options.data_only = true;
  run_experiment(experiment, options);
  for (const char* file : {"reference/pool.state", "reference/test.state", "sets/hot.state"}) {
    EXPECT_FALSE(fs::exists(path("whole") / file)) << file << ": the finished file supersedes it";
  }

  // Resumed from 100 frames, the pool is the uninterrupted run's. That the run reads the state
  // at all shows in the last part, where a state from another seed stops it.
  const uint64_t pool_seed = derive_seed(3, 0x706f6f6c);  // seed 3 on the stream "pool"
  interrupted_run(experiment, path("resumed"), 100, pool_seed);
  options.out = path("resumed");
  run_experiment(experiment, options);
  const Dataset whole = load_dataset(path("whole/reference/pool.npz"));
  const Dataset resumed = load_dataset(path("resumed/reference/pool.npz"));
  EXPECT_TRUE(torch::equal(resumed.positions, whole.positions));
  EXPECT_FALSE(fs::exists(path("resumed/reference/pool.state")));

  // A state from other settings stops the run, names the file and keeps it.
  interrupted_run(experiment, path("other"), 100, pool_seed + 1);
  options.out = path("other");
  EXPECT_PSM_ERROR(run_experiment(experiment, options), "pool.state: state was made with seed");
  EXPECT_PSM_ERROR(run_experiment(experiment, options), "pass --fresh");
  EXPECT_TRUE(fs::exists(path("other/reference/pool.state")));
}

TEST_F(ExperimentPipeline, ReportsAModelWhoseSamplingFailedAndGoesOn) {
  const ExperimentConfig experiment = read_experiment_config(tiny_config());
  RunOptions options{.out = path("run"), .progress = false, .plots = false};
  options.only = {"hot"};
  run_experiment(experiment, options);
  // As the run leaves it when every sample of hot/psm diverges.
  fs::remove(path("run/samples/hot_psm.npz"));
  std::ofstream(path("run/samples/hot_psm.failed")) << "every sample diverged";

  const ExperimentResult rerun = run_experiment(experiment, options);
  for (const auto& row : rerun.rows) EXPECT_FALSE(row.set == "hot" && row.model == "psm");
  EXPECT_EQ(rerun.rows.size(), 3u);                           // limited: mcmc; hot: mcmc, dsm
  EXPECT_FALSE(fs::exists(path("run/samples/hot_psm.npz")));  // not sampled again
  std::stringstream report;
  report << std::ifstream(path("run/report.md")).rdbuf();
  EXPECT_NE(report.str().find("Sampling failed, no row: hot/psm (every sample diverged)"),
            std::string::npos)
      << report.str();
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
