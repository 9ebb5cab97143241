#pragma once
// An evaluation report for one experiment: the metrics of each model's samples against a
// reference (metrics.json), energy and interatomic-distance histograms (PNG), and a short
// Markdown page (report.md) with the table and links to the plots.

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "psm/core/units.h"
#include "psm/eval/metrics.h"

namespace psm {

/// One model's (or any other source's) samples, named for tables and plot keys.
struct NamedSamples {
  std::string name;
  Samples samples;
};

struct ModelMetrics {
  std::string name;
  Metrics metrics;
};

/// A figure made elsewhere (e.g. the training loss) to link from the report.
struct Figure {
  std::string caption;
  std::filesystem::path file;  ///< relative to the report directory
};

struct ReportOptions {
  std::string title = "psm evaluation";
  Units units = Units::reduced;  ///< unit names in labels and table headers
  MetricsOptions metrics{};
  bool plots = true;  ///< energy and distance histograms; needs gnuplot (see find_gnuplot)
  std::vector<Figure> extra_figures{};
  nlohmann::json context{};  ///< stored as-is in metrics.json, e.g. the command and input files
};

/// "ε" (reduced) or "kcal/mol"; "reduced length" or "Å".
std::string energy_unit(Units units);
std::string length_unit(Units units);

/// A Markdown table, one row per model: n, energy W1, W2, W2², distance TVD, distance W2,
/// outlier fraction (and equivariant W2 when computed), units in the headers.
std::string metrics_table(const std::vector<ModelMetrics>& rows, Units units);

/// Computes each model's metrics against `reference` and writes into `dir`: metrics.json,
/// energy_histogram.png and distance_histogram.png (when options.plots; with .dat and .gp), and
/// report.md. Files are written atomically. Throws psm::Error on bad samples or, with plots,
/// when gnuplot is missing or fails (metrics.json is written first).
std::vector<ModelMetrics> write_report(const std::filesystem::path& dir, const Samples& reference,
                                       const std::vector<NamedSamples>& models,
                                       const ReportOptions& options = {});

}  // namespace psm
