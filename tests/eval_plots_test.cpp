#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/core/remove_tree.h"
#include "psm/eval/plots.h"

namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("psm_{}_{}", name, ::getpid());
  psm::remove_tree(dir);
  fs::create_directories(dir);
  return dir;
}

bool is_png(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string magic(8, '\0');
  in.read(magic.data(), 8);
  return in && magic == std::string("\x89PNG\r\n\x1a\n", 8);
}

TEST(EvalPlots, HistogramWritesPngDataAndScript) {
  if (!psm::find_gnuplot()) GTEST_SKIP() << "gnuplot not on PATH";
  const fs::path dir = fresh_dir("plots_hist");
  torch::Generator rng = psm::make_generator(1);
  const torch::Tensor reference = torch::randn({2000}, rng, torch::kFloat64) * 7.0 - 43.0;
  const torch::Tensor model = torch::randn({2000}, rng, torch::kFloat64) * 6.0 - 40.0;
  psm::plot_histograms(dir / "energy.png", {{"reference", reference}, {"model's samples", model}},
                       {.title = "LJ13 energy",
                        .x_label = "energy (ε)",
                        .y_label = "probability density (1/ε)",
                        .bins = 60});
  EXPECT_TRUE(is_png(dir / "energy.png"));
  EXPECT_GT(fs::file_size(dir / "energy.png"), 1000u);
  EXPECT_TRUE(fs::exists(dir / "energy.dat"));
  EXPECT_TRUE(fs::exists(dir / "energy.gp"));
  // Nothing but the three outputs is left behind (no temporary image or log).
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 3);
  psm::remove_tree(dir);
}

/// The numbers of series `index` of a plot's .dat file (blocks separated by two blank lines).
std::vector<double> series_numbers(const fs::path& dat, int index) {
  std::ifstream in(dat);
  std::string line;
  std::vector<double> numbers;
  int blank = 0, current = 0;
  while (std::getline(in, line)) {
    if (line.empty()) {
      if (++blank == 2) ++current;
      continue;
    }
    blank = 0;
    if (current != index || line[0] == '#') continue;
    std::istringstream fields(line);
    double x = 0, y = 0;
    fields >> x >> y;
    numbers.push_back(x);
    numbers.push_back(y);
  }
  return numbers;
}

TEST(EvalPlots, WeightedHistogramEqualsRepeatedValues) {
  if (!psm::find_gnuplot()) GTEST_SKIP() << "gnuplot not on PATH";
  const fs::path dir = fresh_dir("plots_weighted");
  torch::Generator rng = psm::make_generator(2);
  const torch::Tensor reference = torch::randn({500}, rng, torch::kFloat64);
  const torch::Tensor values = torch::randn({300}, rng, torch::kFloat64);
  const torch::Tensor counts = torch::randint(0, 4, {300}, rng, torch::kInt64);
  const psm::HistogramOptions options{.title = "weights", .x_label = "x", .bins = 30};
  // Integer weights (any scale: ×0.5) count each value that many times.
  psm::plot_histograms(
      dir / "weighted.png",
      {{"reference", reference}, {"model", values, 0.5 * counts.to(torch::kFloat64)}}, options);
  psm::plot_histograms(dir / "repeated.png",
                       {{"reference", reference}, {"model", values.repeat_interleave(counts)}},
                       options);
  const std::vector<double> weighted = series_numbers(dir / "weighted.dat", 1);
  const std::vector<double> repeated = series_numbers(dir / "repeated.dat", 1);
  ASSERT_EQ(weighted.size(), 60u);  // 30 bins: centre, density
  ASSERT_EQ(repeated.size(), weighted.size());
  for (size_t i = 0; i < weighted.size(); ++i) EXPECT_NEAR(weighted[i], repeated[i], 1e-9) << i;
  EXPECT_NE(weighted, series_numbers(dir / "weighted.dat", 0));

  EXPECT_THROW(psm::plot_histograms(dir / "bad.png",
                                    {{"reference", reference}, {"model", values, torch::ones({3})}},
                                    options),
               psm::Error);
  EXPECT_THROW(psm::plot_histograms(
                   dir / "bad.png",
                   {{"reference", reference}, {"model", values, -torch::ones({300})}}, options),
               psm::Error);
  psm::remove_tree(dir);
}

TEST(EvalPlots, LogScaleLinePlot) {
  if (!psm::find_gnuplot()) GTEST_SKIP() << "gnuplot not on PATH";
  const fs::path dir = fresh_dir("plots_lines");
  psm::LineSeries low{"σ < 0.1", {0, 100, 200, 300}, {5.0, 1.0, 0.5, 0.3}};
  psm::LineSeries high{"σ ≥ 0.1", {0, 100, 200, 300}, {0.9, 0.5, 0.45, 0.44}};
  psm::plot_lines(dir / "loss.png", {low, high},
                  {.title = "training loss", .x_label = "step", .y_label = "loss (ε²/σ²)"});
  EXPECT_TRUE(is_png(dir / "loss.png"));
  psm::LineSeries broken{"bad", {0, 1}, {1.0}};
  EXPECT_THROW(psm::plot_lines(dir / "bad.png", {broken}, {}), psm::Error);
  psm::remove_tree(dir);
}

TEST(EvalPlots, MissingGnuplotIsAClearError) {
  const std::string saved = std::getenv("PATH") ? std::getenv("PATH") : "";
  const fs::path dir = fresh_dir("plots_nognuplot");
  ::setenv("PATH", dir.c_str(), 1);
  try {
    psm::plot_lines(dir / "loss.png", {{"a", {0, 1}, {1, 2}}}, {});
    ADD_FAILURE() << "expected psm::Error";
  } catch (const psm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("gnuplot not found"), std::string::npos) << e.what();
  }
  ::setenv("PATH", saved.c_str(), 1);
  EXPECT_FALSE(fs::exists(dir / "loss.png"));
  psm::remove_tree(dir);
}

}  // namespace
