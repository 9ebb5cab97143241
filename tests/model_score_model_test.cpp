// Symmetries, preconditioning and training plumbing of the score model (model/).

#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/model/egnn.h"
#include "psm/model/score_model.h"

namespace {

using psm::EgnnOptions;
using psm::ScoreModel;
using psm::ScoreModelOptions;

double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  auto a64 = a.to(torch::kFloat64), b64 = b.to(torch::kFloat64);
  return (a64 - b64).norm().item<double>() / b64.norm().item<double>();
}

// A random orthogonal matrix [D, D] with determinant `det` (+1 rotation, -1 with reflection).
torch::Tensor random_orthogonal(int64_t dim, double det, torch::Generator& gen) {
  auto q = std::get<0>(torch::linalg_qr(torch::randn({dim, dim}, gen, torch::kFloat64)));
  if ((torch::det(q).item<double>() > 0) != (det > 0)) q.select(1, 0).neg_();
  return q;
}

// The freshly initialised network barely moves atoms (coord_out is tiny by design), which would
// let the exactly equivariant c_skip term dominate the score; scale the coordinate heads up so
// the tests exercise the whole nonlinear network.
void enlarge_coordinate_heads(psm::EgnnImpl& network) {
  torch::NoGradGuard no_grad;
  for (const auto& layer : *network.layers)
    layer->as<psm::EgnnLayerImpl>()->coord_out->weight.mul_(1000);
}

psm::EgnnImpl& egnn_of(const ScoreModel& model) {
  return dynamic_cast<psm::EgnnImpl&>(*model->network);
}

EgnnOptions lj_network(int64_t dim, int64_t atoms, torch::Dtype dtype) {
  return EgnnOptions(dim, torch::zeros({atoms}, torch::kInt64)).layers(3).hidden(16).dtype(dtype);
}

// Two species with the molecular options: radial basis and a smooth cutoff.
EgnnOptions molecule_network(int64_t dim, torch::Dtype dtype) {
  auto species = torch::tensor({6, 1, 1, 8, 1, 6, 1, 1}, torch::kInt64);
  return EgnnOptions(dim, species)
      .layers(3)
      .hidden(16)
      .num_rbf(8)
      .rbf_cutoff(3.0)
      .cutoff(2.5)
      .dtype(dtype);
}

ScoreModel make_model(EgnnOptions network, double sigma_data = 0.8) {
  ScoreModel model(ScoreModelOptions(std::move(network), sigma_data));
  enlarge_coordinate_heads(egnn_of(model));
  return model;
}

struct SymmetryCase {
  std::string name;
  EgnnOptions network;
  torch::Tensor permutation;  // atoms of equal species only
  double tolerance;
};

std::vector<SymmetryCase> symmetry_cases() {
  // Species of molecule_network: C H H O H C H H; swap the carbons and shuffle the hydrogens.
  auto molecule_perm = torch::tensor({5, 2, 6, 3, 7, 0, 1, 4}, torch::kInt64);
  auto lj_perm = [](int64_t n) {
    return torch::randperm(n, psm::make_generator(7), torch::kInt64);
  };
  return {
      {"lj13_d3_f64", lj_network(3, 13, torch::kFloat64), lj_perm(13), 1e-10},
      {"lj13_d3_f32", lj_network(3, 13, torch::kFloat32), lj_perm(13), 1e-5},
      {"dw4_d2_f64", lj_network(2, 4, torch::kFloat64), lj_perm(4), 1e-10},
      {"dw4_d2_f32", lj_network(2, 4, torch::kFloat32), lj_perm(4), 1e-5},
      {"molecule_d3_f64", molecule_network(3, torch::kFloat64), molecule_perm, 1e-10},
      {"molecule_d3_f32", molecule_network(3, torch::kFloat32), molecule_perm, 1e-5},
  };
}

