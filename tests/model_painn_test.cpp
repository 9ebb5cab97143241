// The PaiNN network (model/painn.h): symmetries, sparse against dense edges, the bond graph,
// the conservative variant, chunked execution and its option records.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/data/bond_graph.h"
#include "psm/io/dataset.h"
#include "psm/model/network.h"
#include "psm/model/painn.h"
#include "psm/model/score_model.h"
#include "psm/train/options.h"
#include "test_util.h"

namespace {

using psm::Painn;
using psm::PainnOptions;

double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

torch::Tensor random_orthogonal(int64_t dim, double det, torch::Generator& gen) {
  auto q = std::get<0>(torch::linalg_qr(torch::randn({dim, dim}, gen, torch::kFloat64)));
  if ((torch::det(q).item<double>() > 0) != (det > 0)) q.select(1, 0).neg_();
  return q;
}

// The untrained network's readout is tiny by design; scale it up so that the tests see the whole
// nonlinear network rather than rounding.
Painn enlarged(PainnOptions options) {
  Painn net(std::move(options));
  torch::NoGradGuard no_grad;
  net->readout_out->weight.mul_(1000);
  return net;
}

PainnOptions lj_options(int64_t atoms) {
  return PainnOptions(3, torch::zeros({atoms}, torch::kInt64))
      .layers(3)
      .hidden(16)
      .num_rbf(8)
      .rbf_cutoff(3.0)
      .dtype(torch::kFloat64)
      .chunk_size(0)
      .seed(3);
}

/// The ethanol of tests/data/ethanol.xyz: C0 C1 O2 H3 (on O), H4-H6 on C0, H7 H8 on C1.
psm::Dataset ethanol() {
  return psm::load_dataset(psm::test::data_path("ethanol.xyz"), {.temperature_kelvin = 300.0});
}

torch::Tensor ethanol_graph() {
  const psm::Dataset molecule = ethanol();
  return psm::graph_distances(psm::majority_bonds(molecule.positions, molecule.species), 9,
                              psm::kGraphFarthest);
}

PainnOptions ethanol_options() {
  return PainnOptions(3, torch::tensor({6, 6, 8, 1, 1, 1, 1, 1, 1}, torch::kInt64))
      .layers(3)
      .hidden(16)
      .num_rbf(8)
      .rbf_cutoff(4.0)
      .graph(ethanol_graph())
      .dtype(torch::kFloat64)
      .chunk_size(0)
      .seed(5);
}

struct Inputs {
  torch::Tensor x, c_noise, length_scale;
};

Inputs random_inputs(int64_t batch, int64_t atoms, uint64_t seed) {
  auto gen = psm::make_generator(seed);
  return {.x = torch::randn({batch, atoms, 3}, gen, torch::kFloat64),
          .c_noise = torch::linspace(-1.0, 0.5, batch, torch::kFloat64),
          .length_scale = torch::linspace(0.8, 1.5, batch, torch::kFloat64)};
}

void expect_e3_equivariant(Painn& net, const Inputs& in, const torch::Tensor& permutation) {
  auto gen = psm::make_generator(11);
  const auto out = net->forward(in.x, in.c_noise, in.length_scale);
  ASSERT_GT(out.norm().item<double>(), 1e-3);
  for (const double det : {1.0, -1.0}) {
    const auto q = random_orthogonal(3, det, gen);
    const auto shift = torch::randn({1, 1, 3}, gen, torch::kFloat64);
    const auto moved = net->forward(torch::matmul(in.x, q) + shift, in.c_noise, in.length_scale);
    EXPECT_LT(relative_error(moved, torch::matmul(out, q)), 1e-10) << "det " << det;
  }
  const auto permuted =
      net->forward(in.x.index_select(1, permutation), in.c_noise, in.length_scale);
  EXPECT_LT(relative_error(permuted, out.index_select(1, permutation)), 1e-10);
  // Centre-of-mass-free output.
  EXPECT_LT(out.sum(1).abs().max().item<double>(), 1e-10);
}

TEST(ModelPainn, IsEquivariantUnderRotationReflectionTranslationAndPermutation) {
  for (const bool conservative : {false, true}) {
    SCOPED_TRACE(conservative ? "conservative" : "vector readout");
    auto net = enlarged(lj_options(7).conservative(conservative));
    expect_e3_equivariant(net, random_inputs(4, 7, 1),
                          torch::tensor({3, 0, 6, 1, 5, 2, 4}, torch::kInt64));
  }
}

TEST(ModelPainn, SparseEdgesGiveTheDenseResult) {
  const auto in = random_inputs(5, 12, 2);
  auto dense = enlarged(lj_options(12).cutoff(1.6).neighbours(psm::NeighbourMode::dense));
  auto sparse = enlarged(lj_options(12).cutoff(1.6).neighbours(psm::NeighbourMode::sparse));
  const auto edges = sparse->edges(in.x, in.length_scale);
  ASSERT_LT(edges.source.size(0), 5 * 12 * 11) << "the cutoff must thin the edges for this test";
  ASSERT_GT(edges.source.size(0), 0);
  EXPECT_LT(relative_error(sparse->forward(in.x, in.c_noise, in.length_scale),
                           dense->forward(in.x, in.c_noise, in.length_scale)),
            1e-12);
}

TEST(ModelPainn, SparseEdgesAreThePairsWithinTheCutoff) {
  const auto in = random_inputs(3, 10, 4);
  auto net = Painn(lj_options(10).cutoff(1.7).neighbours(psm::NeighbourMode::sparse));
  const auto e = net->edges(in.x, in.length_scale);
  const auto flat = in.x.reshape({30, 3});
  const auto scale = in.length_scale.repeat_interleave(10);
  const auto distance =
      (flat.index_select(0, e.target) - flat.index_select(0, e.source)).norm(2, -1) *
      scale.index_select(0, e.target);
  EXPECT_TRUE((distance < 1.7).all().item<bool>());
  // Brute force count of the pairs within the cutoff.
  const auto d = torch::cdist(in.x, in.x) * in.length_scale.view({3, 1, 1});
  const int64_t expected = ((d < 1.7).sum().item<int64_t>() - 30);
  EXPECT_EQ(e.source.size(0), expected);
  EXPECT_TRUE(torch::equal(torch::div(e.source, 10, "floor"), torch::div(e.target, 10, "floor")))
      << "edges never join two samples";
}

TEST(ModelPainn, AutomaticNeighboursAreDenseForSmallSystems) {
  EXPECT_FALSE(Painn(lj_options(13).cutoff(2.0))->uses_sparse_edges());
  EXPECT_TRUE(Painn(lj_options(psm::kDenseAtomLimit + 1).cutoff(2.0))->uses_sparse_edges());
  EXPECT_FALSE(Painn(lj_options(psm::kDenseAtomLimit + 1))->uses_sparse_edges())
      << "no cutoff: every pair";
}

TEST(ModelPainn, GraphDistancesCountBondsOnTheShortestPath) {
  // A chain 0-1-2-3-4 and an atom 5 bonded to 1.
  const auto bonds = torch::tensor({0, 1, 1, 2, 2, 3, 3, 4, 1, 5}, torch::kInt64).view({5, 2});
  const auto g = psm::graph_distances(bonds, 7, 4);
  EXPECT_EQ(g[0][0].item<int64_t>(), 0);
  EXPECT_EQ(g[0][1].item<int64_t>(), 1);
  EXPECT_EQ(g[0][2].item<int64_t>(), 2);
  EXPECT_EQ(g[5][2].item<int64_t>(), 2);
  EXPECT_EQ(g[0][3].item<int64_t>(), 3);
  EXPECT_EQ(g[5][4].item<int64_t>(), 4) << "capped";
  EXPECT_EQ(g[0][4].item<int64_t>(), 4);
  EXPECT_EQ(g[6][0].item<int64_t>(), 4) << "another fragment";
  EXPECT_TRUE(torch::equal(g, g.t()));
}

TEST(ModelPainn, BondGraphKeepsEquivarianceUnderTheMoleculesAutomorphisms) {
  const psm::Dataset molecule = ethanol();
  auto net = enlarged(ethanol_options());
  auto gen = psm::make_generator(8);
  const auto x = (molecule.positions + 0.05 * torch::randn({3, 9, 3}, gen, torch::kFloat64)) / 1.3;
  const Inputs in{.x = x,
                  .c_noise = torch::full({3}, -0.5, torch::kFloat64),
                  .length_scale = torch::full({3}, 1.3, torch::kFloat64)};
  // Methyl hydrogens H4, H5, H6 are interchangeable (an automorphism of the graph).
  expect_e3_equivariant(net, in, torch::tensor({0, 1, 2, 3, 6, 4, 5, 7, 8}, torch::kInt64));
  // Swapping the hydroxyl H3 with a methyl H4 keeps the species but not the graph: the network
  // knows the difference, so the output is not merely permuted.
  const auto swap = torch::tensor({0, 1, 2, 4, 3, 5, 6, 7, 8}, torch::kInt64);
  const auto out = net->forward(in.x, in.c_noise, in.length_scale);
  const auto swapped = net->forward(in.x.index_select(1, swap), in.c_noise, in.length_scale);
  EXPECT_GT(relative_error(swapped, out.index_select(1, swap)), 1e-3);
}

TEST(ModelPainn, BondedPairsAreEdgesBeyondTheCutoff) {
  const psm::Dataset molecule = ethanol();
  auto net = Painn(ethanol_options().cutoff(0.5).neighbours(psm::NeighbourMode::sparse));
  const auto e =
      net->edges(molecule.positions.to(torch::kFloat64), torch::ones({1}, torch::kFloat64));
  const auto within_three_bonds = (ethanol_graph() < psm::kGraphFarthest).sum().item<int64_t>() - 9;
  EXPECT_EQ(e.source.size(0), within_three_bonds);
}

TEST(ModelPainn, ConservativeOutputIsAGradient) {
  // The Jacobian of -grad E is minus the Hessian of E: symmetric. The vector readout's is not.
  const auto in = random_inputs(1, 4, 6);
  for (const bool conservative : {true, false}) {
    auto net = enlarged(lj_options(4).conservative(conservative));
    const auto x = in.x.flatten().requires_grad_(true);
    const auto out = net->forward(x.view({1, 4, 3}), in.c_noise, in.length_scale).flatten();
    std::vector<torch::Tensor> rows;
    for (int64_t k = 0; k < out.size(0); ++k) {
      rows.push_back(torch::autograd::grad({out[k]}, {x}, {}, /*retain_graph=*/true)[0]);
    }
    const auto jacobian = torch::stack(rows);
    const double asymmetry = relative_error(jacobian, jacobian.t());
    if (conservative) {
      EXPECT_LT(asymmetry, 1e-8);
    } else {
      EXPECT_GT(asymmetry, 1e-3);
    }
  }
}

TEST(ModelPainn, ChunkedExecutionMatchesTheWholeBatchWithGradients) {
  for (const bool conservative : {false, true}) {
    SCOPED_TRACE(conservative ? "conservative" : "vector readout");
    const auto in = random_inputs(10, 6, 9);
    auto whole = enlarged(lj_options(6).conservative(conservative));
    auto chunked = enlarged(lj_options(6).conservative(conservative).chunk_size(3));
    const auto weights = torch::randn({10, 6, 3}, torch::kFloat64);
    std::vector<std::vector<torch::Tensor>> grads;
    std::vector<torch::Tensor> outputs;
    for (Painn* net : {&whole, &chunked}) {
      auto x = in.x.clone().requires_grad_(true);
      auto out = (*net)->forward(x, in.c_noise, in.length_scale);
      (out * weights).sum().backward();
      std::vector<torch::Tensor> g{x.grad()};
      for (const auto& p : (*net)->parameters()) {
        g.push_back(p.grad().defined() ? p.grad() : torch::zeros_like(p));
      }
      grads.push_back(g);
      outputs.push_back(out.detach());
    }
    EXPECT_LT(relative_error(outputs[1], outputs[0]), 1e-12);
    for (size_t k = 0; k < grads[0].size(); ++k) {
      if (grads[0][k].norm().item<double>() == 0) continue;
      EXPECT_LT(relative_error(grads[1][k], grads[0][k]), 1e-10) << "gradient " << k;
    }
  }
}

TEST(ModelPainn, OptionsRoundTripThroughJsonWithTheGraph) {
  const auto options = ethanol_options().cutoff(3.0).conservative(true).num_input_rbf(4);
  const psm::NetworkOptions back =
      psm::network_options_from_json(psm::to_json(psm::NetworkOptions(options)));
  ASSERT_EQ(psm::network_kind(back), "painn");
  const auto& painn = std::get<PainnOptions>(back);
  EXPECT_TRUE(torch::equal(painn.graph(), options.graph()));
  EXPECT_TRUE(torch::equal(painn.species(), options.species()));
  EXPECT_EQ(painn.cutoff(), 3.0);
  EXPECT_TRUE(painn.conservative());
  EXPECT_EQ(painn.num_input_rbf(), 4);
  EXPECT_EQ(psm::to_json(back), psm::to_json(psm::NetworkOptions(options)));
}

TEST(ModelPainn, AnEgnnRecordWithoutAKindIsAnEgnn) {
  auto record = psm::to_json(psm::EgnnOptions(3, torch::zeros({4}, torch::kInt64)));
  record.erase("kind");
  EXPECT_EQ(psm::network_kind(psm::network_options_from_json(record)), "egnn");
}

TEST(ModelPainn, ScoreModelClonesAndReloadsAPainn) {
  psm::ScoreModel model(psm::ScoreModelOptions(ethanol_options(), 0.9));
  auto copy = std::dynamic_pointer_cast<psm::ScoreModelImpl>(model->clone());
  const auto in = random_inputs(2, 9, 12);
  const auto sigma = torch::tensor({0.1, 1.0}, torch::kFloat64);
  EXPECT_TRUE(torch::equal(copy->forward(in.x, sigma), model->forward(in.x, sigma)));
  EXPECT_NE(dynamic_cast<psm::PainnImpl*>(copy->network.get()), nullptr);
  EXPECT_NE(copy->network.get(), model->network.get());
}

TEST(ModelPainn, BadOptionsAreOneLineErrors) {
  const auto message = [](auto make) {
    try {
      make();
    } catch (const psm::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message([] {
              Painn(ethanol_options().graph(torch::zeros({8, 8}, torch::kInt64)));
            }),
            "model: the bond graph must be an int64 [9, 9] table of graph distances for the 9 "
            "atoms, got 8x8");
  EXPECT_EQ(message([] { Painn(lj_options(5).neighbours(psm::NeighbourMode::sparse)); }),
            "model: sparse neighbours need a cutoff > 0");
  EXPECT_EQ(message([] { psm::default_network_options("mace"); }),
            "unknown model kind 'mace' (known: egnn, painn)");
  const psm::Dataset molecule = ethanol();
  EXPECT_EQ(message([&] {
              psm::with_atoms(PainnOptions(0, torch::Tensor()).cutoff(0.5), molecule.positions,
                              molecule.species);
            }),
            "model: cutoff 0.5 is shorter than the frames' shortest bond (0.971): no atom would "
            "see a neighbour");
}

TEST(ModelPainn, WithAtomsBuildsTheBondGraphForMoleculesOnly) {
  const psm::Dataset molecule = ethanol();
  const auto with_graph =
      psm::with_atoms(PainnOptions(0, torch::Tensor()), molecule.positions, molecule.species);
  EXPECT_TRUE(torch::equal(std::get<PainnOptions>(with_graph).graph(), ethanol_graph()));
  const auto without = psm::with_atoms(PainnOptions(0, torch::Tensor()).bond_graph(false),
                                       molecule.positions, molecule.species);
  EXPECT_FALSE(std::get<PainnOptions>(without).graph().defined());
  const auto particles = psm::with_atoms(PainnOptions(0, torch::Tensor()), molecule.positions,
                                         std::vector<int64_t>(9, 0));
  EXPECT_FALSE(std::get<PainnOptions>(particles).graph().defined()) << "model particles";
}

}  // namespace
