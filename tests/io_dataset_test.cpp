#include <gtest/gtest.h>

#include <fstream>
#include <limits>

#include "psm/core/units.h"
#include "psm/data/force_check.h"
#include "psm/io/dataset.h"
#include "psm/io/file_bytes.h"
#include "psm/io/npy.h"
#include "psm/io/xyz.h"
#include "test_util.h"

namespace {

using psm::test::data_path;

psm::Dataset ethanol_like(int64_t frames = 3) {
  psm::Dataset data;
  data.positions = torch::randn({frames, 9, 3}, torch::kFloat64);
  data.forces = torch::randn({frames, 9, 3}, torch::kFloat64);
  data.energies = torch::randn({frames}, torch::kFloat64) - 97000.0;
  data.species = {6, 6, 8, 1, 1, 1, 1, 1, 1};
  data.units = psm::Units::kcal_mol_angstrom;
  data.temperature_kelvin = 500.0;
  data.kT = psm::kT_from_kelvin(500.0);
  data.sampled_kT = psm::kT_from_kelvin(800.0);
  data.system = {{"name", "xtb"}, {"charge", 0}};
  data.provenance = {{"command", "psm simulate"}, {"seed", 3}};
  return data;
}

void expect_same(const psm::Dataset& a, const psm::Dataset& b) {
  EXPECT_TRUE(torch::equal(a.positions, b.positions));
  EXPECT_EQ(a.has_forces(), b.has_forces());
  if (a.has_forces() && b.has_forces()) {
    EXPECT_TRUE(torch::equal(a.forces, b.forces));
  }
  EXPECT_EQ(a.has_energies(), b.has_energies());
  if (a.has_energies() && b.has_energies()) {
    EXPECT_TRUE(torch::equal(a.energies, b.energies));
  }
  EXPECT_EQ(a.species, b.species);
  EXPECT_EQ(a.units, b.units);
  EXPECT_EQ(a.kT, b.kT);
  EXPECT_EQ(a.sampled_kT, b.sampled_kT);
  EXPECT_EQ(a.temperature_kelvin, b.temperature_kelvin);
  EXPECT_EQ(a.system, b.system);
  EXPECT_EQ(a.provenance, b.provenance);
}

class DatasetFiles : public psm::test::ScratchDir {};

TEST_F(DatasetFiles, SaveLoadRoundTrip) {
  const psm::Dataset data = ethanol_like();
  psm::save_dataset(path("ethanol.npz"), data);
  expect_same(psm::load_dataset(path("ethanol.npz")), data);

  psm::Dataset lj;  // reduced units, no labels, no temperature in kelvin
  lj.positions = torch::randn({5, 13, 3}, torch::kFloat64);
  lj.species = std::vector<int64_t>(13, 0);
  psm::save_dataset(path("lj13.npz"), lj);
  expect_same(psm::load_dataset(path("lj13.npz")), lj);
}

// Generated samples carry their model's log-density and log weights (-inf: weight zero) in both
// formats; select keeps them with their frames.
TEST_F(DatasetFiles, LikelihoodColumnsRoundTrip) {
  psm::Dataset data = ethanol_like(4);
  data.log_q = torch::tensor({-12.5, 3.25, 0.0, -1e3}, torch::kFloat64);
  data.log_q_error = torch::tensor({0.01, 0.02, 0.0, 0.5}, torch::kFloat64);
  data.log_weights =
      torch::tensor({1.5, -std::numeric_limits<double>::infinity(), -2.0, 4.0}, torch::kFloat64);
  for (const char* name : {"samples.npz", "samples.xyz"}) {
    SCOPED_TRACE(name);
    psm::save_dataset(path(name), data);
    const psm::Dataset read = psm::load_dataset(path(name));
    ASSERT_TRUE(read.has_log_q());
    EXPECT_TRUE(torch::allclose(read.log_q, data.log_q, 1e-12, 0));
    EXPECT_TRUE(torch::allclose(read.log_q_error, data.log_q_error, 1e-12, 0));
    EXPECT_TRUE(torch::equal(torch::isinf(read.log_weights), torch::isinf(data.log_weights)));
    EXPECT_TRUE(
        torch::allclose(read.log_weights, data.log_weights, 1e-12, 0, /*equal_nan=*/false) ||
        torch::equal(read.log_weights, data.log_weights));
  }
  const psm::Dataset picked = data.select(torch::tensor({3, 1}));
  EXPECT_TRUE(torch::equal(picked.log_q, torch::tensor({-1e3, 3.25}, torch::kFloat64)));
  EXPECT_EQ(picked.log_weights.size(0), 2);

  data.log_q[2] = std::nan("");
  EXPECT_PSM_ERROR(data.validate("s.npz"), "s.npz", "log_q hold NaN or Inf (frame 2)");
  data.log_q = torch::zeros({4}, torch::kFloat64);
  data.log_weights[0] = std::numeric_limits<double>::infinity();
  EXPECT_PSM_ERROR(data.validate("s.npz"), "log_weights hold NaN or +Inf");
  data.log_weights = torch::zeros({3}, torch::kFloat64);
  EXPECT_PSM_ERROR(data.validate("s.npz"), "log_weights have shape [3], expected [4]");
  data.log_weights = torch::Tensor();
  data.log_q = torch::Tensor();
  EXPECT_PSM_ERROR(data.validate("s.npz"), "log_q_error or log_weights without log_q");
}

TEST_F(DatasetFiles, SavedLayoutIsWhatNumpyUsersExpect) {
  psm::save_dataset(path("ethanol.npz"), ethanol_like());
  const psm::NpzArchive arrays = psm::read_npz(path("ethanol.npz"));
  EXPECT_EQ(arrays.at("positions").scalar_type(), torch::kFloat64);
  EXPECT_EQ(arrays.at("forces").scalar_type(), torch::kFloat64);
  EXPECT_EQ(arrays.at("energies").sizes(), (std::vector<int64_t>{3}));
  EXPECT_EQ(arrays.at("species").scalar_type(), torch::kInt64);
  const torch::Tensor bytes = arrays.at("metadata");
  ASSERT_EQ(bytes.scalar_type(), torch::kUInt8);
  const auto* text = reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>());
  const auto metadata = nlohmann::json::parse(text, text + bytes.numel());
  EXPECT_EQ(metadata.at("format_version"), 1);
  EXPECT_EQ(metadata.at("units"), "kcal/mol,angstrom");
  EXPECT_EQ(metadata.at("temperature_kelvin"), 500.0);
  EXPECT_DOUBLE_EQ(metadata.at("kT").get<double>(), psm::kT_from_kelvin(500.0));
}

