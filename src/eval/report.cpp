#include "psm/eval/report.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <fstream>

#include "psm/core/atomic_file.h"
#include "psm/core/error.h"
#include "psm/data/subsets.h"
#include "psm/eval/plots.h"

namespace psm {

namespace fs = std::filesystem;

namespace {

nlohmann::json definitions(const ReportOptions& report) {
  const MetricsOptions& options = report.metrics;
  nlohmann::json out = {
      {"energy_w",
       "1-D Wasserstein distance between the energy samples (quantile coupling); "
       "energy_w2_squared is what POT's emd2_1d returns"},
      {"distance_tvd",
       fmt::format("TVD of all pairwise-distance histograms, {} bins on the reference's "
                   "[min, max]; generated distances outside that range count as mass outside",
                   options.distance_bins)},
      {"distance_w2", "1-D W2 between the flattened pairwise distances"},
      {"outlier_fraction",
       "fraction of generated samples with energy above the reference maximum or without an "
       "energy (energy_failures: the potential failed on them; left out of energy_w)"},
      {"virial_kT",
       "kT the generated frames' forces imply, -<sum_i (x_i - x̄).F_i> / (d (N - 1)) over frames "
       "with finite forces (Stein's identity): the reference's kT for Boltzmann samples; "
       "dominated by close contacts, so it sees local structure that the energy W hardly does"},
      {"equivariant_w2",
       "W2 between configuration sets, cost = RMSD after Kabsch alignment "
       "(reflections allowed) and Hungarian matching of identical particles"},
  };
  if (report.molecular) {
    const MolecularMetricsOptions& m = report.molecular->metrics;
    out["molecular"] = {
        {"bonds",
         fmt::format("covalent bond r < {} (r_cov,i + r_cov,j), present in more than half of the "
                     "reference frames",
                     m.bond_scale)},
        {"relabelling",
         "generated frames have identical atoms in any order (the model is permutation "
         "equivariant): each frame whose covalent bond graph maps onto the reference graph by an "
         "element-preserving isomorphism is relabelled by it onto the reference's atom labels; "
         "bonds and torsions are measured on those (the intact ones) only, since the atoms of "
         "the others cannot be labelled"},
        {"bond_length_js",
         fmt::format(
             "Jensen-Shannon divergence (nats, max ln 2) per bond of the reference graph, "
             "intact generated frames relabelled: {} bins on the reference's range widened by a "
             "quarter each side, plus an underflow and an overflow bin",
             m.bond_bins)},
        {"torsion_js",
         fmt::format("Jensen-Shannon divergence (nats) per rotatable-bond dihedral, generated "
                     "intact frames relabelled, {} periodic bins on [-180, 180) degrees",
                     m.torsion_bins)},
        {"distance_density_mae",
         fmt::format("mean |h_gen(r) - h_ref(r)| (1/Å) of all interatomic distances, {} bins on "
                     "[0, 1.1 x the reference's largest distance]",
                     m.distance_density_bins)},
        {"intact_fraction",
         "fraction of generated frames whose covalent bond graph equals the reference's up to a "
         "permutation of identical atoms (the relabelled ones)"},
        {"wrong_bonds_mean",
         "covalent bonds a generated frame has too many or too few against the reference graph, "
         "counted by element pair (sum over pairs of |count - reference count|; a broken bond is "
         "1, a hydrogen moved from C to O is 2), mean over all generated frames: needs no atom "
         "labels, so it also measures the frames that are not intact"},
        {"bond_width_ratio",
         "per bond type (C-H, ...): standard deviation of the intact generated frames' bond "
         "lengths over the reference's, mean over the type's bonds; below 1 the bonds are too "
         "narrow"},
        {"search_limited",
         fmt::format("generated frames whose isomorphism search gave up after {} partial "
                     "mappings, counted not intact",
                     m.relabel_max_visits)},
        {"potential_energy",
         fmt::format("W1 (kcal/mol) between the energies of generated and reference frames under "
                     "the reference potential, up to {} evenly spaced frames per set; frames it "
                     "cannot evaluate are left out and counted",
                     report.molecular->potential_frames)},
    };
  }
  return out;
}

std::vector<Figure> draw_histograms(const fs::path& dir, const Samples& reference,
                                    const std::vector<NamedSamples>& models,
                                    const ReportOptions& options) {
  std::vector<HistogramSeries> energies;
  if (reference.energies.defined()) energies.push_back({"reference", reference.energies});
  std::vector<HistogramSeries> distances = {{"reference", pairwise_distances(reference.positions)}};
  for (const auto& model : models) {
    const torch::Tensor& weights = model.samples.weights;
    if (model.samples.energies.defined()) {
      energies.push_back({model.name, model.samples.energies, weights});
    }
    const torch::Tensor d = pairwise_distances(model.samples.positions);  // [B, P]
    distances.push_back(
        {model.name, d, weights.defined() ? weights.unsqueeze(1).expand_as(d) : torch::Tensor()});
  }
  const std::string energy = energy_unit(options.units);
  const std::string length = length_unit(options.units);
  std::vector<Figure> figures;
  // An energy histogram needs the reference's energies and at least one other set's.
  if (energies.size() >= 2 && reference.energies.defined()) {
    plot_histograms(dir / "energy_histogram.png", energies,
                    {.title = options.title + ": energy",
                     .x_label = fmt::format("energy ({})", energy),
                     .y_label = fmt::format("probability density (1/{})", energy)});
    figures.push_back({"Energy histograms", "energy_histogram.png"});
  }
  plot_histograms(dir / "distance_histogram.png", distances,
                  {.title = options.title + ": interatomic distances",
                   .x_label = fmt::format("interatomic distance ({})", length),
                   .y_label = fmt::format("probability density (1/{})", length),
                   .bins = 200});
  figures.push_back({"Interatomic-distance histograms", "distance_histogram.png"});
  return figures;
}

/// Indices of the `count` largest values of `js` over all models (a [models, K] table), largest
/// first.
std::vector<int64_t> largest(const std::vector<std::vector<double>>& js, int64_t count) {
  std::vector<std::pair<double, int64_t>> worst;
  for (size_t k = 0; k < js.front().size(); ++k) {
    double value = 0;
    for (const auto& model : js) value = std::max(value, model[k]);
    worst.emplace_back(value, static_cast<int64_t>(k));
  }
  std::stable_sort(worst.begin(), worst.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<int64_t> indices;
  for (const auto& [value, k] : worst) {
    if (static_cast<int64_t>(indices.size()) == count) break;
    indices.push_back(k);
  }
  return indices;
}

/// Bond-length and torsion histograms, reference against every model (rows: their metrics, in
/// the same order), for the bonds and torsions with the largest JS.
std::vector<Figure> draw_molecular_histograms(const fs::path& dir, const Samples& reference,
                                              const std::vector<NamedSamples>& models,
                                              const std::vector<ModelMetrics>& rows,
                                              const ReportOptions& options) {
  const MolecularReportOptions& molecular = *options.molecular;
  // Every row but reweighted ones has molecular metrics, over the same graph.
  const MolecularMetrics& first = *rows.front().molecular;
  std::vector<std::vector<double>> bond_js, torsion_js;
  for (const auto& row : rows) {
    if (!row.molecular) continue;
    bond_js.push_back(row.molecular->bond_length_js);
    torsion_js.push_back(row.molecular->torsion_js);
  }
  std::vector<Figure> figures;
  // Histogram of one bond length (torsion false) or torsion: row k of `atoms`.
  const auto draw = [&](bool torsion, const torch::Tensor& atoms, int64_t k) {
    const torch::Tensor row = atoms.slice(0, k, k + 1);
    const auto measure = [&](const torch::Tensor& x) {
      return torsion ? label_free_dihedral_angles(x, row, first.bonds, molecular.species)
                     : bond_lengths(x, row);
    };
    const torch::Tensor indices = row.cpu().contiguous();
    const std::string label =
        atom_label({indices.data_ptr<int64_t>(), indices.data_ptr<int64_t>() + indices.numel()},
                   molecular.species);
    std::vector<HistogramSeries> series = {{"reference", measure(reference.positions)}};
    for (size_t i = 0; i < models.size(); ++i) {
      if (!rows[i].molecular) continue;
      // The frames the metrics measured: the intact ones, relabelled onto the reference's atoms.
      const torch::Tensor& measured = rows[i].molecular->relabelled;
      if (measured.size(0) > 0) series.push_back({models[i].name, measure(measured)});
    }
    const std::string png = fmt::format("{}_{}.png", torsion ? "torsion" : "bond_length", label);
    plot_histograms(
        dir / png, series,
        {.title =
             fmt::format("{}: {} {}", options.title, label, torsion ? "torsion" : "bond length"),
         .x_label = torsion ? "torsion angle (degrees)" : "bond length (Å)",
         .y_label = torsion ? "probability density (1/degree)" : "probability density (1/Å)",
         .bins = torsion ? molecular.metrics.torsion_bins : molecular.metrics.bond_bins,
         .range = torsion ? std::optional(std::pair{-180.0, 180.0}) : std::nullopt});
    figures.push_back({fmt::format("{} {}", torsion ? "Torsion" : "Bond length", label), png});
  };
  for (const int64_t k : largest(bond_js, molecular.plotted)) draw(false, first.bonds, k);
  if (first.torsions.size(0) > 0) {
    for (const int64_t k : largest(torsion_js, molecular.plotted)) draw(true, first.torsions, k);
  }
  return figures;
}

}  // namespace

std::string format_optional(const std::optional<double>& value) {
  return value ? fmt::format("{:.4g}", *value) : std::string("–");
}

std::string energy_unit(Units units) { return units == Units::reduced ? "ε" : "kcal/mol"; }
std::string length_unit(Units units) { return units == Units::reduced ? "reduced length" : "Å"; }

std::string metrics_table(const std::vector<ModelMetrics>& rows, Units units) {
  const std::string e = energy_unit(units), l = length_unit(units);
  bool equivariant = false;
  for (const auto& row : rows) equivariant |= row.metrics.equivariant_w2.has_value();
  std::string table = fmt::format(
      "| samples | n | energy W1 ({e}) | energy W2 ({e}) | energy W2² ({e}²) | distance TVD | "
      "distance W2 ({l}) | outlier fraction | virial kT ({e}) |{}\n"
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |{}\n",
      equivariant ? fmt::format(" equivariant W2 ({}) |", l) : "", equivariant ? " ---: |" : "",
      fmt::arg("e", e), fmt::arg("l", l));
  for (const auto& row : rows) {
    const Metrics& m = row.metrics;
    table += fmt::format(
        "| {} | {} | {} | {} | {} | {:.4g} | {:.4g} | {} |", row.name, m.n_generated,
        format_optional(m.energy_w1), format_optional(m.energy_w2),
        format_optional(m.energy_w2_squared), m.distance_tvd, m.distance_w2,
        format_optional(m.outlier_fraction) +
            (m.energy_failures > 0 ? fmt::format(" ({} without energy)", m.energy_failures) : ""));
    table += m.virial ? fmt::format(" {:.4g} ± {:.2g} |", m.virial->kT, m.virial->standard_error)
                      : std::string(" – |");
    if (equivariant) {
      table += m.equivariant_w2
                   ? fmt::format(" {:.4g} (n = {}) |", *m.equivariant_w2, m.equivariant_samples)
                   : std::string(" – |");
    }
    table += "\n";
  }
  return table;
}

std::string molecular_table(const std::vector<ModelMetrics>& rows) {
  std::string potential;
  for (const auto& row : rows) {
    if (row.molecular && row.molecular->potential_energy) {
      potential = row.molecular->potential_energy->potential;
    }
  }
  std::string table = fmt::format(
      "| samples | bond JS mean | bond JS max | torsion JS mean | torsion JS max | h(r) MAE (1/Å) "
      "| intact fraction | wrong bonds / frame |{}\n"
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |{}\n",
      potential.empty() ? ""
                        : fmt::format(" {} energy W1 (kcal/mol) | frames (failed) |", potential),
      potential.empty() ? "" : " ---: | ---: |");
  for (const auto& row : rows) {
    if (!row.molecular) continue;
    const MolecularMetrics& m = *row.molecular;
    table +=
        fmt::format("| {} | {} | {} | {} | {} | {:.4g} | {:.4g} | {:.3g} |", row.name,
                    format_optional(m.bond_length_js_mean), format_optional(m.bond_length_js_max),
                    format_optional(m.torsion_js_mean), format_optional(m.torsion_js_max),
                    m.distance_density_mae, m.intact_fraction, m.wrong_bonds_mean);
    if (!potential.empty()) {
      table += m.potential_energy
                   ? fmt::format(" {:.4g} | {} / {} ({}) |", m.potential_energy->w1,
                                 m.potential_energy->generated, m.potential_energy->reference,
                                 m.potential_energy->failed_generated)
                   : std::string(" – | – |");
    }
    table += "\n";
  }
  return table;
}

std::vector<ModelMetrics> write_report(const fs::path& dir, const Samples& reference,
                                       const std::vector<NamedSamples>& models,
                                       const ReportOptions& options) {
  check(!models.empty(), fmt::format("{}: report needs at least one sample set", dir.string()));
  check(!options.molecular || !models.front().samples.weights.defined(),
        fmt::format("{}: a molecular report's first sample set cannot be weighted", dir.string()));
  std::vector<ModelMetrics> rows;
  nlohmann::json json_models = nlohmann::json::array();
  const std::optional<MolecularReportOptions>& molecular = options.molecular;
  std::optional<PotentialEnergies> reference_energies;
  if (molecular && molecular->potential && molecular->potential_frames > 0) {
    reference_energies =
        potential_energies(*molecular->potential, reference.positions, molecular->potential_frames);
  }
  for (const auto& model : models) {
    rows.push_back({model.name, compute_metrics(model.samples, reference, options.metrics)});
    nlohmann::json entry = {{"name", model.name}};
    entry.update(rows.back().metrics.to_json());
    // Bond and torsion metrics have no weighted form here: reweighted rows go without them.
    if (molecular && !model.samples.weights.defined()) {
      MolecularMetrics& m = rows.back().molecular.emplace(compute_molecular_metrics(
          model.samples.positions, reference.positions, molecular->species, molecular->metrics));
      if (reference_energies) {
        m.potential_energy =
            potential_energy_w1(molecular->potential->name(),
                                potential_energies(*molecular->potential, model.samples.positions,
                                                   molecular->potential_frames),
                                *reference_energies);
      }
      entry["molecular"] = m.to_json(molecular->species);
    }
    json_models.push_back(entry);
  }
  const nlohmann::json json = {{"title", options.title},
                               {"units", to_string(options.units)},
                               {"reference", {{"n", reference.positions.size(0)}}},
                               {"definitions", definitions(options)},
                               {"models", json_models},
                               {"context", options.context}};
  write_text_atomically(dir / "metrics.json", json.dump(2) + "\n");

  std::vector<Figure> figures;
  if (options.plots) {
    figures = draw_histograms(dir, reference, models, options);
    if (molecular) {
      const auto more = draw_molecular_histograms(dir, reference, models, rows, options);
      figures.insert(figures.end(), more.begin(), more.end());
    }
  }
  figures.insert(figures.end(), options.extra_figures.begin(), options.extra_figures.end());

  std::string markdown = fmt::format(
      "# {}\n\nEach sample set against the reference ({} frames). Energy W: 1-D Wasserstein "
      "distances of the energies; distance TVD: {} bins on the reference's range, generated "
      "distances outside it counted as mass outside; outliers: energy above the reference's "
      "maximum, or none because the potential failed on the sample (those are left out of "
      "energy W; – where a set has no energies). Numbers also in [metrics.json](metrics.json)."
      "\n\n{}\n",
      options.title, reference.positions.size(0), options.metrics.distance_bins,
      metrics_table(rows, options.units));
  const bool weighted = std::any_of(models.begin(), models.end(), [](const NamedSamples& model) {
    return model.samples.weights.defined();
  });
  if (weighted) {
    markdown +=
        "Weighted rows (\"reweighted\") count each sample with its importance weight "
        "exp(−U/kT) / q(x), normalised: the model's samples reweighted to the Boltzmann "
        "distribution. Their virial kT and molecular metrics are not computed.\n\n";
  }
  if (molecular) {
    markdown += fmt::format(
        "## Molecular metrics\n\nBond and torsion JS: Jensen-Shannon divergences in nats (ln 2 "
        "for disjoint distributions), over the {} bonds of the reference graph and one dihedral "
        "per rotatable bond; h(r): mean absolute difference of the interatomic-distance densities; "
        "intact: samples whose covalent bond graph equals the reference's up to a permutation of "
        "identical atoms. Bonds and torsions are measured on the intact samples only, relabelled "
        "onto the reference's atom labels (the model orders identical atoms arbitrarily, and a "
        "sample with another bond graph has no such labelling; – where none is intact); "
        "definitions in metrics.json.\n\n{}\n",
        rows.front().molecular->bonds.size(0), molecular_table(rows));
  }
  for (const auto& figure : figures) {
    markdown += fmt::format("## {}\n\n![{}]({})\n\n", figure.caption, figure.caption,
                            figure.file.generic_string());
  }
  if (!options.plots) markdown += "(Histograms not drawn.)\n";
  write_text_atomically(dir / "report.md", markdown);
  return rows;
}

}  // namespace psm
