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

/// `weights` [n] (any shape of n elements) as float64 summing to 1.
torch::Tensor normalised_weights(const torch::Tensor& weights, int64_t n, const char* what) {
  const int64_t given = weights.defined() ? weights.numel() : 0;
  check(given == n, fmt::format("{}: {} weights for {} values", what, given, n));
  const torch::Tensor w = weights.flatten().to(torch::kFloat64);
  check(torch::isfinite(w).all().item<bool>() && (w >= 0).all().item<bool>(),
        fmt::format("{}: weights must be finite and non-negative", what));
  const double total = w.sum().item<double>();
  check(total > 0, fmt::format("{}: the weights are all zero", what));
  return w / total;
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

namespace {

/// Quantile levels k / n, k = 1..n, computed as divisions, so that levels equal as rationals are
/// equal doubles and a merged grid has no spurious slivers.
torch::Tensor uniform_levels(int64_t n, const torch::TensorOptions& options) {
  return torch::arange(1, n + 1, options) / static_cast<double>(n);
}

/// W_p between two quantile functions, each given by sorted values and the cumulative
/// probability reached at each value (the last one 1), compared on the merged breakpoints.
double wasserstein_from_levels(const torch::Tensor& u, const torch::Tensor& u_levels,
                               const torch::Tensor& v, const torch::Tensor& v_levels, double p) {
  const torch::Tensor levels = std::get<0>(torch::cat({u_levels, v_levels}).sort());
  // Left-continuous quantile function: Q(q) = the first value whose level reaches q.
  const torch::Tensor u_at =
      u.index_select(0, torch::searchsorted(u_levels, levels).clamp_max(u.numel() - 1));
  const torch::Tensor v_at =
      v.index_select(0, torch::searchsorted(v_levels, levels).clamp_max(v.numel() - 1));
  const torch::Tensor widths = levels - torch::cat({levels.new_zeros({1}), levels.slice(0, 0, -1)});
  // Zero-width steps (levels shared by both grids) are left out: an infinite difference there
  // would make 0 x inf = NaN of a distance that is merely infinite.
  const torch::Tensor step = widths > 0;
  return (widths.masked_select(step) * (u_at - v_at).abs().pow(p).masked_select(step))
      .sum()
      .pow(1.0 / p)
      .item<double>();
}

}  // namespace

double wasserstein_1d(const torch::Tensor& a, const torch::Tensor& b, double p) {
  check(p >= 1.0, fmt::format("wasserstein_1d: p must be >= 1, got {}", p));
  const torch::Tensor u = std::get<0>(flat_float64(a, "wasserstein_1d").sort());
  const torch::Tensor v = std::get<0>(flat_float64(b, "wasserstein_1d").sort());
  const int64_t n = u.numel(), m = v.numel();
  if (n == m) return (u - v).abs().pow(p).mean().pow(1.0 / p).item<double>();
  return wasserstein_from_levels(u, uniform_levels(n, u.options()), v,
                                 uniform_levels(m, v.options()), p);
}

double wasserstein_1d(const torch::Tensor& a, const torch::Tensor& a_weights,
                      const torch::Tensor& b, double p) {
  check(p >= 1.0, fmt::format("wasserstein_1d: p must be >= 1, got {}", p));
  const torch::Tensor values = flat_float64(a, "wasserstein_1d");
  const torch::Tensor weights = normalised_weights(a_weights, values.numel(), "wasserstein_1d");
  const auto [u, order] = values.sort();
  torch::Tensor u_levels = weights.index_select(0, order).cumsum(0);
  u_levels[-1] = 1.0;  // rounding must not leave a sliver above the last level
  const torch::Tensor v = std::get<0>(flat_float64(b, "wasserstein_1d").sort());
  return wasserstein_from_levels(u, u_levels, v, uniform_levels(v.numel(), v.options()), p);
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

namespace {

/// histogram_tvd with the generated values weighted, or counted when `generated_weights` is
/// undefined (exact fractions: identical samples give exactly 0).
double weighted_histogram_tvd(const torch::Tensor& generated,
                              const torch::Tensor& generated_weights,
                              const torch::Tensor& reference, int64_t bins) {
  check(bins >= 1, fmt::format("histogram_tvd: bins must be >= 1, got {}", bins));
  const torch::Tensor ref = flat_float64(reference, "histogram_tvd (reference)");
  // NaN in generated samples is allowed: it lies outside the range and counts as such.
  check(generated.defined() && generated.numel() > 0, "histogram_tvd (generated): empty sample");
  const torch::Tensor gen = generated.flatten().to(torch::kFloat64);
  const torch::Tensor gen_weights =
      generated_weights.defined()
          ? normalised_weights(generated_weights, gen.numel(), "histogram_tvd")
          : torch::Tensor();
  const double lo = ref.min().item<double>(), hi = ref.max().item<double>();
  check(hi > lo, "histogram_tvd: the reference values are all equal; no range to bin");
  const auto fractions = [&](const torch::Tensor& x, const torch::Tensor& weights) {
    const torch::Tensor inside = (x >= lo) & (x <= hi);
    const torch::Tensor bin =
        ((x.masked_select(inside) - lo) * (static_cast<double>(bins) / (hi - lo)))
            .floor()
            .to(torch::kInt64)
            .clamp(0, bins - 1);
    if (!weights.defined()) {
      return torch::bincount(bin, {}, bins).to(torch::kFloat64) / static_cast<double>(x.numel());
    }
    return torch::bincount(bin, weights.masked_select(inside), bins).to(torch::kFloat64);
  };
  const torch::Tensor p = fractions(ref, torch::Tensor());
  const torch::Tensor q = fractions(gen, gen_weights);
  const torch::Tensor q_outside = (1.0 - q.sum()).clamp_min(0.0);
  return (0.5 * ((p - q).abs().sum() + q_outside)).item<double>();
}

}  // namespace

double histogram_tvd(const torch::Tensor& generated, const torch::Tensor& reference, int64_t bins) {
  return weighted_histogram_tvd(generated, torch::Tensor(), reference, bins);
}

double histogram_tvd(const torch::Tensor& generated, const torch::Tensor& generated_weights,
                     const torch::Tensor& reference, int64_t bins) {
  check(generated_weights.defined(), "histogram_tvd: weights are undefined");
  return weighted_histogram_tvd(generated, generated_weights, reference, bins);
}

double outlier_fraction(const torch::Tensor& generated_energy,
                        const torch::Tensor& reference_energy) {
  const torch::Tensor ref = flat_float64(reference_energy, "outlier_fraction (reference)");
  check(generated_energy.defined() && generated_energy.numel() > 0,
        "outlier_fraction (generated): empty sample");
  const torch::Tensor gen = generated_energy.flatten().to(torch::kFloat64);
  // NaN energies are broken samples too.
  return ((gen > ref.max()) | torch::isnan(gen)).to(torch::kFloat64).mean().item<double>();
}

double outlier_fraction(const torch::Tensor& generated_energy,
                        const torch::Tensor& generated_weights,
                        const torch::Tensor& reference_energy) {
  const torch::Tensor ref = flat_float64(reference_energy, "outlier_fraction (reference)");
  check(generated_energy.defined() && generated_energy.numel() > 0,
        "outlier_fraction (generated): empty sample");
  const torch::Tensor gen = generated_energy.flatten().to(torch::kFloat64);
  const torch::Tensor weights =
      normalised_weights(generated_weights, gen.numel(), "outlier_fraction");
  // NaN energies are broken samples too.
  const torch::Tensor outlier = (gen > ref.max()) | torch::isnan(gen);
  return weights.masked_select(outlier).sum().item<double>();
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
  const bool weighted = generated.weights.defined();
  check(!reference.weights.defined(), "compute_metrics: reference frames cannot be weighted");
  const torch::Tensor weights =
      weighted ? normalised_weights(generated.weights, generated.positions.size(0),
                                    "compute_metrics (generated)")
               : torch::Tensor();
  // Unweighted samples take the unweighted functions: their equal quantile levels are exact.
  const auto w_p = [&](const torch::Tensor& values, const torch::Tensor& value_weights,
                       const torch::Tensor& reference_values, double p) {
    return weighted ? wasserstein_1d(values, value_weights, reference_values, p)
                    : wasserstein_1d(values, reference_values, p);
  };
  Metrics metrics;
  metrics.n_generated = generated.positions.size(0);
  metrics.n_reference = reference.positions.size(0);
  if (generated.energies.defined() && reference.energies.defined()) {
    const torch::Tensor has_energy = ~torch::isnan(generated.energies);
    const torch::Tensor known = generated.energies.masked_select(has_energy);
    const torch::Tensor known_weights = weighted ? weights.masked_select(has_energy) : weights;
    metrics.energy_failures = metrics.n_generated - known.numel();
    if (known.numel() > 0 && (!weighted || known_weights.sum().item<double>() > 0)) {
      metrics.energy_w1 = w_p(known, known_weights, reference.energies, 1.0);
      metrics.energy_w2 = w_p(known, known_weights, reference.energies, 2.0);
      metrics.energy_w2_squared = *metrics.energy_w2 * *metrics.energy_w2;
    }
    metrics.outlier_fraction =
        weighted ? outlier_fraction(generated.energies, weights, reference.energies)
                 : outlier_fraction(generated.energies, reference.energies);
  }
  const torch::Tensor generated_distances = pairwise_distances(generated.positions);
  const torch::Tensor reference_distances = pairwise_distances(reference.positions);
  const torch::Tensor distance_weights =
      weighted ? weights.unsqueeze(1).expand_as(generated_distances) : torch::Tensor();
  metrics.distance_tvd =
      weighted ? histogram_tvd(generated_distances, distance_weights, reference_distances,
                               options.distance_bins)
               : histogram_tvd(generated_distances, reference_distances, options.distance_bins);
  metrics.distance_w2 = w_p(generated_distances, distance_weights, reference_distances, 2.0);
  metrics.distance_w2_squared = metrics.distance_w2 * metrics.distance_w2;
  if (weighted) return metrics;
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