TEST(DatasetLoad, RecognisesRmd17Files) {
  const psm::Dataset data = psm::load_dataset(data_path("rmd17_mini.npz"));
  EXPECT_EQ(data.species, (std::vector<int64_t>{8, 1, 1}));
  EXPECT_EQ(data.units, psm::Units::kcal_mol_angstrom);
  EXPECT_EQ(data.temperature_kelvin, 500.0);
  EXPECT_DOUBLE_EQ(data.kT, 0.0019872041 * 500.0);
  const torch::Tensor f = torch::arange(2, torch::kFloat64).view({2, 1, 1});
  const torch::Tensor i = torch::arange(3, torch::kFloat64).view({1, 3, 1});
  const torch::Tensor k = torch::arange(3, torch::kFloat64).view({1, 1, 3});
  const torch::Tensor coords = f + 0.1 * i + 0.01 * k;
  EXPECT_TRUE(torch::allclose(data.positions, coords, 0, 1e-15));
  EXPECT_TRUE(torch::allclose(data.forces, -coords, 0, 1e-15));
  EXPECT_TRUE(torch::equal(data.energies, torch::tensor({-1.0, -2.0}, torch::kFloat64)));
  EXPECT_EQ(data.provenance.at("format"), "rMD17");
}

TEST(DatasetLoad, RecognisesSgdmlFilesAndMd22Temperatures) {
  const psm::Dataset data = psm::load_dataset(data_path("sgdml_mini.npz"));
  EXPECT_EQ(data.species, (std::vector<int64_t>{6, 1, 1}));
  EXPECT_EQ(data.energies.sizes(), (std::vector<int64_t>{2}));  // stored as [F, 1]
  EXPECT_TRUE(torch::equal(data.energies, torch::tensor({-1.0, -2.0}, torch::kFloat64)));
  EXPECT_EQ(data.temperature_kelvin, 400.0);  // buckyball catcher
  EXPECT_DOUBLE_EQ(data.kT, psm::kT_from_kelvin(400.0));
  EXPECT_EQ(data.provenance.at("theory"), "PBE+MBD");

  const psm::Dataset hot =
      psm::load_dataset(data_path("sgdml_mini.npz"), {.temperature_kelvin = 300});
  EXPECT_EQ(hot.temperature_kelvin, 300.0);
  EXPECT_EQ(hot.provenance.at("temperature_kelvin"), 300.0);
  EXPECT_DOUBLE_EQ(hot.kT, psm::kT_from_kelvin(300.0));
}

