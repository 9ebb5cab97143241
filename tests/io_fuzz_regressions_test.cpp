// Inputs that once crashed a parser (found by the fuzzers in fuzz/, or reported), run through
// the same parser as the fuzz target of their folder: each must now end in a psm::Error or
// parse, never crash. The fuzz tests run them too, but only in builds with libFuzzer.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "psm/core/config.h"
#include "psm/core/error.h"
#include "psm/io/dataset.h"
#include "psm/io/file_bytes.h"
#include "psm/io/npy.h"
#include "psm/io/xyz.h"
#include "psm/train/checkpoint.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

/// What the fuzz target named `parser` does with `file` (see fuzz/fuzz_PARSER.cpp).
void parse_as(const std::string& parser, const fs::path& file) {
  if (parser == "npz_dataset") {
    psm::load_dataset(file);
    return;
  }
  const std::string bytes = psm::read_file_bytes(file);
  if (parser == "npy") {
    psm::parse_npy(bytes, file.string());
  } else if (parser == "extxyz") {
    psm::parse_extxyz(bytes, file.string(), {.temperature_kelvin = 300.0}).validate(file.string());
  } else if (parser == "toml_config") {
    psm::Config config = psm::Config::from_toml_string(bytes, file.string());
    config.set("train.steps=3");
    try {
      psm::Config::from_toml_string(config.to_toml(), "written back");
    } catch (const psm::Error& e) {
      ADD_FAILURE() << file << ": psm cannot read the config it wrote: " << e.what();
    }
  } else if (parser == "checkpoint_metadata") {
    psm::checkpoint_info_from_json(nlohmann::json::parse(bytes), file.string());
  } else {
    FAIL() << "no fuzz target named " << parser;
  }
}

TEST(FuzzRegressions, EveryInputEndsInAnErrorOrAParse) {
  int64_t inputs = 0;
  for (const auto& folder : fs::directory_iterator(psm::test::data_path("fuzz_regressions"))) {
    for (const auto& input : fs::directory_iterator(folder.path())) {
      ++inputs;
      try {
        parse_as(folder.path().filename().string(), input.path());
      } catch (const psm::Error& e) {
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_GE(inputs, 1);
}

}  // namespace
