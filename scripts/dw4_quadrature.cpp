// Exact DW4 statistics at kT by numerical quadrature, and how far sample files are from them.
//
//   dw4_quadrature [--h H] [--kT KT] [FILE ...]
//
// DW4 (../shared/data/README.md): E = sum over the 6 unique pairs of -4 s^2 + 0.9 s^4,
// s = d_ij - 4, four particles in 2-D. The energy depends on the shape only, so the Boltzmann
// distribution of the shape is a 5-D integral: particle 0 at the origin, particle 1 at (r, 0)
// (weight r from the rotation), particle 2 at y > 0 (mirror symmetry), particle 3 anywhere. The
// trapezoidal rule with step H converges fast (the thermal width of a pair is 0.25): H = 0.3,
// 0.2, 0.15 and 0.1 give the same mean energy to 4 decimals.
//
// Prints the exact mean and standard deviation of E, the fraction of states by the number of
// pairs closer than d0 = 4, and for each FILE (.npy [F, 8] as in the shared data, or a psm
// dataset .npz) the same statistics and the energy W1 to the exact distribution. The energy is
// computed here from the formula above, independently of psm's potential code.

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "psm/core/error.h"
#include "psm/io/dataset.h"
#include "psm/io/npy.h"

namespace {

constexpr double d0 = 4.0;
constexpr double pair_cutoff = 7.6;         // g(7.6) = 99: farther pairs carry no weight
constexpr double low = -26.0, bin = 0.001;  // energy histogram of the exact distribution
constexpr int bins = 40000;

double pair_energy(double d) {
  const double s = d - d0, s2 = s * s;
  return -4.0 * s2 + 0.9 * s2 * s2;
}

struct Statistics {
  double weight = 0, energy = 0, energy2 = 0;
  std::array<double, 7> short_pairs{};  ///< weight by the number of pairs with d < d0
  std::vector<double> histogram = std::vector<double>(bins, 0.0);

  void add(double e, int n_short, double w) {
    weight += w;
    energy += w * e;
    energy2 += w * e * e;
    short_pairs[n_short] += w;
    const auto b = static_cast<int>((e - low) / bin);
    if (b >= 0 && b < bins) histogram[b] += w;
  }
  double mean() const { return energy / weight; }
  double std() const { return std::sqrt(energy2 / weight - mean() * mean()); }
  double fraction_at_least(int n) const {
    double sum = 0;
    for (int k = n; k < 7; ++k) sum += short_pairs[k];
    return sum / weight;
  }
};

Statistics quadrature(double h, double kT) {
  Statistics exact;
  std::vector<double> axis, upper;
  for (double v = -pair_cutoff + h / 2; v < pair_cutoff; v += h) axis.push_back(v);
  for (double v = h / 2; v < pair_cutoff; v += h) upper.push_back(v);
  for (double r = h / 2; r < pair_cutoff; r += h) {
    for (double x2 : axis) {
      for (double y2 : upper) {
        const double d02 = std::hypot(x2, y2), d12 = std::hypot(x2 - r, y2);
        if (d02 > pair_cutoff || d12 > pair_cutoff) continue;
        const double e2 = pair_energy(r) + pair_energy(d02) + pair_energy(d12);
        // The other three pairs add at least -13.4 and the minimum of E is -25.7: skip weights
        // below exp(-40) of the peak.
        if (e2 > 30) continue;
        const int short2 = (r < d0) + (d02 < d0) + (d12 < d0);
        for (double x3 : axis) {
          for (double y3 : axis) {
            const double d03 = std::hypot(x3, y3), d13 = std::hypot(x3 - r, y3),
                         d23 = std::hypot(x3 - x2, y3 - y2);
            if (d03 > pair_cutoff || d13 > pair_cutoff || d23 > pair_cutoff) continue;
            const double e = e2 + pair_energy(d03) + pair_energy(d13) + pair_energy(d23);
            exact.add(e, short2 + (d03 < d0) + (d13 < d0) + (d23 < d0),
                      r * std::exp(-(e + 25) / kT));
          }
        }
      }
    }
  }
  return exact;
}

/// Positions [F, 4, 2] float64 of a .npy [F, 8] or a psm dataset.
torch::Tensor read_positions(const std::string& file) {
  const auto positions =
      file.ends_with(".npy") ? psm::read_npy(file) : psm::load_dataset(file).positions;
  psm::check(positions.dim() >= 2 && positions.size(0) > 0 && positions[0].numel() == 8,
             fmt::format("{}: expected [frames, 8] DW4 positions", file));
  return positions.to(torch::kFloat64).reshape({-1, 4, 2}).contiguous();
}

void compare(const std::string& file, const Statistics& exact) {
  const auto positions = read_positions(file);
  const auto* x = positions.data_ptr<double>();
  const int64_t frames = positions.size(0);
  Statistics sample;
  std::vector<double> energies;
  for (int64_t f = 0; f < frames; ++f, x += 8) {
    double e = 0;
    int n_short = 0;
    for (int i = 0; i < 4; ++i) {
      for (int j = i + 1; j < 4; ++j) {
        const double d = std::hypot(x[2 * i] - x[2 * j], x[2 * i + 1] - x[2 * j + 1]);
        e += pair_energy(d);
        n_short += d < d0;
      }
    }
    sample.add(e, n_short, 1.0);
  }
  // W1 = integral of |F_sample - F_exact| over the energy, on the histogram bins.
  double w1 = 0, cumulative_exact = 0, cumulative_sample = 0;
  for (int b = 0; b < bins; ++b) {
    cumulative_exact += exact.histogram[b] / exact.weight;
    cumulative_sample += sample.histogram[b] / sample.weight;
    w1 += std::abs(cumulative_sample - cumulative_exact) * bin;
  }
  fmt::print("{}\n  frames {}  mean E {:.4f} +- {:.4f} (frames taken as independent)  std {:.4f}\n",
             file, frames, sample.mean(), sample.std() / std::sqrt(static_cast<double>(frames)),
             sample.std());
  fmt::print("  fraction with >= 4 short pairs {:.4f}  energy W1 to exact {:.4f}\n",
             sample.fraction_at_least(4), w1);
}

}  // namespace

int main(int argc, char** argv) try {
  double h = 0.2, kT = 1.0;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    if ((argument == "--h" || argument == "--kT") && i + 1 < argc) {
      (argument == "--h" ? h : kT) = std::stod(argv[++i]);
    } else {
      files.push_back(argument);
    }
  }
  psm::check(h > 0 && h <= 0.5 && kT > 0, "dw4_quadrature: need 0 < --h <= 0.5 and --kT > 0");
  const Statistics exact = quadrature(h, kT);
  fmt::print("DW4 exact at kT = {} (quadrature step {}): mean E {:.5f}  std {:.5f}\n", kT, h,
             exact.mean(), exact.std());
  fmt::print("  fraction with >= 4 short pairs (d < 4) {:.4f}; by number of short pairs:",
             exact.fraction_at_least(4));
  for (int k = 1; k < 7; ++k) fmt::print(" {}: {:.4f}", k, exact.short_pairs[k] / exact.weight);
  fmt::print("\n");
  for (const auto& file : files) compare(file, exact);
  return 0;
} catch (const std::exception& error) {
  fmt::print(stderr, "dw4_quadrature: error: {}\n", error.what());
  return 1;
}