TEST_F(DatasetFiles, Md22NamesAndTheMd17Default) {
  const torch::Tensor R = torch::zeros({1, 2, 3}, torch::kFloat64);
  const torch::Tensor z = torch::tensor({1, 1}, torch::kUInt8);
  for (const auto& [file, kelvin] :
       std::vector<std::pair<std::string, double>>{{"md22_double-walled_nanotube.npz", 400.0},
                                                   {"md22_AT-AT-CG-CG.npz", 500.0},
                                                   {"md22_Ac-Ala3-NHMe.npz", 500.0},
                                                   {"md17_ethanol.npz", 500.0}}) {
    psm::write_npz(path(file), {{"R", R}, {"z", z}});
    EXPECT_EQ(psm::load_dataset(path(file)).temperature_kelvin, kelvin) << file;
  }
}

TEST_F(DatasetFiles, LoadsExtxyzByExtension) {
  const psm::Dataset data = ethanol_like(2);
  psm::write_extxyz(path("ethanol.xyz"), data);
  const psm::Dataset back = psm::load_dataset(path("ethanol.xyz"));
  EXPECT_EQ(back.species, data.species);
  EXPECT_LE((back.positions - data.positions).abs().max().item<double>(), 5.1e-9);
  EXPECT_TRUE(torch::equal(back.energies, data.energies));
  EXPECT_EQ(back.sampled_kT, data.sampled_kT);
}

TEST(DatasetLoad, SharedRmd17FileIfPresent) {
  // The public reference data sit beside the checkout when present (see ../shared/data).
  const std::filesystem::path file = std::filesystem::path(PSM_TEST_DATA_DIR) /
                                     "../../../shared/data/rmd17/rmd17_ethanol_train_01.npz";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << file << " not present";
  const psm::Dataset data = psm::load_dataset(file);
  EXPECT_EQ(data.num_frames(), 1000);
  EXPECT_EQ(data.num_atoms(), 9);
  EXPECT_EQ(data.species, (std::vector<int64_t>{6, 6, 8, 1, 1, 1, 1, 1, 1}));
  // Mean energy as numpy computes it: np.load(file)["energies"].mean() = -97076.26335677099.
  EXPECT_NEAR(data.energies.mean().item<double>(), -97076.26335677099, 1e-8);
  // rMD17's recomputed forces are not those of the potential that sampled its frames; MD17's
  // original forces are (BENCHMARKS.md, "rMD17's forces do not belong to its frames").
  const double kT = data.kT;
  EXPECT_GT(psm::virial_temperature(data).deviation(kT), psm::kForceCheckSigmas);
  const psm::Dataset original =
      psm::load_dataset(file, {.rmd17_labels = psm::Rmd17Labels::original});
  EXPECT_LT(psm::virial_temperature(original).deviation(kT), psm::kForceCheckSigmas);
}

