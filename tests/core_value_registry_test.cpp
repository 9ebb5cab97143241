// The typed name tables of configs and flags: one-line errors that list the known names.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "model/internal/fused_ops.h"
#include "psm/core/value_registry.h"
#include "psm/data/subsets.h"
#include "psm/diffusion/sampler.h"
#include "psm/experiment/experiment_config.h"
#include "psm/model/activation.h"
#include "psm/simulate/simulation.h"
#include "test_util.h"

namespace {

enum class Colour { red, green };

TEST(ValueRegistry, FindsValuesAndCanonicalNames) {
  const psm::ValueRegistry<Colour> colours(
      "colour", {{"red", Colour::red}, {"green", Colour::green}, {"verde", Colour::green}});
  EXPECT_EQ(colours.get("verde"), Colour::green);
  EXPECT_EQ(colours.name_of(Colour::green), "green");
  EXPECT_TRUE(colours.contains("red"));
  EXPECT_FALSE(colours.contains("blue"));
  EXPECT_EQ(colours.names(), (std::vector<std::string>{"red", "green", "verde"}));
  EXPECT_PSM_ERROR(colours.get("blue"), "unknown colour 'blue'", "(known: red, green, verde)");
}

TEST(ValueRegistry, RefusesANameGivenTwice) {
  EXPECT_PSM_ERROR(
      psm::ValueRegistry<Colour>("colour", {{"red", Colour::red}, {"red", Colour::green}}),
      "colour 'red' is registered twice");
}

TEST(ValueRegistry, UnknownActivationIsAnErrorNotTanh) {
  EXPECT_EQ(psm::activation_from_string("gelu"), psm::Activation::gelu);
  EXPECT_EQ(psm::to_string(psm::Activation::silu), "silu");
  EXPECT_PSM_ERROR(psm::activation_from_string("swish"), "unknown activation 'swish'",
                   "silu, gelu, relu, tanh");
  const torch::Tensor x = torch::linspace(-2, 2, 16);
  EXPECT_PSM_ERROR(psm::fused::activation("swish", x.clone()), "unknown activation 'swish'");
  EXPECT_TRUE(torch::allclose(psm::fused::activation("tanh", x.clone()), torch::tanh(x)));
  EXPECT_PSM_ERROR(psm::check_activation("swish", "run.toml: model.activation"),
                   "run.toml: model.activation: unknown activation 'swish'", "relu");
  EXPECT_NO_THROW(psm::check_activation("relu", "model"));
}

TEST(ValueRegistry, TrainingSetKindsOfExperimentsAndOfDataSubset) {
  EXPECT_EQ(psm::subset_kind_from_string("torsion"), psm::SubsetKind::torsion);
  EXPECT_EQ(psm::training_set_kind_from_string("basin"), psm::SubsetKind::basin);
  // A torsion window is specific to one molecule: no kind of [[sets]].
  EXPECT_PSM_ERROR(psm::training_set_kind_from_string("torsion"),
                   "unknown training-set kind 'torsion'", "limited, temperature, basin, energy");
  EXPECT_PSM_ERROR(psm::subset_kind_from_string("hot"), "unknown training-set kind 'hot'",
                   "energy, torsion");
}

TEST(ValueRegistry, SimulationSamplers) {
  EXPECT_EQ(psm::simulation_sampler_from_string("langevin"), psm::SimulationSampler::langevin);
  EXPECT_EQ(psm::to_string(psm::SimulationSampler::mcmc), "mcmc");
  EXPECT_EQ(psm::simulation_sampler_from_string("hmc"), psm::SimulationSampler::hmc);
  EXPECT_PSM_ERROR(psm::simulation_sampler_from_string("mala"), "unknown sampler 'mala'",
                   "(known: mcmc, hmc, langevin)");
}

TEST(SamplerOptionsJson, RoundTripsEveryOption) {
  psm::SamplerOptions options;
  options.solver = psm::Solver::euler_maruyama;
  options.steps = 7;
  options.grid = psm::SigmaGrid::geometric;
  options.rho = 5;
  options.sigma_min = 0.02;
  options.sigma_max = 3;
  options.denoise_final = false;
  options.corrector_steps = 2;
  options.snr = 0.1;
  options.corrector_sigma_min = 0.5;
  options.corrector_max_step = 0.25;
  options.batch_size = 9;
  options.seed = 11;
  options.com_free = false;
  const nlohmann::json json = psm::to_json(options);
  EXPECT_EQ(json.at("solver"), "euler_maruyama");
  EXPECT_EQ(json.at("grid"), "geometric");
  EXPECT_EQ(psm::to_json(psm::sampler_options_from_json(json, "test")), json);
}

TEST(SamplerOptionsJson, AnUncappedCorrectorIsNullAndDefaultsFillGaps) {
  const psm::SamplerOptions defaults;
  EXPECT_TRUE(psm::to_json(defaults).at("corrector_max_step").is_null());
  const psm::SamplerOptions read =
      psm::sampler_options_from_json({{"steps", 12}, {"corrector_max_step", nullptr}}, "test");
  EXPECT_EQ(read.steps, 12);
  EXPECT_TRUE(std::isinf(read.corrector_max_step));
  EXPECT_EQ(read.solver, defaults.solver);
  EXPECT_EQ(read.batch_size, defaults.batch_size);
}

TEST(SamplerOptionsJson, BadOptionsNameTheSource) {
  EXPECT_PSM_ERROR(psm::sampler_options_from_json({{"stpes", 3}}, "run.json"), "run.json",
                   "unknown sampler option 'stpes'", "steps");
  EXPECT_PSM_ERROR(psm::sampler_options_from_json({{"steps", "many"}}, "run.json"), "run.json");
  EXPECT_PSM_ERROR(psm::sampler_options_from_json({{"solver", "rk4"}}, "run.json"), "run.json",
                   "unknown solver 'rk4'");
  EXPECT_PSM_ERROR(psm::sampler_options_from_json({{"steps", 0}}, "run.json"), "run.json",
                   "steps must be >= 1");
}

}  // namespace
