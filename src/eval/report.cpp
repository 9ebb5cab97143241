#include "psm/eval/report.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <fstream>

#include "psm/core/atomic_file.h"
#include "psm/core/error.h"
#include "psm/eval/plots.h"

namespace psm {

namespace fs = std::filesystem;

namespace {

nlohmann::json definitions(const MetricsOptions& options) {
  return {
      {"energy_w",
       "1-D Wasserstein distance between the energy samples (quantile coupling); "
       "energy_w2_squared is what POT's emd2_1d returns"},
      {"distance_tvd",
       fmt::format("TVD of all pairwise-distance histograms, {} bins on the reference's "
                   "[min, max]; generated distances outside that range count as mass outside",
                   options.distance_bins)},
      {"distance_w2", "1-D W2 between the flattened pairwise distances"},
      {"outlier_fraction", "fraction of generated samples with energy above the reference maximum"},
      {"equivariant_w2",
       "W2 between configuration sets, cost = RMSD after Kabsch alignment "
       "(reflections allowed) and Hungarian matching of identical particles"},
  };
}

std::vector<Figure> draw_histograms(const fs::path& dir, const Samples& reference,
                                    const std::vector<NamedSamples>& models,
                                    const ReportOptions& options) {
  std::vector<HistogramSeries> energies = {{"reference", reference.energies}};
  std::vector<HistogramSeries> distances = {{"reference", pairwise_distances(reference.positions)}};
  for (const auto& model : models) {
    energies.push_back({model.name, model.samples.energies});
    distances.push_back({model.name, pairwise_distances(model.samples.positions)});
  }
  const std::string energy = energy_unit(options.units);
  const std::string length = length_unit(options.units);
  plot_histograms(dir / "energy_histogram.png", energies,
                  {.title = options.title + ": energy",
                   .x_label = fmt::format("energy ({})", energy),
                   .y_label = fmt::format("probability density (1/{})", energy)});
  plot_histograms(dir / "distance_histogram.png", distances,
                  {.title = options.title + ": interatomic distances",
                   .x_label = fmt::format("interatomic distance ({})", length),
                   .y_label = fmt::format("probability density (1/{})", length),
                   .bins = 200});
  return {{"Energy histograms", "energy_histogram.png"},
          {"Interatomic-distance histograms", "distance_histogram.png"}};
}

}  // namespace

std::string energy_unit(Units units) { return units == Units::reduced ? "ε" : "kcal/mol"; }
std::string length_unit(Units units) { return units == Units::reduced ? "reduced length" : "Å"; }

std::string metrics_table(const std::vector<ModelMetrics>& rows, Units units) {
  const std::string e = energy_unit(units), l = length_unit(units);
  bool equivariant = false;
  for (const auto& row : rows) equivariant |= row.metrics.equivariant_w2.has_value();
  std::string table = fmt::format(
      "| samples | n | energy W1 ({e}) | energy W2 ({e}) | energy W2² ({e}²) | distance TVD | "
      "distance W2 ({l}) | outlier fraction |{}\n"
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |{}\n",
      equivariant ? fmt::format(" equivariant W2 ({}) |", l) : "", equivariant ? " ---: |" : "",
      fmt::arg("e", e), fmt::arg("l", l));
  for (const auto& [name, m] : rows) {
    table += fmt::format("| {} | {} | {:.4g} | {:.4g} | {:.4g} | {:.4g} | {:.4g} | {:.4g} |", name,
                         m.n_generated, m.energy_w1, m.energy_w2, m.energy_w2_squared,
                         m.distance_tvd, m.distance_w2, m.outlier_fraction);
    if (equivariant) {
      table += m.equivariant_w2
                   ? fmt::format(" {:.4g} (n = {}) |", *m.equivariant_w2, m.equivariant_samples)
                   : std::string(" – |");
    }
    table += "\n";
  }
  return table;
}

std::vector<ModelMetrics> write_report(const fs::path& dir, const Samples& reference,
                                       const std::vector<NamedSamples>& models,
                                       const ReportOptions& options) {
  check(!models.empty(), fmt::format("{}: report needs at least one sample set", dir.string()));
  std::vector<ModelMetrics> rows;
  nlohmann::json json_models = nlohmann::json::array();
  for (const auto& model : models) {
    rows.push_back({model.name, compute_metrics(model.samples, reference, options.metrics)});
    nlohmann::json entry = {{"name", model.name}};
    entry.update(rows.back().metrics.to_json());
    json_models.push_back(entry);
  }
  const nlohmann::json json = {{"title", options.title},
                               {"units", to_string(options.units)},
                               {"reference", {{"n", reference.positions.size(0)}}},
                               {"definitions", definitions(options.metrics)},
                               {"models", json_models},
                               {"context", options.context}};
  write_text_atomically(dir / "metrics.json", json.dump(2) + "\n");

  std::vector<Figure> figures;
  if (options.plots) figures = draw_histograms(dir, reference, models, options);
  figures.insert(figures.end(), options.extra_figures.begin(), options.extra_figures.end());

  std::string markdown = fmt::format(
      "# {}\n\nEach sample set against the reference ({} frames). Energy W: 1-D Wasserstein "
      "distances of the energies; distance TVD: {} bins on the reference's range, generated "
      "distances outside it counted as mass outside; outliers: energy above the reference's "
      "maximum. Numbers also in [metrics.json](metrics.json).\n\n{}\n",
      options.title, reference.positions.size(0), options.metrics.distance_bins,
      metrics_table(rows, options.units));
  for (const auto& figure : figures) {
    markdown += fmt::format("## {}\n\n![{}]({})\n\n", figure.caption, figure.caption,
                            figure.file.generic_string());
  }
  if (!options.plots) markdown += "(Histograms not drawn.)\n";
  write_text_atomically(dir / "report.md", markdown);
  return rows;
}

}  // namespace psm