TEST_F(DatasetFiles, Rmd17OriginalLabels) {
  const torch::Tensor coords = torch::rand({2, 3, 3}, torch::kFloat64);
  psm::NpzArchive arrays = {{"nuclear_charges", torch::tensor({8, 1, 1}, torch::kUInt8)},
                            {"coords", coords},
                            {"energies", torch::zeros({2}, torch::kFloat64)},
                            {"forces", torch::zeros({2, 3, 3}, torch::kFloat64)}};
  psm::write_npz(path("new_only.npz"), arrays);
  const psm::LoadOptions original{.rmd17_labels = psm::Rmd17Labels::original};
  EXPECT_PSM_ERROR(psm::load_dataset(path("new_only.npz"), original), "new_only.npz",
                   "missing key 'old_energies'");
  arrays["old_energies"] = torch::tensor({3.0, 4.0}, torch::kFloat64);
  arrays["old_forces"] = -coords;
  psm::write_npz(path("both.npz"), arrays);
  const psm::Dataset data = psm::load_dataset(path("both.npz"), original);
  EXPECT_TRUE(torch::equal(data.energies, torch::tensor({3.0, 4.0}, torch::kFloat64)));
  EXPECT_TRUE(torch::equal(data.forces, -coords));
  EXPECT_EQ(data.provenance.at("labels"), "original (old_energies, old_forces)");
  EXPECT_TRUE(torch::equal(psm::load_dataset(path("both.npz")).forces,
                           torch::zeros({2, 3, 3}, torch::kFloat64)));
  EXPECT_PSM_ERROR(psm::rmd17_labels_from_string("dft"), "unknown rMD17 labels 'dft'");
}

// ---- bad input ---------------------------------------------------------------------------

TEST_F(DatasetFiles, MissingKeys) {
  const torch::Tensor coords = torch::zeros({2, 3, 3}, torch::kFloat64);
  psm::write_npz(path("rmd17.npz"), {{"nuclear_charges", torch::tensor({8, 1, 1}, torch::kUInt8)},
                                     {"coords", coords},
                                     {"energies", torch::zeros({2}, torch::kFloat64)}});
  EXPECT_PSM_ERROR(psm::load_dataset(path("rmd17.npz")), "rmd17.npz", "missing key 'forces'");
  psm::write_npz(path("nometa.npz"), {{"positions", coords}});
  EXPECT_PSM_ERROR(psm::load_dataset(path("nometa.npz")), "nometa.npz", "missing key 'metadata'");
  psm::write_npz(path("other.npz"), {{"x", coords}});
  EXPECT_PSM_ERROR(psm::load_dataset(path("other.npz")), "other.npz", "not a dataset", "keys x");
  torch::save(coords, path("checkpoint.pt").string());  // a zip archive, but no .npy inside
  EXPECT_PSM_ERROR(psm::load_dataset(path("checkpoint.pt")), "checkpoint.pt", "not a dataset",
                   "a psm checkpoint?");
}

TEST_F(DatasetFiles, WrongShapes) {
  const torch::Tensor z = torch::tensor({8, 1, 1}, torch::kUInt8);
  psm::write_npz(path("flat.npz"), {{"nuclear_charges", z},
                                    {"coords", torch::zeros({2, 9}, torch::kFloat64)},
                                    {"energies", torch::zeros({2}, torch::kFloat64)},
                                    {"forces", torch::zeros({2, 3, 3}, torch::kFloat64)}});
  EXPECT_PSM_ERROR(psm::load_dataset(path("flat.npz")), "flat.npz", "'coords' has shape [2, 9]",
                   "expected [frames, atoms, 3]");
  psm::write_npz(path("forces.npz"), {{"nuclear_charges", z},
                                      {"coords", torch::zeros({2, 3, 3}, torch::kFloat64)},
                                      {"energies", torch::zeros({2}, torch::kFloat64)},
                                      {"forces", torch::zeros({2, 4, 3}, torch::kFloat64)}});
  EXPECT_PSM_ERROR(psm::load_dataset(path("forces.npz")), "forces.npz",
                   "forces have shape [2, 4, 3], expected [2, 3, 3]");
  psm::write_npz(path("species.npz"), {{"z", torch::tensor({1, 1}, torch::kUInt8)},
                                       {"R", torch::zeros({2, 3, 3}, torch::kFloat64)}});
  EXPECT_PSM_ERROR(psm::load_dataset(path("species.npz")), "species.npz", "2 species for 3 atoms");
  psm::write_npz(path("energies.npz"), {{"z", z},
                                        {"R", torch::zeros({2, 3, 3}, torch::kFloat64)},
                                        {"E", torch::zeros({3}, torch::kFloat64)}});
  EXPECT_PSM_ERROR(psm::load_dataset(path("energies.npz")), "energies.npz",
                   "energies have shape [3], expected [2]");
}

