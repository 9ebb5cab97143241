#pragma once
// An evaluation report for one experiment: the metrics of each model's samples against a
// reference (metrics.json), energy and interatomic-distance histograms (PNG), and a short
// Markdown page (report.md) with the table and links to the plots. For molecules also the bond,
// torsion, h(r), intact-graph and reference-potential metrics of eval/molecular.h, with
// bond-length and torsion histograms.

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "psm/core/units.h"
#include "psm/eval/metrics.h"
#include "psm/eval/molecular.h"
#include "psm/systems/potential.h"

namespace psm {

/// One model's (or any other source's) samples, named for tables and plot keys.
struct NamedSamples {
  std::string name;
  Samples samples;
};

struct ModelMetrics {
  std::string name;
  Metrics metrics;
  std::optional<MolecularMetrics> molecular{};  ///< when the report is molecular
};

/// A figure made elsewhere (e.g. the training loss) to link from the report.
struct Figure {
  std::string caption;
  std::filesystem::path file;  ///< relative to the report directory
};

/// What a molecular report adds (see eval/molecular.h).
struct MolecularReportOptions {
  std::vector<int64_t> species;  ///< [N] atomic numbers, the same for every frame
  MolecularMetricsOptions metrics{};
  /// Reference potential (GFN2-xTB) under which generated and reference energies are compared
  /// by W1; null: no comparison
  std::shared_ptr<const System> potential{};
  int64_t potential_frames = 200;  ///< frames per set evaluated with it, evenly spaced
  int64_t plotted = 6;  ///< bonds and torsions with histograms, the largest JS (any model) first
};

struct ReportOptions {
  std::string title = "psm evaluation";
  Units units = Units::reduced;  ///< unit names in labels and table headers
  MetricsOptions metrics{};
  bool plots = true;  ///< energy and distance histograms; needs gnuplot (see find_gnuplot)
  std::vector<Figure> extra_figures{};
  std::optional<MolecularReportOptions> molecular{};  ///< molecules: the molecular metrics too
  nlohmann::json context{};  ///< stored as-is in metrics.json, e.g. the command and input files
};

/// "ε" (reduced) or "kcal/mol"; "reduced length" or "Å".
std::string energy_unit(Units units);
std::string length_unit(Units units);

/// "{:.4g}" of a value, or "–" when it is absent (a metric that was not computed).
std::string format_optional(const std::optional<double>& value);

/// A Markdown table, one row per model: n, energy W1, W2, W2², distance TVD, distance W2,
/// outlier fraction (with the count of samples without an energy, if any) (and equivariant W2
/// when computed), units in the headers; "–" for energy metrics of sets without energies.
std::string metrics_table(const std::vector<ModelMetrics>& rows, Units units);

/// The molecular metrics as a Markdown table, one row per model that has them.
std::string molecular_table(const std::vector<ModelMetrics>& rows);

/// Computes each model's metrics against `reference` and writes into `dir`: metrics.json,
/// energy_histogram.png and distance_histogram.png (when options.plots; with .dat and .gp), and
/// report.md. With options.molecular also each model's MolecularMetrics (metrics.json key
/// "molecular") and, with plots, bond_length_*.png and torsion_*.png. Files are written atomically.
/// Throws psm::Error on bad samples or, with plots, when gnuplot is missing or fails (metrics.json
/// is written first).
std::vector<ModelMetrics> write_report(const std::filesystem::path& dir, const Samples& reference,
                                       const std::vector<NamedSamples>& models,
                                       const ReportOptions& options = {});

}  // namespace psm
