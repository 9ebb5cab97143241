#include <gtest/gtest.h>

#include "psm/core/config.h"
#include "test_util.h"

namespace {

using psm::Config;
using psm::ConfigSection;

TEST(Config, ParsesTomlAndAppliesOverrides) {
  Config config =
      Config::from_toml_string("system = \"lj13\"\n[train]\nsteps = 100\nlr = 1e-3\n", "test.toml");
  config.set("train.steps=2000");
  config.set("train.ema=0.999");
  config.set("system=dw4");
  config.set("model.layers=[1, 2]");
  ConfigSection root(config.tree, "", config.source);
  EXPECT_EQ(root.get<std::string>("system", ""), "dw4");
  ConfigSection train = root.section("train");
  EXPECT_EQ(train.get<int64_t>("steps", 0), 2000);
  EXPECT_DOUBLE_EQ(train.get<double>("lr", 0.0), 1e-3);
  EXPECT_DOUBLE_EQ(train.get<double>("ema", 0.0), 0.999);
  EXPECT_EQ(train.get<int64_t>("batch", 7), 7);
  EXPECT_NO_THROW(train.finish());
  EXPECT_EQ(config.tree["model"]["layers"].size(), 2u);
}

TEST(Config, RejectsTyposWrongTypesAndMissingKeys) {
  Config config = Config::from_toml_string("[train]\nstepz = 100\nlr = \"fast\"\n", "x.toml");
  ConfigSection train = ConfigSection(config.tree, "", config.source).section("train");
  try {
    train.get<double>("lr", 1.0);
    FAIL();
  } catch (const psm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("x.toml: key 'train.lr': expected a number"),
              std::string::npos)
        << e.what();
  }
  try {
    train.finish();
    FAIL();
  } catch (const psm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key(s) train.stepz"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(train.require<int64_t>("steps"), psm::Error);
}

TEST(Config, ReportsSyntaxErrorsWithLine) {
  try {
    Config::from_toml_string("a = 1\nb = = 2\n", "bad.toml");
    FAIL();
  } catch (const psm::Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("bad.toml:2:", 0), 0u) << e.what();
  }
  Config config;
  EXPECT_THROW(config.set("novalue"), psm::Error);
}

TEST(Config, RoundTripsThroughToml) {
  Config config =
      Config::from_toml_string("name = \"x\"\n[a]\nn = 3\nv = [1.5, 2.5]\nflag = true\n", "t.toml");
  Config again = Config::from_toml_string(config.to_toml(), "again");
  EXPECT_EQ(config.tree, again.tree);
}

// Found by the TOML fuzzer: a quoted key of one tab read fine, but toml++ wrote it back bare
// ("[\t]"), which it then could not read. psm's keys are bare keys; others are refused.
TEST(Config, KeysThatAreNotBareKeysAreRefused) {
  EXPECT_PSM_ERROR(Config::from_toml_string("[\t\"\t\"]\na = 1\n", "t.toml"),
                   "t.toml: key \"\\t\" is not a psm config key");
  EXPECT_PSM_ERROR(Config::from_toml_string("\"x y\" = 1\n", "t.toml"), "key \"x y\"");
  Config config;
  EXPECT_PSM_ERROR(config.set("train.st eps=3"), "--set 'train.st eps=3': key \"st eps\"");
  EXPECT_PSM_ERROR(config.set("sets=[{\"a b\" = 1}]"), "key \"a b\"");
  config.set("train.warmup_steps=3");
  EXPECT_EQ(Config::from_toml_string(config.to_toml(), "again").tree, config.tree);
}

}  // namespace