TEST_F(DatasetFiles, NonFiniteValues) {
  for (const std::string field : {"positions", "forces", "energies"}) {
    psm::Dataset data = ethanol_like();
    torch::Tensor& t = field == "positions" ? data.positions
                       : field == "forces"  ? data.forces
                                            : data.energies;
    t.view(-1)[t.numel() - 1] = field == "forces" ? INFINITY : NAN;
    const std::string file = "bad_" + field + ".npz";
    // save_dataset refuses; a file written without validation fails on load.
    EXPECT_PSM_ERROR(psm::save_dataset(path(file), data), file, field + " hold NaN or Inf",
                     "frame 2");
    EXPECT_EQ(file_count(), 0);
    psm::NpzArchive arrays = {{"nuclear_charges", torch::tensor(data.species)},
                              {"coords", data.positions},
                              {"energies", data.energies},
                              {"forces", data.forces}};
    psm::write_npz(path(file), arrays);
    EXPECT_PSM_ERROR(psm::load_dataset(path(file)), file, field + " hold NaN or Inf");
    std::filesystem::remove(path(file));
  }
}

TEST_F(DatasetFiles, WrongDtypes) {
  const torch::Tensor z = torch::tensor({8, 1, 1}, torch::kUInt8);
  psm::write_npz(path("int_coords.npz"), {{"z", z}, {"R", torch::zeros({2, 3, 3}, torch::kInt32)}});
  EXPECT_PSM_ERROR(psm::load_dataset(path("int_coords.npz")), "int_coords.npz",
                   "'R' has dtype Int, expected float32 or float64");
  psm::write_npz(path("float_z.npz"), {{"z", torch::ones({3}, torch::kFloat64)},
                                       {"R", torch::zeros({2, 3, 3}, torch::kFloat64)}});
  EXPECT_PSM_ERROR(psm::load_dataset(path("float_z.npz")), "float_z.npz",
                   "'z' has dtype Double, expected integer atomic numbers");
  // A complex array written by numpy, inside an archive.
  EXPECT_PSM_ERROR(psm::load_dataset(data_path("sgdml_complex_R.npz")), "sgdml_complex_R.npz:R",
                   "unsupported dtype '<c16'");
}

