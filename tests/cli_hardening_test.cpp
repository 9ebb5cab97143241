// Bad outputs, impossible sizes and numbers that are not numbers, through the psm binary: each
// refused before any work with a one-line error, or reported for what it is.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "psm/core/run_lock.h"
#include "psm/io/dataset.h"
#include "psm/io/file_bytes.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using psm::test::data_path;
using psm::test::run_psm;
using psm::test::RunResult;

int64_t line_count(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// A printed NaN ("nan", "-nan"), as a word: "provenance" does not count.
bool prints_nan(const std::string& text) {
  return std::regex_search(text, std::regex(R"((^|[^A-Za-z])nan([^A-Za-z]|$))"));
}

class CliHardening : public psm::test::ScratchDir {
 protected:
  /// Six ethanol frames (the file's geometry, shifted) with forces and energies, at 500 K.
  fs::path ethanol_dataset() const {
    const psm::Dataset molecule =
        psm::load_dataset(data_path("ethanol.xyz"), {.temperature_kelvin = 500.0});
    psm::Dataset data = molecule;
    data.positions = torch::cat({molecule.positions, molecule.positions + 0.01,
                                 molecule.positions - 0.01, molecule.positions + 0.02,
                                 molecule.positions - 0.02, molecule.positions + 0.03});
    data.forces = 0.1 * torch::ones_like(data.positions);
    data.energies = torch::arange(6, torch::kFloat64);
    const fs::path file = path("base.npz");
    psm::save_dataset(file, data);
    return file;
  }

  /// A short LJ13 run: 64 frames with energies and forces.
  fs::path lj13_reference(const std::string& name) const {
    const RunResult made = run_psm(
        "--threads 1 simulate --system lj13 --chains 8 --burn-in 200 --thin 2 "
        "--samples 64 --no-progress --out " +
        path(name).string());
    EXPECT_EQ(made.exit_code, 0) << made.output;
    return path(name);
  }

  /// Expects a failure with a one-line message that contains `part` (exit code 1 for psm's
  /// errors, CLI11's own for option errors).
  static void expect_error(const RunResult& result, const std::string& part) {
    EXPECT_NE(result.exit_code, 0) << result.output;
    EXPECT_EQ(line_count(result.output), 1) << result.output;
    EXPECT_TRUE(contains(result.output, part)) << "lacks '" << part << "': " << result.output;
  }
};

// Issue items 1 and 11: the extension names the format; a path that cannot take it is refused
// before the work.
TEST_F(CliHardening, SubsetWritesTheFormatItsOutputExtensionNames) {
  const fs::path base = ethanol_dataset();
  const RunResult xyz = run_psm("data subset --kind limited --frames 3 --in " + base.string() +
                                " --out " + path("sub.xyz").string());
  ASSERT_EQ(xyz.exit_code, 0) << xyz.output;
  EXPECT_TRUE(psm::read_file_bytes(path("sub.xyz")).starts_with("9\n"));
  const psm::Dataset subset = psm::load_dataset(path("sub.xyz"));
  EXPECT_EQ(subset.num_frames(), 3);
  EXPECT_NEAR(subset.kT, psm::load_dataset(base).kT, 1e-9);
  const RunResult info = run_psm("data info " + path("sub.xyz").string());
  EXPECT_EQ(info.exit_code, 0) << info.output;

  expect_error(run_psm("data subset --kind limited --frames 3 --in " + base.string() + " --out " +
                       path("sub.txt").string()),
               "sub.txt: psm writes datasets as .npz or extended XYZ (.xyz, .extxyz), not '.txt'");
  EXPECT_FALSE(fs::exists(path("sub.txt")));
}

TEST_F(CliHardening, SimulateRefusesABadOutputBeforeSimulating) {
  const std::string simulate =
      "--threads 1 simulate --system dw4 --chains 4 --burn-in 10 --thin 1 --samples 8 "
      "--no-progress --out ";
  expect_error(run_psm(simulate + path("x.xyz").string()),
               "extended XYZ holds 3-D positions, these are 2-D");
  expect_error(run_psm(simulate + path("x.txt").string()), "not '.txt'");
  fs::create_directories(path("folder.npz"));
  expect_error(run_psm(simulate + path("folder.npz").string()), "is a directory");
  std::ofstream(path("plain")) << "a file";
  expect_error(run_psm(simulate + (path("plain") / "x.npz").string()), "is not a directory");
  // LJ13 is 3-D: extended XYZ it is.
  const RunResult lj = run_psm(
      "--threads 1 simulate --system lj13 --chains 4 --burn-in 10 --thin 1 --samples 8 "
      "--no-progress --out " +
      path("lj.xyz").string());
  ASSERT_EQ(lj.exit_code, 0) << lj.output;
  EXPECT_EQ(psm::load_dataset(path("lj.xyz")).num_frames(), 8);
}

TEST_F(CliHardening, SampleRefusesABadOutputBeforeLoadingAnything) {
  expect_error(run_psm("sample --checkpoint " + path("none.pt").string() + " --out " +
                       path("x.txt").string()),
               "not '.txt'");
}

// Item 3.
TEST_F(CliHardening, SubsetRefusesToOverwriteItsInput) {
  const fs::path base = ethanol_dataset();
  const std::string before = psm::read_file_bytes(base);
  expect_error(run_psm("data subset --kind limited --frames 3 --in " + base.string() + " --out " +
                       base.string()),
               "the output would replace the input");
  // The same file by another name.
  expect_error(run_psm("data subset --kind limited --frames 3 --in " + base.string() + " --out " +
                       (dir_ / "." / "base.npz").string()),
               "the output would replace the input");
  EXPECT_EQ(psm::read_file_bytes(base), before);
}

// Item 4: 128 chains that keep one frame each cannot measure tau; the samples are still written.
TEST_F(CliHardening, SimulateWritesSamplesWhenTauCannotBeEstimated) {
  const RunResult result = run_psm(
      "--threads 1 simulate --system lj13 --samples 100 --burn-in 20 --thin 1 --no-progress "
      "--out " +
      path("lj13.npz").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output,
                       "tau(energy)        not estimated: each of the 128 chains "
                       "kept 1 frame(s)"))
      << result.output;
  EXPECT_EQ(psm::load_dataset(path("lj13.npz")).num_frames(), 100);
}

