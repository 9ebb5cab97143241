#include "psm/eval/metrics.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "psm/core/error.h"

namespace psm {

namespace {

torch::Tensor flat_float64(const torch::Tensor& values, const char* what) {
  check(values.defined() && values.numel() > 0, fmt::format("{}: empty sample", what));
  torch::Tensor flat = values.flatten().to(torch::kFloat64);
  check(!torch::isnan(flat).any().item<bool>(), fmt::format("{}: sample contains NaN", what));
  return flat;
}

void check_configurations(const torch::Tensor& positions, const char* what) {
  check(positions.defined() && positions.dim() == 3,
        fmt::format("{}: positions must have shape [B, N, D]", what));
}

/// virial_temperature over the frames whose forces are finite; none with fewer than two.
std::optional<VirialTemperature> virial_of_finite_frames(const Samples& samples) {
  if (!samples.forces.defined()) return std::nullopt;
  check(samples.forces.sizes() == samples.positions.sizes(),
        "compute_metrics: forces must have the shape of the positions");
  const torch::Tensor finite = torch::isfinite(samples.forces).flatten(1).all(1);
  if (finite.sum().item<int64_t>() < 2) return std::nullopt;
  return virial_temperature(samples.positions.index({finite}), samples.forces.index({finite}));
}

}  // namespace

double wasserstein_1d(const torch::Tensor& a, const torch::Tensor& b, double p) {
  check(p >= 1.0, fmt::format("wasserstein_1d: p must be >= 1, got {}", p));
  const torch::Tensor u = std::get<0>(flat_float64(a, "wasserstein_1d").sort());
  const torch::Tensor v = std::get<0>(flat_float64(b, "wasserstein_1d").sort());
  const int64_t n = u.numel(), m = v.numel();
  if (n == m) return (u - v).abs().pow(p).mean().pow(1.0 / p).item<double>();
  // Quantile levels k/n are computed as divisions, so levels equal as rationals are equal
  // doubles and the merged grid has no spurious slivers.
  const torch::Tensor u_levels = torch::arange(1, n + 1, u.options()) / static_cast<double>(n);
  const torch::Tensor v_levels = torch::arange(1, m + 1, v.options()) / static_cast<double>(m);
  const torch::Tensor levels = std::get<0>(torch::cat({u_levels, v_levels}).sort());
  // Left-continuous quantile function: Q(q) = x_(k) for q in ((k-1)/n, k/n].
  const torch::Tensor u_at =
      u.index_select(0, torch::searchsorted(u_levels, levels).clamp_max(n - 1));
  const torch::Tensor v_at =
      v.index_select(0, torch::searchsorted(v_levels, levels).clamp_max(m - 1));
  const torch::Tensor widths = levels - torch::cat({levels.new_zeros({1}), levels.slice(0, 0, -1)});
  // Zero-width steps (levels shared by both grids) are left out: an infinite difference there
  // would make 0 x inf = NaN of a distance that is merely infinite.
  const torch::Tensor step = widths > 0;
  return (widths.masked_select(step) * (u_at - v_at).abs().pow(p).masked_select(step))
      .sum()
      .pow(1.0 / p)
      .item<double>();
}

torch::Tensor pairwise_distances(const torch::Tensor& positions) {
  check_configurations(positions, "pairwise_distances");
  const int64_t n = positions.size(1);
  const torch::Tensor pairs = torch::triu_indices(
      n, n, 1, torch::TensorOptions().dtype(torch::kInt64).device(positions.device()));
  const torch::Tensor delta =
      positions.index_select(1, pairs[0]) - positions.index_select(1, pairs[1]);
  return torch::linalg_vector_norm(delta, 2, {-1}, false, torch::kFloat64);
}

double histogram_tvd(const torch::Tensor& generated, const torch::Tensor& reference, int64_t bins) {
  check(bins >= 1, fmt::format("histogram_tvd: bins must be >= 1, got {}", bins));
  const torch::Tensor ref = flat_float64(reference, "histogram_tvd (reference)");
  // NaN in generated samples is allowed: it lies outside the range and counts as such.
  check(generated.defined() && generated.numel() > 0, "histogram_tvd (generated): empty sample");
  const torch::Tensor gen = generated.flatten().to(torch::kFloat64);
  const double lo = ref.min().item<double>(), hi = ref.max().item<double>();
  check(hi > lo, "histogram_tvd: the reference values are all equal; no range to bin");
  const auto fractions = [&](const torch::Tensor& x) {
    const torch::Tensor inside = x.masked_select((x >= lo) & (x <= hi));
    const torch::Tensor bin = ((inside - lo) * (static_cast<double>(bins) / (hi - lo)))
                                  .floor()
                                  .to(torch::kInt64)
                                  .clamp(0, bins - 1);
    return torch::bincount(bin, {}, bins).to(torch::kFloat64) / static_cast<double>(x.numel());
  };
  const torch::Tensor p = fractions(ref);
  const torch::Tensor q = fractions(gen);
  const torch::Tensor q_outside = 1.0 - q.sum();
  return (0.5 * ((p - q).abs().sum() + q_outside)).item<double>();
}

double outlier_fraction(const torch::Tensor& generated_energy,
                        const torch::Tensor& reference_energy) {
  const torch::Tensor ref = flat_float64(reference_energy, "outlier_fraction (reference)");
  check(generated_energy.defined() && generated_energy.numel() > 0,
        "outlier_fraction (generated): empty sample");
  const torch::Tensor gen = generated_energy.flatten().to(torch::kFloat64);
  // NaN energies are broken samples too.
  const torch::Tensor outlier = (gen > ref.max()) | torch::isnan(gen);
  return outlier.to(torch::kFloat64).mean().item<double>();
}

nlohmann::json Metrics::to_json() const {
  // Absent energy metrics are null, so every file has the same keys.
  const auto optional = [](const std::optional<double>& value) {
    return value ? nlohmann::json(*value) : nlohmann::json();
  };
  nlohmann::json out = {
      {"n_generated", n_generated},
      {"n_reference", n_reference},
      {"energy_w1", optional(energy_w1)},
      {"energy_w2", optional(energy_w2)},
      {"energy_w2_squared", optional(energy_w2_squared)},
      {"distance_tvd", distance_tvd},
      {"distance_w2", distance_w2},
      {"distance_w2_squared", distance_w2_squared},
      {"outlier_fraction", optional(outlier_fraction)},
      {"energy_failures", energy_failures},
  };
  if (equivariant_w2) {
    out["equivariant_w2"] = *equivariant_w2;
    out["equivariant_samples"] = equivariant_samples;
  }
  out["virial_kT"] = virial ? nlohmann::json(virial->kT) : nlohmann::json();
  out["virial_kT_standard_error"] =
      virial ? nlohmann::json(virial->standard_error) : nlohmann::json();
  return out;
}

Metrics compute_metrics(const Samples& generated, const Samples& reference,
                        MetricsOptions options) {
  check_configurations(generated.positions, "compute_metrics (generated)");
  check_configurations(reference.positions, "compute_metrics (reference)");
  check(generated.positions.size(1) == reference.positions.size(1) &&
            generated.positions.size(2) == reference.positions.size(2),
        fmt::format("compute_metrics: generated frames are {} x {}, reference frames {} x {} "
                    "(atoms x dimension)",
                    generated.positions.size(1), generated.positions.size(2),
                    reference.positions.size(1), reference.positions.size(2)));
  for (const auto& [samples, role] :
       {std::pair{&generated, "generated"}, {&reference, "reference"}}) {
    const bool energies = samples->energies.defined();
    check(!energies || (samples->energies.dim() == 1 &&
                        samples->energies.size(0) == samples->positions.size(0)),
          fmt::format("compute_metrics: {} energies must be [B], one per frame", role));
    torch::Tensor broken = torch::isnan(samples->positions).flatten(1).any(1);
    // A generated frame may lack an energy (NaN); a reference frame may not.
    if (energies && samples == &reference) broken |= torch::isnan(samples->energies);
    const int64_t count = broken.sum().item<int64_t>();
    check(count == 0, fmt::format("compute_metrics: {} of {} {} frames have NaN positions{}", count,
                                  samples->positions.size(0), role,
                                  samples == &reference ? " or energies" : ""));
  }
  Metrics metrics;
  metrics.n_generated = generated.positions.size(0);
  metrics.n_reference = reference.positions.size(0);
  if (generated.energies.defined() && reference.energies.defined()) {
    const torch::Tensor known = generated.energies.masked_select(~torch::isnan(generated.energies));
    metrics.energy_failures = metrics.n_generated - known.numel();
    if (known.numel() > 0) {
      metrics.energy_w1 = wasserstein_1d(known, reference.energies, 1.0);
      metrics.energy_w2 = wasserstein_1d(known, reference.energies, 2.0);
      metrics.energy_w2_squared = *metrics.energy_w2 * *metrics.energy_w2;
    }
    metrics.outlier_fraction = outlier_fraction(generated.energies, reference.energies);
  }
  const torch::Tensor generated_distances = pairwise_distances(generated.positions);
  const torch::Tensor reference_distances = pairwise_distances(reference.positions);
  metrics.distance_tvd =
      histogram_tvd(generated_distances, reference_distances, options.distance_bins);
  metrics.distance_w2 = wasserstein_1d(generated_distances, reference_distances, 2.0);
  metrics.distance_w2_squared = metrics.distance_w2 * metrics.distance_w2;
  if (options.equivariant_samples > 0) {
    const int64_t n =
        std::min({options.equivariant_samples, metrics.n_generated, metrics.n_reference});
    metrics.equivariant_w2 = equivariant_w2(generated.positions.slice(0, 0, n).to(torch::kFloat64),
                                            reference.positions.slice(0, 0, n).to(torch::kFloat64));
    metrics.equivariant_samples = n;
  }
  metrics.virial = virial_of_finite_frames(generated);
  return metrics;
}

}  // namespace psm
