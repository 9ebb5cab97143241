// Superposition (Kabsch), assignment (Hungarian) and the equivariant distance between
// configurations of identical particles. The per-pair search over labellings is combinatorial
// and sequential, so it runs as plain loops on tiny arrays (N particles, D <= 3), one pair per
// task in parallel; the tensor Kabsch gives the final, accurate RMSD.

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>

#include "psm/core/error.h"
#include "psm/eval/metrics.h"

namespace psm {

namespace {

/// Hungarian algorithm on a row-major n x m cost array (n <= m); returns row -> column.
/// Shortest augmenting path with row/column potentials u, v: each row is added by a Dijkstra-like
/// search over reduced costs cost - u - v >= 0, then the path is flipped.
std::vector<int64_t> solve_assignment(const double* cost, int64_t n, int64_t m) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  // 1-based rows and columns; column 0 is the virtual start of each augmenting path.
  std::vector<double> u(n + 1, 0.0), v(m + 1, 0.0), min_reduced(m + 1);
  std::vector<int64_t> row_of_col(m + 1, 0), previous_col(m + 1, 0);
  std::vector<char> visited(m + 1);
  for (int64_t row = 1; row <= n; ++row) {
    row_of_col[0] = row;
    int64_t col0 = 0;
    std::fill(min_reduced.begin(), min_reduced.end(), inf);
    std::fill(visited.begin(), visited.end(), 0);
    do {
      visited[col0] = 1;
      const int64_t row0 = row_of_col[col0];
      const double* cost_row = cost + (row0 - 1) * m;
      double delta = inf;
      int64_t col1 = 0;
      for (int64_t col = 1; col <= m; ++col) {
        if (visited[col]) continue;
        const double reduced = cost_row[col - 1] - u[row0] - v[col];
        if (reduced < min_reduced[col]) {
          min_reduced[col] = reduced;
          previous_col[col] = col0;
        }
        if (min_reduced[col] < delta) {
          delta = min_reduced[col];
          col1 = col;
        }
      }
      for (int64_t col = 0; col <= m; ++col) {
        if (visited[col]) {
          u[row_of_col[col]] += delta;
          v[col] -= delta;
        } else {
          min_reduced[col] -= delta;
        }
      }
      col0 = col1;
    } while (row_of_col[col0] != 0);
    do {  // flip the augmenting path
      const int64_t col1 = previous_col[col0];
      row_of_col[col0] = row_of_col[col1];
      col0 = col1;
    } while (col0 != 0);
  }
  std::vector<int64_t> row_to_col(n, -1);
  for (int64_t col = 1; col <= m; ++col) {
    if (row_of_col[col] != 0) row_to_col[row_of_col[col] - 1] = col - 1;
  }
  return row_to_col;
}

torch::Tensor centred(const torch::Tensor& x) { return x - x.mean(1, /*keepdim=*/true); }

void check_pair_shapes(const torch::Tensor& x, const torch::Tensor& y, const char* what) {
  check(x.defined() && x.dim() == 3, fmt::format("{}: positions must have shape [B, N, D]", what));
  check(y.defined() && x.sizes() == y.sizes(),
        fmt::format("{}: shapes differ: {} vs {}", what, fmt::join(x.sizes(), "x"),
                    fmt::join(y.sizes(), "x")));
}

/// D x D matrices (D <= 3) stored row-major with stride 3.
using Mat3 = std::array<double, 9>;

/// Eigen-decomposition of a symmetric matrix, a = V diag(w) V^T, by cyclic Jacobi rotations;
/// eigenvalues in descending order, eigenvectors in the columns of V.
void symmetric_eigen(Mat3 a, int d, std::array<double, 3>& w, Mat3& v) {
  v = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  for (int sweep = 0; sweep < 50; ++sweep) {
    double off = 0, scale = 0;
    for (int p = 0; p < d; ++p) {
      scale += a[p * 3 + p] * a[p * 3 + p];
      for (int q = p + 1; q < d; ++q) off += a[p * 3 + q] * a[p * 3 + q];
    }
    if (off <= 1e-32 * scale || off == 0) break;
    for (int p = 0; p < d; ++p) {
      for (int q = p + 1; q < d; ++q) {
        if (a[p * 3 + q] == 0) continue;
        // Rotation in the (p, q) plane that zeroes a[p][q] (Numerical Recipes §11.1).
        const double theta = (a[q * 3 + q] - a[p * 3 + p]) / (2 * a[p * 3 + q]);
        const double t =
            std::copysign(1.0, theta) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < d; ++k) {  // a <- a J
          const double akp = a[k * 3 + p], akq = a[k * 3 + q];
          a[k * 3 + p] = c * akp - s * akq;
          a[k * 3 + q] = s * akp + c * akq;
        }
        for (int k = 0; k < d; ++k) {  // a <- J^T a
          const double apk = a[p * 3 + k], aqk = a[q * 3 + k];
          a[p * 3 + k] = c * apk - s * aqk;
          a[q * 3 + k] = s * apk + c * aqk;
        }
        for (int k = 0; k < d; ++k) {  // v <- v J
          const double vkp = v[k * 3 + p], vkq = v[k * 3 + q];
          v[k * 3 + p] = c * vkp - s * vkq;
          v[k * 3 + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  std::array<int, 3> order = {0, 1, 2};
  for (int i = 0; i < d; ++i) {  // descending eigenvalues (selection sort of <= 3 entries)
    for (int j = i + 1; j < d; ++j) {
      if (a[order[j] * 3 + order[j]] > a[order[i] * 3 + order[i]]) std::swap(order[i], order[j]);
    }
  }
  Mat3 sorted{};
  for (int k = 0; k < d; ++k) {
    w[k] = a[order[k] * 3 + order[k]];
    for (int i = 0; i < d; ++i) sorted[i * 3 + k] = v[i * 3 + order[k]];
  }
  v = sorted;
}

/// The orthogonal R maximising tr(R^T h) (Kabsch), h = X^T Y for row-vector points, built
/// from the eigenvectors of h^T h; the last left singular vector is completed by orthogonality
/// so that rank-deficient (planar, collinear) configurations stay well defined.
Mat3 optimal_orthogonal(const Mat3& h, int d, bool allow_reflection) {
  Mat3 hth{};
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j)
      for (int k = 0; k < d; ++k) hth[i * 3 + j] += h[k * 3 + i] * h[k * 3 + j];
  std::array<double, 3> w{};
  Mat3 v{};
  symmetric_eigen(hth, d, w, v);
  // h v_k = sigma_k u_k
  std::array<std::array<double, 3>, 3> hv{}, u{};
  for (int k = 0; k < d; ++k)
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) hv[k][i] += h[i * 3 + j] * v[j * 3 + k];
  const auto norm = [d](const std::array<double, 3>& a) {
    double s = 0;
    for (int i = 0; i < d; ++i) s += a[i] * a[i];
    return std::sqrt(s);
  };
  const auto det_v = [&] {
    if (d == 2) return v[0] * v[4] - v[1] * v[3];
    return v[0] * (v[4] * v[8] - v[5] * v[7]) - v[1] * (v[3] * v[8] - v[5] * v[6]) +
           v[2] * (v[3] * v[7] - v[4] * v[6]);
  };
  const double first = norm(hv[0]);
  if (first == 0) return {1, 0, 0, 0, 1, 0, 0, 0, 1};  // h = 0: every R is optimal
  for (int i = 0; i < d; ++i) u[0][i] = hv[0][i] / first;
  if (d == 3) {
    // Second column: h v_2 made orthogonal to u_1 (any perpendicular if it vanishes).
    double dot = 0;
    for (int i = 0; i < 3; ++i) dot += u[0][i] * hv[1][i];
    for (int i = 0; i < 3; ++i) u[1][i] = hv[1][i] - dot * u[0][i];
    if (norm(u[1]) < 1e-12 * first) {
      const int axis = std::abs(u[0][0]) < 0.9 ? 0 : 1;
      std::array<double, 3> e{};
      e[axis] = 1;
      for (int i = 0; i < 3; ++i) u[1][i] = e[i] - u[0][axis] * u[0][i];
    }
    const double n1 = norm(u[1]);
    for (int i = 0; i < 3; ++i) u[1][i] /= n1;
    u[2] = {u[0][1] * u[1][2] - u[0][2] * u[1][1], u[0][2] * u[1][0] - u[0][0] * u[1][2],
            u[0][0] * u[1][1] - u[0][1] * u[1][0]};
  } else {
    u[1] = {-u[0][1], u[0][0], 0};
  }
  // [u_1 .. u_D] has det +1 here; flip u_D to reach the optimum (sign of sigma_D) or, for
  // proper rotations, det(U V^T) = +1.
  double sign = 1;
  if (allow_reflection) {
    double dot = 0;
    for (int i = 0; i < d; ++i) dot += u[d - 1][i] * hv[d - 1][i];
    sign = dot < 0 ? -1 : 1;
  } else {
    sign = det_v() < 0 ? -1 : 1;
  }
  for (int i = 0; i < d; ++i) u[d - 1][i] *= sign;
  Mat3 r{};
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j)
      for (int k = 0; k < d; ++k) r[i * 3 + j] += u[k][i] * v[j * 3 + k];
  return r;
}

/// One pair of centred configurations (row-major [N, D]) and the search for the labelling.
class PairSearch {
 public:
  PairSearch(const double* x, const double* y, int64_t n, int d, bool allow_reflection)
      : x_(x), y_(y), n_(n), d_(d), reflect_(allow_reflection), cost_(n * n) {}

  /// Sum of squared deviations after the best superposition for labelling perm (x_i ~ y_perm[i]).
  double superposed_sum(const std::vector<int64_t>& perm, Mat3* rotation = nullptr) const {
    Mat3 h{};
    for (int64_t i = 0; i < n_; ++i)
      for (int a = 0; a < d_; ++a)
        for (int b = 0; b < d_; ++b) h[a * 3 + b] += x_[i * d_ + a] * y_[perm[i] * d_ + b];
    const Mat3 r = optimal_orthogonal(h, d_, reflect_);
    if (rotation != nullptr) *rotation = r;
    double sum = 0;
    for (int64_t i = 0; i < n_; ++i) {
      for (int b = 0; b < d_; ++b) {
        double moved = 0;
        for (int a = 0; a < d_; ++a) moved += x_[i * d_ + a] * r[a * 3 + b];
        const double delta = moved - y_[perm[i] * d_ + b];
        sum += delta * delta;
      }
    }
    return sum;
  }

  /// Labelling that matches each particle's sorted distances to the others (E(D)-invariant).
  std::vector<int64_t> profile_labelling() {
    const auto profiles = [&](const double* p) {
      std::vector<double> out(n_ * n_);
      for (int64_t i = 0; i < n_; ++i) {
        for (int64_t j = 0; j < n_; ++j) {
          double s = 0;
          for (int a = 0; a < d_; ++a) s += std::pow(p[i * d_ + a] - p[j * d_ + a], 2);
          out[i * n_ + j] = std::sqrt(s);
        }
        std::sort(out.begin() + i * n_, out.begin() + (i + 1) * n_);
      }
      return out;
    };
    const std::vector<double> px = profiles(x_), py = profiles(y_);
    for (int64_t i = 0; i < n_; ++i) {
      for (int64_t j = 0; j < n_; ++j) {
        double s = 0;
        for (int64_t k = 0; k < n_; ++k) s += std::pow(px[i * n_ + k] - py[j * n_ + k], 2);
        cost_[i * n_ + j] = s;
      }
    }
    return solve_assignment(cost_.data(), n_, n_);
  }

  /// How well x moved by r overlays y regardless of labels: sum over x's particles of the
  /// squared distance to the nearest particle of y, plus the same from y's side.
  double nearest_neighbour_score(const Mat3& r) const {
    std::vector<double> nearest_to_y(n_, std::numeric_limits<double>::infinity());
    double score = 0;
    for (int64_t i = 0; i < n_; ++i) {
      const std::array<double, 3> moved = move(i, r);
      double nearest = std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n_; ++j) {
        double s = 0;
        for (int b = 0; b < d_; ++b) s += (moved[b] - y_[j * d_ + b]) * (moved[b] - y_[j * d_ + b]);
        nearest = std::min(nearest, s);
        nearest_to_y[j] = std::min(nearest_to_y[j], s);
      }
      score += nearest;
    }
    for (double s : nearest_to_y) score += s;
    return score;
  }

  /// Labelling closest to y after moving x by r.
  std::vector<int64_t> nearest_labelling(const Mat3& r) {
    for (int64_t i = 0; i < n_; ++i) {
      const std::array<double, 3> moved = move(i, r);
      for (int64_t j = 0; j < n_; ++j) {
        double s = 0;
        for (int b = 0; b < d_; ++b) s += std::pow(moved[b] - y_[j * d_ + b], 2);
        cost_[i * n_ + j] = s;
      }
    }
    return solve_assignment(cost_.data(), n_, n_);
  }

  /// Alternates superposition and matching from `perm` until the labelling repeats.
  std::pair<double, std::vector<int64_t>> refine(std::vector<int64_t> perm, int64_t iterations) {
    Mat3 r{};
    double sum = superposed_sum(perm, &r);
    for (int64_t it = 0; it < iterations; ++it) {
      std::vector<int64_t> next = nearest_labelling(r);
      if (next == perm) break;
      Mat3 next_r{};
      const double next_sum = superposed_sum(next, &next_r);
      if (next_sum >= sum) break;  // each half-step can only lower the sum; stop on round-off
      perm = std::move(next);
      r = next_r;
      sum = next_sum;
    }
    return {sum, std::move(perm)};
  }

  /// Every labelling (N! of them).
  std::pair<double, std::vector<int64_t>> exhaustive() const {
    std::vector<int64_t> perm(n_), best;
    std::iota(perm.begin(), perm.end(), 0);
    double best_sum = std::numeric_limits<double>::infinity();
    do {
      const double sum = superposed_sum(perm);
      if (sum < best_sum) {
        best_sum = sum;
        best = perm;
      }
    } while (std::next_permutation(perm.begin(), perm.end()));
    return {best_sum, best};
  }

 private:
  /// Particle i of x moved by r (row vector times r).
  std::array<double, 3> move(int64_t i, const Mat3& r) const {
    std::array<double, 3> moved{};
    for (int b = 0; b < d_; ++b)
      for (int a = 0; a < d_; ++a) moved[b] += x_[i * d_ + a] * r[a * 3 + b];
    return moved;
  }

  const double* x_;
  const double* y_;
  int64_t n_;
  int d_;
  bool reflect_;
  std::vector<double> cost_;
};

/// An orthonormal frame (rows) with e_1 along p and e_2 in the plane of p and q (D = 3), or
/// e_2 perpendicular to e_1 (D = 2). False when p (or q's part perpendicular to p) vanishes.
bool frame_along(const double* p, const double* q, int d, double scale, Mat3& e) {
  e = {};
  double n0 = 0;
  for (int k = 0; k < d; ++k) n0 += p[k] * p[k];
  n0 = std::sqrt(n0);
  if (n0 <= 1e-9 * scale) return false;
  for (int k = 0; k < d; ++k) e[k] = p[k] / n0;
  if (d == 2) {
    e[3] = -e[1];
    e[4] = e[0];
    return true;
  }
  double dot = 0;
  for (int k = 0; k < 3; ++k) dot += e[k] * q[k];
  double n1 = 0;
  for (int k = 0; k < 3; ++k) {
    e[3 + k] = q[k] - dot * e[k];
    n1 += e[3 + k] * e[3 + k];
  }
  n1 = std::sqrt(n1);
  if (n1 <= 1e-9 * scale) return false;
  for (int k = 0; k < 3; ++k) e[3 + k] /= n1;
  e[6] = e[1] * e[5] - e[2] * e[4];
  e[7] = e[2] * e[3] - e[0] * e[5];
  e[8] = e[0] * e[4] - e[1] * e[3];
  return true;
}

/// Candidate orientations for one pair: x's frame of two anchor particles (the farthest from
/// the centroid, then the one farthest from that axis) mapped onto the frame of every ordered
/// pair of y's particles (D = 2: one anchor, every particle), plus mirror images when allowed.
/// When one correspondence of the optimal labelling is among them the start is near the optimum.
std::vector<Mat3> anchor_orientations(const double* x, const double* y, int64_t n, int d,
                                      bool allow_reflection) {
  const auto norm2 = [d](const double* p) {
    double s = 0;
    for (int k = 0; k < d; ++k) s += p[k] * p[k];
    return s;
  };
  int64_t a = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (norm2(x + i * d) > norm2(x + a * d)) a = i;
  }
  const double scale = std::sqrt(norm2(x + a * d));
  int64_t c = a == 0 ? 1 : 0;
  double best_perp = -1;
  for (int64_t i = 0; i < n && d == 3; ++i) {
    double dot = 0;
    for (int k = 0; k < 3; ++k) dot += x[i * 3 + k] * x[a * 3 + k];
    const double perp = norm2(x + i * 3) - dot * dot / (scale * scale);
    if (i != a && perp > best_perp) {
      best_perp = perp;
      c = i;
    }
  }
  std::vector<Mat3> out;
  Mat3 fx{}, fy{};
  if (!frame_along(x + a * d, x + c * d, d, scale, fx)) return out;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      if ((d == 3 && j == i) || (d == 2 && j != 0)) continue;
      if (!frame_along(y + i * d, y + j * d, d, scale, fy)) continue;
      for (const double mirror : {1.0, -1.0}) {
        if (mirror < 0 && !allow_reflection) continue;
        // R maps x's frame vectors onto y's: R = Fx^T diag(1, .., mirror) Fy.
        Mat3 r{};
        for (int p = 0; p < d; ++p)
          for (int q = 0; q < d; ++q)
            for (int k = 0; k < d; ++k)
              r[p * 3 + q] += fx[k * 3 + p] * fy[k * 3 + q] * (k == d - 1 ? mirror : 1.0);
        out.push_back(r);
      }
    }
  }
  return out;
}

}  // namespace

