// The dense EGNN on its own: cutoff locality, output shape and CoM, dtype handling.

#include <gtest/gtest.h>

#include <sstream>

#include "psm/core/random.h"
#include "psm/model/egnn.h"
#include "psm/model/score_model.h"

namespace {

double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

psm::Egnn make_network(double cutoff) {
  psm::Egnn net(psm::EgnnOptions(3, torch::zeros({9}, torch::kInt64))
                    .layers(3)
                    .hidden(16)
                    .num_rbf(6)
                    .rbf_cutoff(2.0)
                    .cutoff(cutoff)
                    .dtype(torch::kFloat64));
  torch::NoGradGuard no_grad;
  for (const auto& layer : *net->layers)
    layer->as<psm::EgnnLayerImpl>()->coord_out->weight.mul_(1000);
  return net;
}

// Two clusters of 4 and 5 atoms, each within a ball of radius 0.6, the second centred at
// offset_b [3].
torch::Tensor two_clusters(const torch::Tensor& offset_b, torch::Generator& gen) {
  auto a = 0.35 * torch::randn({1, 4, 3}, gen, torch::kFloat64)
                      .clamp(-0.6 / std::sqrt(3.0), 0.6 / std::sqrt(3.0));
  auto b = 0.35 * torch::randn({1, 5, 3}, gen, torch::kFloat64)
                      .clamp(-0.6 / std::sqrt(3.0), 0.6 / std::sqrt(3.0));
  return torch::cat({a, b + offset_b}, 1);
}

TEST(ModelEgnn, PairsBeyondTheCutoffContributeNothing) {
  // Rigidly moving a cluster that stays beyond the cutoff from the other leaves every output
  // unchanged: no message and no coordinate update crosses the gap. Fully connected, the same
  // move changes the output, so the check can fail.
  auto gen = psm::make_generator(21);
  auto first = torch::tensor({4.0, 0.0, 0.0}, torch::kFloat64);
  auto second = torch::tensor({3.0, 2.5, -1.0}, torch::kFloat64);
  auto x = two_clusters(first, gen);
  auto moved = x.clone();
  moved.narrow(1, 4, 5).add_(second - first);
  // Cluster diameters are <= 1.2 and the gap between them stays > 1.5.
  auto c_noise = torch::zeros({1}, torch::kFloat64), scale = torch::ones({1}, torch::kFloat64);

  auto local = make_network(1.5);
  EXPECT_LT(
      relative_error(local->forward(moved, c_noise, scale), local->forward(x, c_noise, scale)),
      1e-12);
  auto connected = make_network(0.0);
  EXPECT_GT(relative_error(connected->forward(moved, c_noise, scale),
                           connected->forward(x, c_noise, scale)),
            1e-4);
}

TEST(ModelEgnn, CutoffIsInPhysicalLengthUnits) {
  // length_scale converts input units to physical ones: scaling the input down by k and the
  // length scale up by k leaves the cutoff mask and radial basis unchanged, so pairs beyond the
  // cutoff still contribute nothing.
  auto gen = psm::make_generator(22);
  auto first = torch::tensor({4.0, 0.0, 0.0}, torch::kFloat64);
  auto x = two_clusters(first, gen);
  auto moved = x.clone();
  moved.narrow(1, 4, 5).add_(torch::tensor({0.0, 3.0, 0.0}, torch::kFloat64));
  auto local = make_network(1.5);
  const double k = 4.0;
  auto c_noise = torch::zeros({1}, torch::kFloat64);
  auto scale = torch::full({1}, k, torch::kFloat64);
  EXPECT_LT(relative_error(local->forward(moved / k, c_noise, scale),
                           local->forward(x / k, c_noise, scale)),
            1e-12);
}

TEST(ModelEgnn, OutputIsCentreOfMassFreeInTheNetworkDtype) {
  psm::Egnn net(psm::EgnnOptions(2, torch::zeros({6}, torch::kInt64)).layers(2).hidden(8));
  auto gen = psm::make_generator(23);
  auto x = torch::randn({5, 6, 2}, gen, torch::kFloat64);  // converted to float32 inside
  auto out = net->forward(x, torch::zeros({5}), torch::ones({5}));
  ASSERT_EQ(out.scalar_type(), torch::kFloat32);
  ASSERT_EQ(out.sizes(), x.sizes());
  EXPECT_LT(out.mean(1).abs().max().item<double>(), 1e-6 * out.abs().max().item<double>());
}

TEST(ModelEgnn, ChunkedBatchMatchesWholeBatchWithGradients) {
  // Chunks run in parallel threads with their own autograd graphs; outputs, input gradients and
  // parameter gradients must equal those of the whole batch, for any thread count.
  const int threads = torch::get_num_threads();
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    const double tolerance = dtype == torch::kFloat64 ? 1e-12 : 1e-5;
    auto options =
        psm::EgnnOptions(3, torch::zeros({6}, torch::kInt64)).layers(2).hidden(16).dtype(dtype);
    psm::Egnn whole(options.chunk_size(0)), chunked(options.chunk_size(2));
    auto gen = psm::make_generator(24);
    auto x = torch::randn({5, 6, 3}, gen, torch::kFloat64).to(dtype);
    auto c_noise = torch::randn({5}, gen, torch::kFloat64).to(dtype);
    auto scale = torch::ones({5}, dtype);
    auto upstream = torch::randn({5, 6, 3}, gen, torch::kFloat64).to(dtype);
    auto x_whole = x.clone().requires_grad_(true);
    auto out_whole = whole->forward(x_whole, c_noise, scale);
    (out_whole * upstream).sum().backward();
    for (int t : {1, 2}) {
      SCOPED_TRACE(t);
      torch::set_num_threads(t);
      chunked->zero_grad();
      auto x_chunked = x.clone().requires_grad_(true);
      auto out_chunked = chunked->forward(x_chunked, c_noise, scale);
      (out_chunked * upstream).sum().backward();
      EXPECT_LT(relative_error(out_chunked, out_whole), tolerance);
      EXPECT_LT(relative_error(x_chunked.grad(), x_whole.grad()), tolerance);
      auto reference = whole->named_parameters();
      for (const auto& p : chunked->named_parameters()) {
        EXPECT_LT(relative_error(p.value().grad(), reference[p.key()].grad()), tolerance)
            << p.key();
      }
      torch::NoGradGuard no_grad;
      EXPECT_LT(relative_error(chunked->forward(x, c_noise, scale), out_whole), tolerance);
    }
  }
  torch::set_num_threads(threads);
}

