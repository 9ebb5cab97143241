// Throughput of the score network on the issue-3 reference configuration: LJ13 (N = 13, D = 3),
// 4 layers, width 64, batch 256, 2 threads, float32. Reports samples/s of network evaluation
// and of a training step (forward + MSE backward + Adam), the linear-layer GFLOP/s this
// reaches and its fraction of the measured fp32 matmul rate (2048 x 2048, same thread count).
// The argument of each network benchmark is its thread count. See BENCHMARKS.md for the
// command and the glibc malloc settings used there.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "psm/core/allocator.h"
#include "psm/core/random.h"
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
