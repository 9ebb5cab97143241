#include "psm/experiment/pipeline.h"

#include <fmt/format.h>

#include <chrono>

#include "experiment/internal/experiment_run.h"
#include "psm/core/value_registry.h"

namespace psm {

namespace {

const ValueRegistry<ModelSpread> kSpreadNames("spread", {{"models", ModelSpread::models},
                                                         {"data", ModelSpread::data}});

struct Stage {
  void (*run)(stages::ExperimentRun&);
  bool makes_data;  ///< part of RunOptions::data_only
  bool shared;      ///< every rank takes part; the others run on rank 0 alone
};

constexpr Stage kStages[] = {
    {stages::reference_stage, true, false}, {stages::sets_stage, true, false},
    {stages::train_stage, false, true},     {stages::sample_stage, false, true},
    {stages::evaluate_stage, false, false}, {stages::report_stage, false, false},
};

}  // namespace

std::string to_string(ModelSpread value) { return kSpreadNames.name_of(value); }
ModelSpread model_spread_from_string(const std::string& name) { return kSpreadNames.get(name); }

ExperimentResult run_experiment(const ExperimentConfig& experiment, const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const Communicator& ranks = options.ranks;
  stages::ExperimentRun run = stages::prepare_run(experiment, options);
  if (ranks.size() > 1 && ranks.is_root()) {
    stages::say(fmt::format("ranks: {}, sharing {}", ranks.size(),
                            options.spread == ModelSpread::models
                                ? "whole models (--spread models)"
                                : "each model's training batches (--spread data)"));
  }
  const size_t count = std::size(kStages);
  for (size_t i = 0; i < count; ++i) {
    const Stage& stage = kStages[i];
    if (options.data_only && !stage.makes_data) {
      if (ranks.is_root()) {
        stages::say(
            fmt::format("stopped after the training sets (data only): {}", options.out.string()));
      }
      return {};
    }
    if (stage.shared && !ranks.is_root() && !kStages[i - 1].shared) {
      stages::follow_data_stages(run);  // what rank 0 made, from its files
    }
    if (stage.shared || ranks.is_root()) stage.run(run);
    // A shared stage reads the files of the stage before, which another rank may have written.
    const bool next_shared = i + 1 < count && kStages[i + 1].shared;
    if (stage.shared || next_shared) ranks.wait_for_all();
    if (!ranks.is_root() && stage.shared && !next_shared) return {};
  }
  stages::say(fmt::format("done in {:.0f} s", stages::seconds_since(start)));
  return std::move(run.result);
}

}  // namespace psm