// Item 5.
TEST_F(CliHardening, ImpossibleSizesAreRefusedWithWhatWasAskedFor) {
  expect_error(run_psm("simulate --system lj13 --chains 10000000000 --samples 10 --no-progress "
                       "--out " +
                       path("x.npz").string()),
               "simulate: 10000000000 chains of 13 atoms needs about");
  std::ofstream(path("huge.xyz")) << "1000000000000\nkT=1 units=reduced\nH 0 0 0\n";
  expect_error(run_psm("data info " + path("huge.xyz").string()),
               "the count line says 1000000000000 atoms");
  EXPECT_FALSE(fs::exists(path("x.npz")));
}

// Item 6: a frame at 1e300 and a one-atom file have no finite force check.
TEST_F(CliHardening, DataInfoDoesNotCallNonFiniteStatisticsConsistent) {
  const fs::path base = ethanol_dataset();
  psm::Dataset data = psm::load_dataset(base);
  data.positions[0] = data.positions[0] * 1e300;
  psm::save_dataset(path("far.npz"), data);
  const RunResult far = run_psm("data info " + path("far.npz").string());
  ASSERT_EQ(far.exit_code, 0) << far.output;
  EXPECT_TRUE(contains(far.output, "kT from forces (virial) cannot be estimated")) << far.output;
  EXPECT_FALSE(contains(far.output, "consistent")) << far.output;
  EXPECT_FALSE(prints_nan(far.output)) << far.output;

  psm::Dataset atom = data.select(torch::tensor({1, 2}, torch::kInt64));
  atom.positions = atom.positions.narrow(1, 0, 1).contiguous();
  atom.forces = atom.forces.narrow(1, 0, 1).contiguous();
  atom.species = {6};
  psm::save_dataset(path("atom.npz"), atom);
  const RunResult one = run_psm("data info " + path("atom.npz").string());
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_FALSE(prints_nan(one.output)) << one.output;
}

