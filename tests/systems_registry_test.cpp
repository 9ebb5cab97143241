#include <gtest/gtest.h>

#include <string>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/systems/potential.h"

namespace {

/// Runs `make` and returns the psm::Error message, or fails the test when nothing is thrown.
template <class F>
std::string error_message(F&& make) {
  try {
    make();
  } catch (const psm::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected psm::Error";
  return "";
}

TEST(SystemRegistry, RegistersEveryBuiltinWithASummary) {
  psm::SystemRegistry registry("system");
  psm::register_builtin_systems(registry);
  for (const char* name : {"lj", "lj13", "lj55", "dw", "dw4", "xtb"}) {
    ASSERT_TRUE(registry.contains(name)) << name;
    EXPECT_FALSE(registry.summary(name).empty()) << name;
  }
}

TEST(SystemRegistry, PresetsHaveTheirSizesAndUnits) {
  const auto lj13 = psm::make_system({{"name", "lj13"}});
  EXPECT_EQ(lj13->name(), "lj13");
  EXPECT_EQ(lj13->num_atoms(), 13);
  EXPECT_EQ(lj13->dim(), 3);
  EXPECT_EQ(lj13->units(), psm::Units::reduced);
  EXPECT_EQ(psm::make_system({{"name", "lj55"}})->num_atoms(), 55);
  const auto dw4 = psm::make_system({{"name", "dw4"}});
  EXPECT_EQ(dw4->num_atoms(), 4);
  EXPECT_EQ(dw4->dim(), 2);
  const auto lj = psm::make_system({{"name", "lj"}, {"n", 6}, {"dim", 2}});
  EXPECT_EQ(lj->num_atoms(), 6);
  EXPECT_EQ(lj->dim(), 2);
}

TEST(SystemRegistry, SpecRebuildsTheSameSystem) {
  const nlohmann::json specs[] = {
      {{"name", "lj13"}},
      {{"name", "lj13"}, {"oscillator_scale", 0.0}},
      {{"name", "lj"}, {"n", 5}, {"dim", 2}, {"epsilon", 0.5}, {"rm", 1.2}},
      {{"name", "dw4"}},
      {{"name", "dw"}, {"n", 3}, {"dim", 3}, {"a", 0.2}, {"d0", 2.0}},
  };
  auto generator = psm::make_generator(1);
  for (const auto& spec : specs) {
    const auto system = psm::make_system(spec);
    const auto rebuilt = psm::make_system(system->spec());
    EXPECT_EQ(rebuilt->spec(), system->spec()) << spec.dump();
    EXPECT_EQ(rebuilt->name(), system->name());
    EXPECT_EQ(rebuilt->species(), system->species());
    EXPECT_EQ(rebuilt->dim(), system->dim());
    EXPECT_EQ(rebuilt->units(), system->units());
    const auto x = 2.0 * torch::randn({3, system->num_atoms(), system->dim()}, generator,
                                      torch::TensorOptions().dtype(torch::kFloat64));
    EXPECT_TRUE(torch::equal(rebuilt->evaluate(x).energy, system->evaluate(x).energy))
        << spec.dump();
  }
}

TEST(SystemRegistry, OptionsChangeThePotential) {
  const auto x = torch::tensor({0.0, 0.0, 0.0, 1.0, 0.0, 0.0}, torch::kFloat64).view({1, 2, 3});
  const auto plain = psm::make_system({{"name", "lj"}, {"n", 2}, {"oscillator_scale", 0.0}});
  const auto deep =
      psm::make_system({{"name", "lj"}, {"n", 2}, {"oscillator_scale", 0.0}, {"epsilon", 3.0}});
  EXPECT_NEAR(plain->evaluate(x).energy.item<double>(), -2.0, 1e-12);
  EXPECT_NEAR(deep->evaluate(x).energy.item<double>(), -6.0, 1e-12);
}

TEST(SystemRegistry, BadOptionsNameTheOption) {
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "lj"}, {"n", -3}});
            }).find("n must"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "lj"}, {"n", "13"}});
            }).find("option 'n' must be an integer"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "lj"}, {"n", 2.5}});
            }).find("option 'n' must be an integer"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "lj13"}, {"epsilon", true}});
            }).find("option 'epsilon' must be a number"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "lj13"}, {"sigma", 1.0}});
            }).find("unknown option 'sigma'"),
            std::string::npos);
  // Presets fix their size.
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "lj13"}, {"n", 13}});
            }).find("unknown option 'n'"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "dw4"}, {"c", 1.0}});
            }).find("unknown option 'c'"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "dw"}, {"c", -1.0}});
            }).find("c must"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "lj"}, {"epsilon", -1.0}});
            }).find("epsilon must"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              psm::make_system({{"name", "argon"}});
            }).find("unknown system"),
            std::string::npos);
}

}  // namespace
