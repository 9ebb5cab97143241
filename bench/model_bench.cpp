// Throughput of the score network on the issue-3 reference configuration: LJ13 (N = 13, D = 3),
// 4 layers, width 64, batch 256, 2 threads, float32. Reports samples/s of network evaluation
// and of a training step (forward + MSE backward + Adam), the linear-layer GFLOP/s this
// reaches and its fraction of the measured fp32 matmul rate (2048 x 2048, same thread count).
// The argument of each LJ13 benchmark is its thread count. The network comparison (EGNN against
// PaiNN, dense and sparse, for LJ13, LJ55, aspirin and the tetrapeptide) runs a training step and
// a forward pass of batch 256 on 2 threads for each. See BENCHMARKS.md for the command and the
// glibc malloc settings used there.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>

#include "psm/core/allocator.h"
#include "psm/core/random.h"
#include "psm/data/bond_graph.h"
#include "psm/model/network.h"
#include "psm/model/score_model.h"

namespace {

constexpr int64_t kAtoms = 13;
constexpr int64_t kBatch = 256;
constexpr int kThreads = 2;  // the reference configuration; the network benchmarks also run on 1
constexpr int64_t kMatmulSize = 2048;

psm::ScoreModel make_lj13_model() {
  auto network = psm::EgnnOptions(3, torch::zeros({kAtoms}, torch::kInt64)).layers(4).hidden(64);
  return psm::ScoreModel(psm::ScoreModelOptions(network, /*sigma_data=*/1.0));
}

struct Inputs {
  torch::Tensor x;       // [B, N, 3] float32
  torch::Tensor sigma;   // [B] float32, log-uniform on [0.01, 3]
  torch::Tensor target;  // [B, N, 3] float32
};

Inputs make_inputs() {
  auto gen = psm::make_generator(1);
  auto u = torch::rand({kBatch}, gen, torch::kFloat32);
  return {torch::randn({kBatch, kAtoms, 3}, gen, torch::kFloat32),
          torch::exp(std::log(0.01) + u * (std::log(3.0) - std::log(0.01))),
          torch::randn({kBatch, kAtoms, 3}, gen, torch::kFloat32)};
}

double seconds_of(const auto& work) {
  const auto start = std::chrono::steady_clock::now();
  work();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Best of several 2048 x 2048 fp32 torch::mm on `threads` threads, GFLOP/s; measured once per
// thread count.
double matmul_gflops(int threads) {
  static std::map<int, double> measured;
  if (!measured.contains(threads)) {
    torch::set_num_threads(threads);
    auto gen = psm::make_generator(2);
    auto a = torch::randn({kMatmulSize, kMatmulSize}, gen, torch::kFloat32);
    auto b = torch::randn({kMatmulSize, kMatmulSize}, gen, torch::kFloat32);
    auto c = torch::mm(a, b);
    double fastest = 1e300;
    for (int i = 0; i < 10; ++i) {
      fastest = std::min(fastest, seconds_of([&] { torch::mm_out(c, a, b); }));
    }
    measured[threads] = 2.0 * kMatmulSize * kMatmulSize * kMatmulSize / fastest / 1e9;
  }
  return measured[threads];
}

// Linear-layer FLOPs per sample: forward once; training counts the backward pass as twice the
// forward (gradients with respect to inputs and to weights).
void report(benchmark::State& state, double flops_per_sample) {
  const double samples = static_cast<double>(kBatch * state.iterations());
  const double peak = matmul_gflops(static_cast<int>(state.range(0)));
  state.counters["samples/s"] = benchmark::Counter(samples, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(samples * flops_per_sample / 1e9, benchmark::Counter::kIsRate);
  state.counters["matmul_GFLOP/s"] = peak;
  state.counters["matmul_fraction"] =
      benchmark::Counter(samples * flops_per_sample / 1e9 / peak, benchmark::Counter::kIsRate);
}

void BM_Lj13Forward(benchmark::State& state) {
  torch::set_num_threads(static_cast<int>(state.range(0)));
  auto model = make_lj13_model();
  auto in = make_inputs();
  c10::InferenceMode inference;
  for (auto _ : state) benchmark::DoNotOptimize(model->forward(in.x, in.sigma).data_ptr());
  report(state, static_cast<double>(model->network->linear_flops(kAtoms)));
}
BENCHMARK(BM_Lj13Forward)->Arg(kThreads)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Lj13TrainStep(benchmark::State& state) {
  torch::set_num_threads(static_cast<int>(state.range(0)));
  auto model = make_lj13_model();
  auto in = make_inputs();
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-4));
  for (auto _ : state) {
    optimizer.zero_grad();
    auto loss = torch::mse_loss(model->forward(in.x, in.sigma), in.target);
    loss.backward();
    optimizer.step();
  }
  report(state, 3.0 * static_cast<double>(model->network->linear_flops(kAtoms)));
}
BENCHMARK(BM_Lj13TrainStep)->Arg(kThreads)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

// The comparison: one network of each kind, 4 layers of width 64, on N atoms whose noised
// positions are Gaussian with a spread of sqrt(sigma^2 + sigma_data^2) per coordinate (LJ:
// sigma_data 1 reduced unit, about the extent of LJ55 at kT 1, whose atoms have 9.3 neighbours
// within 1.5 and 21 within 2.0; molecules: 2 Å). Molecules (species > 0) get a chain as bond
// graph. PaiNN's cutoff: 1.5 for LJ, 5 Å for molecules; the "neighbours" counter is the mean
// number of edges per atom.
constexpr double kLjCutoff = 1.5;
constexpr double kMoleculeCutoff = 5.0;
constexpr double kMoleculeSigmaData = 2.0;

psm::ScoreModel make_model(const std::string& kind, int64_t atoms, bool molecule) {
  const auto species =
      molecule ? torch::full({atoms}, 6, torch::kInt64) : torch::zeros({atoms}, torch::kInt64);
  psm::NetworkOptions network =
      psm::EgnnOptions(3, species).layers(4).hidden(64).cutoff(molecule ? kMoleculeCutoff : 0.0);
  if (kind != "egnn") {
    auto painn = psm::PainnOptions(3, species)
                     .layers(4)
                     .hidden(64)
                     .cutoff(molecule ? kMoleculeCutoff : kLjCutoff)
                     .neighbours(kind == "painn_dense" ? psm::NeighbourMode::dense
                                                       : psm::NeighbourMode::sparse);
    if (molecule) {
      auto chain = torch::stack({torch::arange(atoms - 1), torch::arange(1, atoms)}, 1);
      painn.graph(psm::graph_distances(chain, atoms, psm::kGraphFarthest));
    }
    network = painn;
  }
  return psm::ScoreModel(
      psm::ScoreModelOptions(network, molecule ? kMoleculeSigmaData : /*sigma_data=*/1.0));
}

Inputs make_inputs(int64_t atoms, double sigma_data) {
  auto gen = psm::make_generator(1);
  auto u = torch::rand({kBatch}, gen, torch::kFloat32);
  auto sigma = torch::exp(std::log(0.01) + u * (std::log(3.0) - std::log(0.01)));
  auto spread = torch::sqrt(sigma.square() + sigma_data * sigma_data).view({-1, 1, 1});
  return {spread * torch::randn({kBatch, atoms, 3}, gen, torch::kFloat32), sigma,
          torch::randn({kBatch, atoms, 3}, gen, torch::kFloat32)};
}

// Edges per atom of a PaiNN on these inputs (every pair for the EGNN).
double neighbours_per_atom(psm::ScoreModel& model, const Inputs& in) {
  const auto* painn = dynamic_cast<const psm::PainnImpl*>(model->network.get());
  const int64_t atoms = in.x.size(1);
  if (painn == nullptr || !painn->uses_sparse_edges()) return static_cast<double>(atoms - 1);
  const double sigma_data = model->options.sigma_data();
  auto length_scale = torch::sqrt(in.sigma.square() + sigma_data * sigma_data);
  auto edges = painn->edges(in.x / length_scale.view({-1, 1, 1}), length_scale);
  return static_cast<double>(edges.source.size(0)) / static_cast<double>(kBatch * atoms);
}

// Times training steps of `model` (forward, MSE backward, Adam) on inputs of `atoms` atoms.
void time_train_steps(benchmark::State& state, psm::ScoreModel& model, int64_t atoms) {
  auto in = make_inputs(atoms, model->options.sigma_data());
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-4));
  const auto train_step = [&] {
    optimizer.zero_grad();
    torch::mse_loss(model->forward(in.x, in.sigma), in.target).backward();
    optimizer.step();
  };
  train_step();  // warm-up: the first step allocates what the others reuse
  for (auto _ : state) train_step();
  state.counters["samples/s"] = benchmark::Counter(static_cast<double>(kBatch * state.iterations()),
                                                   benchmark::Counter::kIsRate);
  state.counters["neighbours"] = neighbours_per_atom(model, in);
}