TEST_F(CliHardening, EvalCountsDivergedSamplesAsOutliers) {
  const fs::path reference = lj13_reference("reference.npz");
  psm::Dataset samples = psm::load_dataset(reference);
  samples.positions[0] = samples.positions[0] * 1e300;  // its stored energy stays finite
  psm::save_dataset(path("samples.npz"), samples);
  const RunResult result =
      run_psm("eval --no-plots --samples " + path("samples.npz").string() + " --reference " +
              reference.string() + " --out " + path("eval").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "1 of 64 frames have coordinates too large"))
      << result.output;
  const std::string metrics = psm::read_file_bytes(path("eval") / "metrics.json");
  const nlohmann::json json = nlohmann::json::parse(metrics);
  EXPECT_TRUE(contains(json.dump(), "\"outlier_fraction\":0.015625")) << metrics;
}

// Item 10: --system is not silently ignored.
TEST_F(CliHardening, EvalRefusesASystemTheFilesAreNotOf) {
  const fs::path reference = lj13_reference("reference.npz");
  const RunResult result =
      run_psm("eval --no-plots --system dw4 --samples " + reference.string() + " --reference " +
              reference.string() + " --out " + path("eval").string());
  expect_error(result, "its frames are of system {");
  EXPECT_TRUE(contains(result.output, "\"name\":\"lj13\"")) << result.output;
  EXPECT_TRUE(contains(result.output, "not of --system dw4")) << result.output;
}

// Items 7 and 10: ranges and seeds in the user's terms.
TEST_F(CliHardening, OptionErrorsSayWhatIsWrong) {
  const std::string sample =
      "sample --checkpoint " + path("none.pt").string() + " --out " + path("x.npz").string();
  const RunResult zero = run_psm(sample + " --n 0");
  expect_error(zero, "--n: must be a positive number, got 0");
  EXPECT_FALSE(contains(zero.output, "179769313")) << zero.output;
  expect_error(run_psm(sample + " --sigma-max inf"),
               "--sigma-max: must be a positive number, got inf");
  expect_error(run_psm("simulate --system dw4 --seed -1 --out " + path("x.npz").string()),
               "a seed is an integer from 0 to 18446744073709551615, got -1");
  expect_error(
      run_psm("simulate --system dw4 --seed 18446744073709551616 --out " + path("x.npz").string()),
      "a seed is an integer");
  EXPECT_FALSE(fs::exists(path("x.npz")));
}

// Item 8: a resumed run reports the CPU time of the whole run.
TEST_F(CliHardening, ResumedSimulationCountsTheCpuTimeOfTheWholeRun) {
  const std::string simulate =
      "--threads 1 simulate --system lj13 --chains 8 --burn-in 2000 --thin 2 --samples 64 "
      "--no-progress --checkpoint " +
      path("state.pt").string() + " --out ";
  ASSERT_EQ(run_psm(simulate + path("first.npz").string()).exit_code, 0);
  const RunResult resumed = run_psm(simulate + path("resumed.npz").string() + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const double first = psm::load_dataset(path("first.npz")).provenance.at("cpu_seconds");
  const double whole = psm::load_dataset(path("resumed.npz")).provenance.at("cpu_seconds");
  EXPECT_GT(first, 0.0);
  // The resumed process took no step: all its sampling time is the first run's.
  EXPECT_GE(whole, first);
}

// Item 2 for simulation state files.
TEST_F(CliHardening, ASecondSimulationOnTheSameStateFileIsRefused) {
  const psm::RunLock held = psm::lock_state_file(path("state.pt"));
  expect_error(run_psm("simulate --system dw4 --no-progress --checkpoint " +
                       path("state.pt").string() + " --out " + path("x.npz").string()),
               "state.pt: in use by another psm process (pid ");
  EXPECT_FALSE(fs::exists(path("x.npz")));
}

TEST_F(CliHardening, ASecondRunInTheSameDirectoryIsRefused) {
  const psm::RunLock held = psm::lock_run_directory(path("run"));
  expect_error(run_psm("run --no-progress --no-plots --out " + path("run").string()),
               "run: in use by another psm process");
}

}  // namespace
