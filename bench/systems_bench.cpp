// Throughput of the reference potentials: configurations evaluated per second.
//   ./build/psm_bench --benchmark_filter='LennardJones|Xtb'

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "psm/core/random.h"
#include "psm/systems/lennard_jones.h"
#include "psm/systems/xtb.h"

namespace {

/// LJ13 energy and forces for a batch of range(0) configurations, float64, on range(1) torch
/// threads.
void BM_LennardJones13(benchmark::State& state) {
  torch::set_num_threads(static_cast<int>(state.range(1)));
  const int64_t batch = state.range(0);
  const psm::LennardJones lj({.n = 13});
  auto generator = psm::make_generator(0);
  const auto x = torch::randn({batch, 13, 3}, generator, torch::kFloat64);
  for (auto _ : state) {
    benchmark::DoNotOptimize(lj.evaluate(x).forces.data_ptr<double>());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_LennardJones13)
    ->ArgNames({"batch", "threads"})
    ->Args({1024, 1})
    ->Args({1024, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

#ifdef PSM_WITH_XTB
/// GFN2-xTB energy and gradient of one ethanol geometry on one thread.
void BM_XtbEthanol(benchmark::State& state) {
  const psm::Xtb xtb({.species = {6, 6, 8, 1, 1, 1, 1, 1, 1}, .threads = 1});
  const auto x = torch::tensor({-0.0011, -0.0000, 0.0029,  1.5155, 0.0000, -0.0018, 2.0110,
                                1.3245,  0.0000,  -0.3918, 1.0197, 0.0072, -0.3910, -0.5140,
                                -0.8831, -0.3790, -0.5127, 0.8875, 1.8839, -0.5202, -0.8896,
                                1.8905,  -0.5130, 0.8907,  2.9730, 1.2993, 0.0070},
                               torch::kFloat64)
                     .view({1, 9, 3});
  for (auto _ : state) {
    benchmark::DoNotOptimize(xtb.evaluate(x).forces.data_ptr<double>());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_XtbEthanol)->UseRealTime()->Unit(benchmark::kMillisecond);
#endif

}  // namespace