void BM_NetworkTrainStep(benchmark::State& state, const std::string& kind, int64_t atoms,
                         bool molecule) {
  torch::set_num_threads(kThreads);
  auto model = make_model(kind, atoms, molecule);
  time_train_steps(state, model, atoms);
}

void BM_NetworkForward(benchmark::State& state, const std::string& kind, int64_t atoms,
                       bool molecule) {
  torch::set_num_threads(kThreads);
  auto model = make_model(kind, atoms, molecule);
  auto in = make_inputs(atoms, model->options.sigma_data());
  c10::InferenceMode inference;
  model->forward(in.x, in.sigma);  // warm-up
  for (auto _ : state) benchmark::DoNotOptimize(model->forward(in.x, in.sigma).data_ptr());
  state.counters["samples/s"] = benchmark::Counter(static_cast<double>(kBatch * state.iterations()),
                                                   benchmark::Counter::kIsRate);
  state.counters["neighbours"] = neighbours_per_atom(model, in);
}

#define PSM_NETWORK_BENCHMARKS(system, atoms, molecule)                                          \
  BENCHMARK_CAPTURE(BM_NetworkTrainStep, system##_egnn, "egnn", atoms, molecule)                 \
      ->UseRealTime()                                                                            \
      ->Unit(benchmark::kMillisecond);                                                           \
  BENCHMARK_CAPTURE(BM_NetworkTrainStep, system##_painn_dense, "painn_dense", atoms, molecule)   \
      ->UseRealTime()                                                                            \
      ->Unit(benchmark::kMillisecond);                                                           \
  BENCHMARK_CAPTURE(BM_NetworkTrainStep, system##_painn_sparse, "painn_sparse", atoms, molecule) \
      ->UseRealTime()                                                                            \
      ->Unit(benchmark::kMillisecond);                                                           \
  BENCHMARK_CAPTURE(BM_NetworkForward, system##_egnn, "egnn", atoms, molecule)                   \
      ->UseRealTime()                                                                            \
      ->Unit(benchmark::kMillisecond);                                                           \
  BENCHMARK_CAPTURE(BM_NetworkForward, system##_painn_dense, "painn_dense", atoms, molecule)     \
      ->UseRealTime()                                                                            \
      ->Unit(benchmark::kMillisecond);                                                           \
  BENCHMARK_CAPTURE(BM_NetworkForward, system##_painn_sparse, "painn_sparse", atoms, molecule)   \
      ->UseRealTime()                                                                            \
      ->Unit(benchmark::kMillisecond)

PSM_NETWORK_BENCHMARKS(lj13, 13, false);
PSM_NETWORK_BENCHMARKS(lj55, 55, false);
PSM_NETWORK_BENCHMARKS(aspirin, 21, true);
PSM_NETWORK_BENCHMARKS(ala3, 42, true);

// Where the neighbour list overtakes dense pairs (`neighbours = "auto"` switches at
// kDenseAtomLimit): PaiNN training steps on LJ-like clusters of N atoms, dense against sparse,
// with every pair an edge (a cutoff far beyond the cluster: the same work on both paths) and
// with the LJ cutoff. Arguments: atoms, sparse (0 or 1), all pairs (0 or 1).
void BM_PainnCrossover(benchmark::State& state) {
  torch::set_num_threads(kThreads);
  const int64_t atoms = state.range(0);
  const auto network =
      psm::PainnOptions(3, torch::zeros({atoms}, torch::kInt64))
          .layers(4)
          .hidden(64)
          .cutoff(state.range(2) == 1 ? 1e3 : kLjCutoff)
          .neighbours(state.range(1) == 1 ? psm::NeighbourMode::sparse : psm::NeighbourMode::dense);
  auto model = psm::ScoreModel(psm::ScoreModelOptions(network, /*sigma_data=*/1.0));
  time_train_steps(state, model, atoms);
}
BENCHMARK(BM_PainnCrossover)
    ->ArgsProduct({{13, 21, 32, 42, 55}, {0, 1}, {0, 1}})
    ->ArgNames({"atoms", "sparse", "all_pairs"})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_Matmul2048(benchmark::State& state) {
  torch::set_num_threads(kThreads);
  auto gen = psm::make_generator(3);
  auto a = torch::randn({kMatmulSize, kMatmulSize}, gen, torch::kFloat32);
  auto b = torch::randn({kMatmulSize, kMatmulSize}, gen, torch::kFloat32);
  auto c = torch::mm(a, b);
  for (auto _ : state) torch::mm_out(c, a, b);
  const double flops = 2.0 * kMatmulSize * kMatmulSize * kMatmulSize;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["best_GFLOP/s"] = matmul_gflops(kThreads);
}
BENCHMARK(BM_Matmul2048)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

// BENCHMARK_MAIN, plus the allocator setting that the psm program uses.
int main(int argc, char** argv) {
  psm::keep_freed_memory_for_reuse();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
