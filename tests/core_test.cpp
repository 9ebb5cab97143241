#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "psm/core/atomic_file.h"
#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/core/registry.h"
#include "psm/core/remove_tree.h"
#include "psm/core/units.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

struct Shape {
  virtual ~Shape() = default;
  virtual int sides() const = 0;
};
struct Square : Shape {
  int sides() const override { return 4; }
};

TEST(Registry, CreatesByNameAndListsNamesOnUnknown) {
  psm::Registry<Shape> registry("shape");
  registry.add("square", "four sides", [] { return std::make_unique<Square>(); });
  EXPECT_EQ(registry.create("square")->sides(), 4);
  try {
    registry.create("circle");
    FAIL() << "expected psm::Error";
  } catch (const psm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown shape 'circle' (known: square)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(registry.add("square", "again", [] { return std::make_unique<Square>(); }),
               psm::Error);
}

TEST(AtomicFile, FailedWriteLeavesTargetUntouched) {
  const fs::path dir = fs::temp_directory_path() / "psm_atomic_test";
  psm::remove_tree(dir);
  const fs::path target = dir / "out.txt";
  psm::write_atomically(target, [](const fs::path& tmp) { std::ofstream(tmp) << "first"; });
  EXPECT_THROW(psm::write_atomically(target,
                                     [](const fs::path& tmp) {
                                       std::ofstream(tmp) << "half";
                                       throw psm::Error("interrupted");
                                     }),
               psm::Error);
  std::ifstream in(target);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "first");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1);
  psm::remove_tree(dir);
}

TEST(RemoveTree, RemovesNestedDirectoriesAndTheirFiles) {
  const fs::path root = fs::temp_directory_path() / fmt::format("psm_remove_tree_{}", ::getpid());
  fs::create_directories(root / "a" / "b");
  std::ofstream(root / "top.txt") << "x";
  std::ofstream(root / "a" / "b" / "deep.txt") << "y";
  const fs::path outside = root.string() + "_outside";
  fs::create_directories(outside);
  std::ofstream(outside / "kept.txt") << "z";
  fs::create_directory_symlink(outside, root / "a" / "link");
  psm::remove_tree(root);
  EXPECT_FALSE(fs::exists(root));
  EXPECT_TRUE(fs::exists(outside / "kept.txt"));  // the link is removed, not followed
  EXPECT_NO_THROW(psm::remove_tree(root));        // already gone
  psm::remove_tree(outside);
}

TEST(RemoveTree, SaysWhyAPathCannotBeRemoved) {
  const fs::path file = fs::temp_directory_path() / fmt::format("psm_remove_file_{}", ::getpid());
  std::ofstream(file) << "x";
  EXPECT_PSM_ERROR(psm::remove_tree(file / "below"), "cannot remove", "Not a directory");
  psm::remove_tree(file);
  EXPECT_FALSE(fs::exists(file));
}

TEST(Random, StreamsAndRanksAreDistinctAndRepeatable) {
  EXPECT_EQ(psm::derive_seed(1, 2, 3), psm::derive_seed(1, 2, 3));
  EXPECT_NE(psm::derive_seed(1, 0, 0), psm::derive_seed(1, 1, 0));
  EXPECT_NE(psm::derive_seed(1, 0, 0), psm::derive_seed(1, 0, 1));
  auto a = psm::make_generator(7);
  auto b = psm::make_generator(7);
  EXPECT_TRUE(torch::equal(torch::randn({5}, a), torch::randn({5}, b)));
}

TEST(Random, CounterRandomSlicesEqualTheWholeDraw) {
  const psm::CounterRandom random(7, 3);
  const torch::Tensor whole = random.normal(5, 0, 1001);
  for (const auto& [first, count] :
       {std::pair<int64_t, int64_t>{0, 1}, {1, 1}, {1, 500}, {333, 668}}) {
    EXPECT_TRUE(torch::equal(random.normal(5, first, count), whole.narrow(0, first, count)));
  }
  EXPECT_TRUE(torch::equal(random.uniform(9, 10, 20), random.uniform(9, 0, 30).narrow(0, 10, 20)));
  // Other draws, streams and seeds give other numbers; the same ones repeat.
  EXPECT_FALSE(torch::equal(random.normal(6, 0, 1001), whole));
  EXPECT_FALSE(torch::equal(psm::CounterRandom(7, 4).normal(5, 0, 1001), whole));
  EXPECT_FALSE(torch::equal(psm::CounterRandom(8, 3).normal(5, 0, 1001), whole));
  EXPECT_TRUE(torch::equal(psm::CounterRandom(7, 3).normal(5, 0, 1001), whole));
}

TEST(Random, CounterRandomHasTheRightMoments) {
  const psm::CounterRandom random(11, 1);
  const int64_t n = 200000;
  const torch::Tensor z = random.normal(0, 0, n);
  const double se = 1.0 / std::sqrt(static_cast<double>(n));
  EXPECT_LT(std::abs(z.mean().item<double>()), 5 * se);
  EXPECT_LT(std::abs(z.var().item<double>() - 1.0), 5 * std::sqrt(2.0) * se);
  EXPECT_LT(std::abs((z.pow(4).mean().item<double>()) - 3.0), 5 * std::sqrt(96.0) * se);
  // Neighbouring numbers (the two of a Box-Muller pair, and pairs) are uncorrelated.
  EXPECT_LT(std::abs((z.narrow(0, 0, n - 1) * z.narrow(0, 1, n - 1)).mean().item<double>()),
            5 * se);
  const torch::Tensor u = random.uniform(1, 0, n);
  EXPECT_GT(u.min().item<double>(), 0.0);
  EXPECT_LT(u.max().item<double>(), 1.0);
  EXPECT_LT(std::abs(u.mean().item<double>() - 0.5), 5 * se * std::sqrt(1.0 / 12));
  // Each tenth of (0, 1) holds a tenth of the numbers (chi-squared, 9 degrees of freedom).
  const torch::Tensor counts = torch::histc(u, 10, 0, 1);
  const double expected = static_cast<double>(n) / 10;
  EXPECT_LT(((counts - expected).square() / expected).sum().item<double>(), 30.0);
}

TEST(Units, RoundTripNamesAndRejectUnknown) {
  for (auto u : {psm::Units::reduced, psm::Units::kcal_mol_angstrom}) {
    EXPECT_EQ(psm::units_from_string(psm::to_string(u)), u);
  }
  EXPECT_THROW(psm::units_from_string("furlongs"), psm::Error);
  EXPECT_NEAR(psm::kT_from_kelvin(500.0), 0.99360, 1e-5);
}

}  // namespace