TEST_F(DatasetFiles, BrokenFiles) {
  const std::string bytes = psm::read_file_bytes(data_path("rmd17_mini.npz"));
  psm::write_file_bytes(path("truncated.npz"), bytes.substr(0, bytes.size() - 100));
  EXPECT_PSM_ERROR(psm::load_dataset(path("truncated.npz")), "truncated.npz",
                   "cannot open as .npz");
  std::string corrupt = bytes;
  for (size_t i = 200; i < 260; ++i) corrupt[i] = static_cast<char>(~corrupt[i]);
  psm::write_file_bytes(path("corrupt.npz"), corrupt);
  EXPECT_PSM_ERROR(psm::load_dataset(path("corrupt.npz")), "corrupt.npz");
  EXPECT_PSM_ERROR(psm::load_dataset(data_path("corrupt_member.npz")), "corrupt_member.npz",
                   "corrupt archive entry");
  std::ofstream(path("empty.npz")).close();
  EXPECT_PSM_ERROR(psm::load_dataset(path("empty.npz")), "empty.npz", "empty file");
  std::ofstream(path("empty.xyz")).close();
  EXPECT_PSM_ERROR(psm::load_dataset(path("empty.xyz")), "empty.xyz", "empty file");
  EXPECT_PSM_ERROR(psm::load_dataset(path("absent.npz")), "absent.npz", "no such file");
  EXPECT_PSM_ERROR(psm::load_dataset(data_path("f8_2x3.npy")), "f8_2x3.npy",
                   "a bare .npy array is not a dataset");
  psm::NpzArchive archive = {{"positions", torch::zeros({1, 1, 3}, torch::kFloat64)},
                             {"species", torch::zeros({1}, torch::kInt64)},
                             {"metadata", torch::tensor({'{', 'x'}, torch::kUInt8)}};
  psm::write_npz(path("badmeta.npz"), archive);
  EXPECT_PSM_ERROR(psm::load_dataset(path("badmeta.npz")), "badmeta.npz",
                   "'metadata' is not valid JSON");
}

TEST_F(DatasetFiles, TemperatureOverrideNeedsMolecularUnits) {
  psm::Dataset lj;
  lj.positions = torch::zeros({1, 2, 3}, torch::kFloat64);
  lj.species = {0, 0};
  psm::save_dataset(path("lj.npz"), lj);
  EXPECT_PSM_ERROR(psm::load_dataset(path("lj.npz"), {.temperature_kelvin = 300}), "lj.npz",
                   "needs kcal/mol data");
}

TEST_F(DatasetFiles, FailedSaveLeavesExistingFileUntouched) {
  const psm::Dataset good = ethanol_like();
  psm::save_dataset(path("data.npz"), good);
  const std::string before = psm::read_file_bytes(path("data.npz"));
  psm::Dataset bad = ethanol_like();
  bad.kT = -1.0;
  EXPECT_PSM_ERROR(psm::save_dataset(path("data.npz"), bad), "data.npz", "kT must be positive");
  EXPECT_EQ(psm::read_file_bytes(path("data.npz")), before);
  EXPECT_EQ(file_count(), 1);
}

// ---- validate and select -----------------------------------------------------------------

TEST(Dataset, ValidateNamesTheProblem) {
  psm::Dataset data = ethanol_like();
  data.validate("ok.npz");
  data.species.pop_back();
  EXPECT_PSM_ERROR(data.validate("x.npz"), "x.npz", "8 species for 9 atoms");
  data = ethanol_like();
  data.species[0] = 200;
  EXPECT_PSM_ERROR(data.validate("x.npz"), "x.npz", "species 200");
  data = ethanol_like();
  data.positions = data.positions.to(torch::kFloat32);
  EXPECT_PSM_ERROR(data.validate("x.npz"), "x.npz", "positions have dtype Float");
  data = ethanol_like();
  data.sampled_kT = 0.0;
  EXPECT_PSM_ERROR(data.validate("x.npz"), "x.npz", "sampled_kT must be positive");
}

TEST(Dataset, SelectKeepsFramesAndMetadata) {
  const psm::Dataset data = ethanol_like(5);
  const psm::Dataset some = data.select(torch::tensor({4, 0, 4}, torch::kInt64));
  EXPECT_EQ(some.num_frames(), 3);
  EXPECT_TRUE(torch::equal(some.positions[0], data.positions[4]));
  EXPECT_TRUE(torch::equal(some.forces[1], data.forces[0]));
  EXPECT_EQ(some.energies[2].item<double>(), data.energies[4].item<double>());
  EXPECT_EQ(some.species, data.species);
  EXPECT_EQ(some.sampled_kT, data.sampled_kT);
  EXPECT_EQ(some.provenance, data.provenance);
  some.validate("subset");
  EXPECT_PSM_ERROR(data.select(torch::tensor({5}, torch::kInt64)), "frame index out of range");
  EXPECT_PSM_ERROR(data.select(torch::tensor({0.5})), "1-D integer tensor");
}

}  // namespace