torch::Tensor kabsch_rotation(const torch::Tensor& x, const torch::Tensor& y,
                              bool allow_reflection) {
  check_pair_shapes(x, y, "kabsch_rotation");
  // max over R of tr(R^T H), H = X^T Y = U S V^T, is reached at R = U V^T.
  const torch::Tensor h = centred(x).transpose(1, 2).matmul(centred(y));
  auto [u, s, vh] = torch::linalg_svd(h, /*full_matrices=*/false);
  if (allow_reflection) return u.matmul(vh);
  // Proper rotation: flip the axis of the smallest singular value when U V^T is a reflection.
  const torch::Tensor det = torch::linalg_det(u.matmul(vh));
  torch::Tensor flip = torch::ones_like(s);
  flip.select(1, flip.size(1) - 1).copy_(det.sign());
  return (u * flip.unsqueeze(1)).matmul(vh);
}

torch::Tensor aligned_rmsd(const torch::Tensor& x, const torch::Tensor& y, bool allow_reflection) {
  const torch::Tensor rotation = kabsch_rotation(x, y, allow_reflection);
  const torch::Tensor delta = centred(x).matmul(rotation) - centred(y);
  return delta.square().sum(-1).mean(-1).sqrt();
}

std::vector<int64_t> linear_sum_assignment(const torch::Tensor& cost) {
  check(cost.defined() && cost.dim() == 2, "linear_sum_assignment: cost must be a matrix [n, m]");
  check(cost.size(0) <= cost.size(1),
        fmt::format("linear_sum_assignment: more rows than columns ({} x {})", cost.size(0),
                    cost.size(1)));
  const torch::Tensor host = cost.to(torch::kCPU, torch::kFloat64).contiguous();
  check(torch::isfinite(host).all().item<bool>(), "linear_sum_assignment: cost is not finite");
  return solve_assignment(host.data_ptr<double>(), host.size(0), host.size(1));
}