// Checks every symmetry of the score for one case; `no_grad` selects the inference kernels.
void expect_symmetries(SymmetryCase& c, bool no_grad) {
  auto model = make_model(c.network);
  std::optional<torch::NoGradGuard> guard;
  if (no_grad) guard.emplace();
  const auto dtype = c.network.dtype();
  const int64_t n = c.network.species().size(0), dim = c.network.dim(), batch = 4;
  auto gen = psm::make_generator(11);
  auto x = torch::randn({batch, n, dim}, gen, torch::kFloat64).to(dtype);
  auto sigma = torch::tensor({0.02, 0.3, 1.0, 5.0}, torch::kFloat64).to(dtype);
  auto score = model->forward(x, sigma);
  ASSERT_EQ(score.sizes(), x.sizes());
  ASSERT_EQ(score.scalar_type(), dtype);
  ASSERT_TRUE(torch::isfinite(score).all().item<bool>());

  for (double det : {1.0, -1.0}) {
    auto q = random_orthogonal(dim, det, gen).to(dtype);
    EXPECT_LT(relative_error(model->forward(torch::matmul(x, q), sigma), torch::matmul(score, q)),
              c.tolerance)
        << "det " << det;
  }
  auto shift = 3.0 * torch::randn({batch, 1, dim}, gen, torch::kFloat64).to(dtype);
  EXPECT_LT(relative_error(model->forward(x + shift, sigma), score), c.tolerance);
  EXPECT_LT(relative_error(model->forward(x.index_select(1, c.permutation), sigma),
                           score.index_select(1, c.permutation)),
            c.tolerance);

  // Centre-of-mass-free to round-off, per sample (the scores differ by orders of magnitude
  // across sigma, and c_skip x and c_out F partly cancel).
  const double eps = dtype == torch::kFloat64 ? 1e-12 : 1e-6;
  auto com = score.mean(1).abs().amax({1}), scale = score.abs().amax({1, 2});
  EXPECT_LT((com / scale).max().item<double>(), eps);
}

TEST(ModelScoreModel, EquivariantUnderRotationReflectionTranslationPermutation) {
  for (auto& c : symmetry_cases()) {
    for (bool no_grad : {false, true}) {
      SCOPED_TRACE(c.name + (no_grad ? " (inference)" : " (autograd)"));
      expect_symmetries(c, no_grad);
    }
  }
}

TEST(ModelScoreModel, SymmetryTestDetectsABrokenSymmetry) {
  // Control for the test above: a non-equivariant map (the score plus a fixed vector field)
  // fails the same rotation check by far.
  auto model = make_model(lj_network(3, 13, torch::kFloat64));
  auto gen = psm::make_generator(12);
  auto x = torch::randn({2, 13, 3}, gen, torch::kFloat64);
  auto sigma = torch::tensor({0.1, 1.0}, torch::kFloat64);
  auto field = 1e-3 * torch::randn({1, 13, 3}, gen, torch::kFloat64);
  auto q = random_orthogonal(3, 1.0, gen);
  auto broken = [&](const torch::Tensor& y) { return model->forward(y, sigma) + field; };
  EXPECT_GT(relative_error(broken(torch::matmul(x, q)), torch::matmul(broken(x), q)), 1e-6);
}

TEST(ModelScoreModel, PreconditioningKeepsUnitScale) {
  const double sd = 0.7;
  auto sigma = torch::logspace(-3, 2, 11, 10.0, torch::kFloat64);
  auto c = psm::ve_preconditioning(sigma, sd);
  // Network input c_in x_sigma has unit variance when x_0 has variance sd^2 ...
  auto input_var = c.c_in.square() * (sigma.square() + sd * sd);
  // ... and so has the network's effective target (x_0 - c_skip x_sigma) / c_out.
  auto target_var =
      ((1 - c.c_skip).square() * sd * sd + c.c_skip.square() * sigma.square()) / c.c_out.square();
  EXPECT_TRUE(torch::allclose(input_var, torch::ones_like(sigma), 0, 1e-12));
  EXPECT_TRUE(torch::allclose(target_var, torch::ones_like(sigma), 0, 1e-12));
  EXPECT_TRUE(torch::allclose(c.c_noise, torch::log(sigma) / 4, 0, 1e-15));
}

TEST(ModelScoreModel, ZeroNetworkGivesTheExactGaussianScore) {
  // With F = 0 the denoiser is c_skip x, whose score -x / (sigma^2 + sd^2) is exactly the
  // score of CoM-free Gaussian data N(0, sd^2) noised to level sigma.
  const double sd = 0.9;
  ScoreModel model(ScoreModelOptions(lj_network(3, 5, torch::kFloat64), sd));
  {
    torch::NoGradGuard no_grad;
    for (const auto& layer : *egnn_of(model).layers) {
      layer->as<psm::EgnnLayerImpl>()->coord_out->weight.zero_();
    }
  }
  auto gen = psm::make_generator(13);
  auto x = torch::randn({3, 5, 3}, gen, torch::kFloat64);
  auto sigma = torch::tensor({0.01, 0.5, 20.0}, torch::kFloat64);
  auto x0 = x - x.mean(1, true);
  auto expected = -x0 / (sigma.square() + sd * sd).view({-1, 1, 1});
  EXPECT_LT(relative_error(model->forward(x, sigma), expected), 1e-12);
  EXPECT_LT(relative_error(model->denoise(x, sigma),
                           x0 * (sd * sd / (sigma.square() + sd * sd)).view({-1, 1, 1})),
            1e-12);
}

