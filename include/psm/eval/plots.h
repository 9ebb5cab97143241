#pragma once
// PNG plots through gnuplot (pngcairo). Each plot leaves three files side by side: NAME.png,
// NAME.dat (the plotted numbers) and NAME.gp (the script; `cd DIR && gnuplot NAME.gp` redraws
// it). The PNG appears atomically. Labels are the caller's and should carry units.

#include <torch/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace psm {

/// The gnuplot executable found on PATH, if any.
std::optional<std::filesystem::path> find_gnuplot();

/// One sample to histogram, e.g. the energies of one model's samples.
struct HistogramSeries {
  std::string label;     ///< key entry ("reference", "PSM")
  torch::Tensor values;  ///< any shape (flattened), any floating dtype; non-finite values are
                         ///< counted as outside the range
  /// Importance weights, one per value (non-negative, any scale), e.g. of reweighted samples;
  /// undefined: every value counts once
  torch::Tensor weights{};
};

struct HistogramOptions {
  std::string title;
  std::string x_label;                          ///< with unit, e.g. "energy (ε)"
  std::string y_label = "probability density";  ///< densities are per x unit
  int64_t bins = 100;
  /// x range; default: the first series' [min, max] widened by 5% each side. Values outside
  /// are not drawn; the key gives their percentage.
  std::optional<std::pair<double, double>> range{};
};

/// Overlaid histograms normalised as densities (count / (n * bin width)); the first series (the
/// reference) is drawn as a filled grey area, the others as step lines.
/// Throws psm::Error when gnuplot is missing or fails, or a series is empty.
void plot_histograms(const std::filesystem::path& png, const std::vector<HistogramSeries>& series,
                     const HistogramOptions& options);

/// One curve, e.g. the training loss of one sigma band against the step.
struct LineSeries {
  std::string label;
  std::vector<double> x;
  std::vector<double> y;  ///< same length as x
};

struct LinePlotOptions {
  std::string title{};
  std::string x_label{};  ///< e.g. "training step"
  std::string y_label{};  ///< with unit
  bool log_y = true;      ///< non-positive y values are then skipped by gnuplot
};

/// Overlaid line plots. Throws psm::Error when gnuplot is missing or fails, or x and y differ
/// in length.
void plot_lines(const std::filesystem::path& png, const std::vector<LineSeries>& series,
                const LinePlotOptions& options);

}  // namespace psm
