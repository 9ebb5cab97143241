#include "psm/experiment/pipeline.h"

#include <fmt/format.h>

#include <chrono>

#include "experiment/internal/experiment_run.h"

namespace psm {

namespace {

struct Stage {
  void (*run)(stages::ExperimentRun&);
  bool makes_data;  ///< part of RunOptions::data_only
};

constexpr Stage kStages[] = {
    {stages::reference_stage, true}, {stages::sets_stage, true},      {stages::train_stage, false},
    {stages::sample_stage, false},   {stages::evaluate_stage, false}, {stages::report_stage, false},
};

}  // namespace

ExperimentResult run_experiment(const ExperimentConfig& experiment, const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  stages::ExperimentRun run = stages::prepare_run(experiment, options);
  for (const Stage& stage : kStages) {
    if (options.data_only && !stage.makes_data) {
      stages::say(
          fmt::format("stopped after the training sets (data only): {}", options.out.string()));
      return {};
    }
    stage.run(run);
  }
  stages::say(fmt::format("done in {:.0f} s", stages::seconds_since(start)));
  return std::move(run.result);
}

}  // namespace psm