TEST(ModelScoreModel, ParametersAreReproducibleFromTheSeed) {
  auto options = molecule_network(3, torch::kFloat32).seed(42);
  ScoreModel a(ScoreModelOptions(options, 1.0)), b(ScoreModelOptions(options, 1.0));
  ScoreModel other(ScoreModelOptions(molecule_network(3, torch::kFloat32).seed(43), 1.0));
  auto pb = b->named_parameters(), po = other->named_parameters();
  ASSERT_EQ(a->named_parameters().size(), pb.size());
  for (const auto& p : a->named_parameters()) {
    SCOPED_TRACE(p.key());
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()]));
    EXPECT_FALSE(torch::equal(p.value(), po[p.key()]));
  }
  // reset_parameters() returns to the seeded draw; clone() copies it.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : a->parameters()) p.add_(1.0);
  }
  a->network->reset_parameters();
  auto copy = std::dynamic_pointer_cast<psm::ScoreModelImpl>(a->clone());
  auto pc = copy->named_parameters();
  for (const auto& p : a->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
    EXPECT_TRUE(torch::equal(p.value(), pc[p.key()])) << p.key();
  }
}

TEST(ModelScoreModel, GradientReachesEveryParameter) {
  for (const auto& network :
       {lj_network(3, 13, torch::kFloat32), molecule_network(3, torch::kFloat32)}) {
    ScoreModel model(ScoreModelOptions(network, 1.0));
    const int64_t n = network.species().size(0);
    auto gen = psm::make_generator(14);
    // Positions spread so that some pairs are inside and some beyond the cutoff.
    auto x = 1.5 * torch::randn({4, n, 3}, gen, torch::kFloat64);
    auto sigma = torch::tensor({0.05, 0.2, 1.0, 3.0}, torch::kFloat64);
    auto target = torch::randn({4, n, 3}, gen, torch::kFloat64);
    (model->forward(x, sigma) - target).square().mean().backward();
    for (const auto& p : model->named_parameters()) {
      SCOPED_TRACE(p.key());
      ASSERT_TRUE(p.value().grad().defined());
      EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>());
      EXPECT_GT(p.value().grad().abs().max().item<double>(), 0.0);
    }
  }
}

TEST(ModelScoreModel, EstimatesSigmaDataFromCentreOfMassFreeRms) {
  // Two atoms at t +- (a, 0, 0): CoM-free coordinates +-a on one axis, RMS a / sqrt(3).
  const double a = 1.7;
  auto positions = torch::tensor({{{a + 5, 2.0, -1.0}, {-a + 5, 2.0, -1.0}}}, torch::kFloat64);
  EXPECT_NEAR(psm::estimate_sigma_data(positions), a / std::sqrt(3.0), 1e-14);
  EXPECT_THROW(psm::estimate_sigma_data(torch::zeros({0, 2, 3})), psm::Error);
}

TEST(ModelScoreModel, RejectsBadInput) {
  auto model = make_model(lj_network(3, 13, torch::kFloat32));
  auto sigma = torch::ones({2});
  EXPECT_THROW(model->forward(torch::zeros({2, 12, 3}), sigma), psm::Error);
  EXPECT_THROW(model->forward(torch::zeros({2, 13, 2}), sigma), psm::Error);
  EXPECT_THROW(model->forward(torch::zeros({2, 13, 3}), torch::ones({3})), psm::Error);
  EXPECT_THROW(model->forward(torch::zeros({2, 13, 3}), torch::zeros({2})), psm::Error);
  EXPECT_THROW(ScoreModel(ScoreModelOptions(lj_network(3, 13, torch::kFloat32), 0.0)), psm::Error);
  EXPECT_THROW(psm::Egnn(lj_network(3, 13, torch::kFloat32).activation("swish")), psm::Error);
  EXPECT_THROW(psm::Egnn(lj_network(4, 13, torch::kFloat32)), psm::Error);
}

}  // namespace