TEST(ModelEgnn, DescribesItsOptions) {
  psm::Egnn net(psm::EgnnOptions(3, torch::tensor({1, 6, 1}, torch::kInt64)).layers(2).cutoff(4));
  std::ostringstream text;
  net->pretty_print(text);
  EXPECT_NE(text.str().find("atoms=3, species=2, layers=2, hidden=64"), std::string::npos)
      << text.str();
  EXPECT_NE(text.str().find("cutoff=4"), std::string::npos) << text.str();
}

TEST(ModelEgnn, CountsLinearFlops) {
  // Default LJ13 network, P = N (N - 1) pairs of distinct atoms: per layer 2 N H^2
  // (edge_source/target) + P H (d^2 weight) + 2 P H^2 (edge_out, coord_hidden) + P H
  // (coord_out), plus on all but the last layer P H (attention) + 3 N H^2 (node MLP); noise
  // embedding F H + H^2. FLOPs = 2 MACs.
  psm::Egnn net(psm::EgnnOptions(3, torch::zeros({13}, torch::kInt64)));
  const int64_t n = 13, p = n * (n - 1), h = 64, f = 32;
  const int64_t layer = 2 * n * h * h + p * h + 2 * p * h * h + p * h;
  const int64_t macs = f * h + h * h + 4 * layer + 3 * (p * h + 3 * n * h * h);
  EXPECT_EQ(net->linear_flops(n), 2 * macs);
}

}  // namespace