torch::Tensor equivariant_rmsd(const torch::Tensor& x, const torch::Tensor& y,
                               EquivariantDistanceOptions options) {
  check_pair_shapes(x, y, "equivariant_rmsd");
  const int64_t batch = x.size(0), n = x.size(1);
  const int d = static_cast<int>(x.size(2));
  check(d == 2 || d == 3, fmt::format("equivariant_rmsd: dimension must be 2 or 3, got {}", d));
  const torch::Tensor xc = centred(x.to(torch::kCPU, torch::kFloat64)).contiguous();
  const torch::Tensor yc = centred(y.to(torch::kCPU, torch::kFloat64)).contiguous();
  check(torch::isfinite(xc).all().item<bool>() && torch::isfinite(yc).all().item<bool>(),
        "equivariant_rmsd: positions are not finite");
  const bool exhaustive = n <= options.exhaustive_max_atoms;
  torch::Tensor perms = torch::empty({batch, n}, torch::kInt64);
  const double* xs = xc.data_ptr<double>();
  const double* ys = yc.data_ptr<double>();
  int64_t* out = perms.data_ptr<int64_t>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const double* xb = xs + b * n * d;
      const double* yb = ys + b * n * d;
      PairSearch search(xb, yb, n, d, options.allow_reflection);
      auto best = exhaustive ? search.exhaustive()
                             : search.refine(search.profile_labelling(), options.max_iterations);
      if (!exhaustive) {
        // Screen every anchor orientation cheaply, refine the most promising ones.
        const std::vector<Mat3> candidates =
            anchor_orientations(xb, yb, n, d, options.allow_reflection);
        std::vector<std::pair<double, size_t>> screened;
        for (size_t k = 0; k < candidates.size(); ++k) {
          screened.emplace_back(search.nearest_neighbour_score(candidates[k]), k);
        }
        const size_t refined =
            std::min(screened.size(), static_cast<size_t>(options.refined_starts));
        std::partial_sort(screened.begin(), screened.begin() + refined, screened.end());
        for (size_t k = 0; k < refined; ++k) {
          auto candidate = search.refine(search.nearest_labelling(candidates[screened[k].second]),
                                         options.max_iterations);
          if (candidate.first < best.first) best = std::move(candidate);
        }
      }
      std::copy(best.second.begin(), best.second.end(), out + b * n);
    }
  });
  const torch::Tensor matched = yc.gather(1, perms.unsqueeze(-1).expand_as(yc));
  return aligned_rmsd(xc, matched, options.allow_reflection).to(x.device());
}

double equivariant_w2(const torch::Tensor& x, const torch::Tensor& y,
                      EquivariantDistanceOptions options) {
  check_pair_shapes(x, y, "equivariant_w2");
  const int64_t n = x.size(0);
  torch::Tensor squared_cost = torch::empty({n, n}, torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    squared_cost[i].copy_(equivariant_rmsd(x[i].expand_as(y), y, options).square());
  }
  const std::vector<int64_t> match = linear_sum_assignment(squared_cost);
  const torch::Tensor cols = torch::tensor(match, torch::kInt64);
  return std::sqrt(squared_cost.gather(1, cols.unsqueeze(1)).mean().item<double>());
}

}  // namespace psm
