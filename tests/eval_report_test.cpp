#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "psm/core/random.h"
#include "psm/core/remove_tree.h"
#include "psm/eval/plots.h"
#include "psm/eval/report.h"

namespace fs = std::filesystem;

namespace {

std::string read(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(EvalReport, WritesMetricsJsonMarkdownAndPlots) {
  const bool plots = psm::find_gnuplot().has_value();
  const fs::path dir = fs::temp_directory_path() / fmt::format("psm_report_{}", ::getpid());
  psm::remove_tree(dir);
  torch::Generator rng = psm::make_generator(1);
  const psm::Samples reference{torch::randn({300, 4, 3}, rng, torch::kFloat64),
                               torch::randn({300}, rng, torch::kFloat64)};
  const psm::Samples hot{1.2 * torch::randn({300, 4, 3}, rng, torch::kFloat64),
                         torch::randn({300}, rng, torch::kFloat64) + 1.0};
  const auto rows = psm::write_report(dir, reference, {{"copy", reference}, {"hot", hot}},
                                      {.title = "toy", .plots = plots, .context = {{"seed", 1}}});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_DOUBLE_EQ(*rows[0].metrics.energy_w2, 0.0);
  EXPECT_GT(*rows[1].metrics.energy_w2, 0.5);

  const nlohmann::json json = nlohmann::json::parse(read(dir / "metrics.json"));
  EXPECT_EQ(json["reference"]["n"], 300);
  EXPECT_EQ(json["models"][1]["name"], "hot");
  EXPECT_DOUBLE_EQ(json["models"][1]["energy_w2"].get<double>(), *rows[1].metrics.energy_w2);
  EXPECT_DOUBLE_EQ(json["models"][1]["distance_tvd"].get<double>(), rows[1].metrics.distance_tvd);
  EXPECT_EQ(json["context"]["seed"], 1);

  const std::string markdown = read(dir / "report.md");
  EXPECT_NE(markdown.find("| hot | 300 |"), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("energy W2 (ε)"), std::string::npos) << markdown;
  if (plots) {
    EXPECT_NE(markdown.find("(energy_histogram.png)"), std::string::npos) << markdown;
    EXPECT_GT(fs::file_size(dir / "energy_histogram.png"), 0u);
    EXPECT_GT(fs::file_size(dir / "distance_histogram.png"), 0u);
  }
  psm::remove_tree(dir);
}

}  // namespace
