// `psm train`: trains a score model from a TOML config (configs/*.toml) into a run directory
// holding checkpoint.pt, metrics.jsonl and config.toml.

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "psm/cli/commands.h"
#include "psm/core/atomic_file.h"
#include "psm/core/config.h"
#include "psm/core/device.h"
#include "psm/core/error.h"
#include "psm/core/run_lock.h"
#include "psm/train/callbacks.h"
#include "psm/train/training_run.h"

namespace psm::cli {

namespace {

int64_t parameter_count(torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& parameter : module.parameters()) count += parameter.numel();
  return count;
}

std::string describe_crossover(const LossOptions& loss) {
  switch (loss.crossover) {
    case Crossover::dsm:
      return "dsm (w = 0)";
    case Crossover::psm:
      return "psm (w = 1)";
    case Crossover::hybrid:
      return fmt::format("hybrid, w = 1 / (1 + (sigma / {:.6g})^{:g})", loss.sigma_c.value_or(0),
                         loss.crossover_exponent);
  }
  return "?";
}

void print_summary(const TrainingRun& training) {
  const Trainer& trainer = training.trainer();
  const RunConfig& run = training.run_config();
  const Dataset& data = training.data();
  std::ostringstream model;
  model << *trainer.model();
  const LossOptions& loss = trainer.loss_options();
  fmt::print("model       {}\n", model.str());
  fmt::print("parameters  {}\n", parameter_count(*trainer.model()));
  fmt::print(
      "data        {}: {} frames ({} train, {} validation), {} atoms x {}D, kT = {:.6g} {}\n",
      run.train_data.string(), data.num_frames(), trainer.num_train_frames(),
      trainer.num_validation_frames(), data.num_atoms(), data.dim(), data.kT,
      to_string(data.units));
  fmt::print("sigma_data  {:.6g}\n", trainer.sigma_data());
  fmt::print("sigma       [{:.6g}, {:.6g}], {}\n", loss.schedule.sigma_min, loss.schedule.sigma_max,
             to_string(loss.schedule.distribution));
  fmt::print(
      "crossover   {}{}\n", describe_crossover(loss),
      loss.crossover == Crossover::hybrid && !run.loss.sigma_c ? " (sigma_c from forces)" : "");
  if (const auto note = training.sigma_max_note()) fmt::print("note        {}\n", *note);
  std::fflush(stdout);
}

class TrainCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    app.add_option("--config", config_path_, "Training configuration (TOML)")->required();
    app.add_option("--set", overrides_, "Override a config value, key.path=value (repeatable)");
    app.add_option("--out", out_, "Run directory (default: runs/<config name>)");
    app.add_flag("--resume", resume_, "Continue the run in --out from its checkpoint");
    app.add_flag("--progress,!--no-progress", progress_, "Progress bar on stderr");
  }

  bool runs_on_ranks() const override { return true; }

  int run(const GlobalOptions& global) override {
    Config config = Config::from_toml_file(config_path_);
    for (const auto& assignment : overrides_) config.set(assignment);
    const RunConfig run = read_run_config(config);
    if (global.threads == 0 && run.threads > 0) torch::set_num_threads(run.threads);
    const torch::Device device = parse_device(global.device);

    const std::filesystem::path out =
        out_.empty() ? std::filesystem::path("runs") / config_path_.stem() : out_;
    const std::filesystem::path checkpoint = out / "checkpoint.pt";
    // Under mpirun / srun the ranks train data-parallel; rank 0 owns the run directory.
    const Communicator& world = global.world;
    std::optional<RunLock> lock;
    if (world.is_root()) lock = open_run_directory(out, resume_);
    world.barrier();  // no rank reads a checkpoint before rank 0 has checked the directory

    TrainingRun training(
        config, out, {.resume = resume_, .progress = progress_, .device = device, .ranks = world});
    Trainer& trainer = training.trainer();
    if (!world.is_root()) {
      training.train();
      return 0;
    }
    print_summary(training);
    if (resume_) fmt::print("resumed     step {} of {}\n", trainer.step_count(), run.trainer.steps);
    std::fflush(stdout);

    std::optional<double> validation;
    trainer.add_callback(std::make_unique<LastValidationLoss>(validation));

    const auto start = std::chrono::steady_clock::now();
    const int64_t steps_taken = training.train();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto steps = static_cast<double>(steps_taken);
    fmt::print("trained     {} steps in {:.1f} s: {:.3g} steps/s, {:.4g} samples/s\n", steps_taken,
               seconds, steps / seconds,
               steps * static_cast<double>(run.trainer.batch_size) / seconds);
    if (validation) fmt::print("validation  {:.6g} (EMA weights)\n", *validation);
    if (world.size() > 1) {
      const double per_step = 1e3 / std::max(1.0, steps);
      fmt::print(
          "ranks       {}: allreduce of {:.3g} MB per step, {:.3g} ms per step on rank 0 (and "
          "{:.3g} ms waiting for the other ranks)\n",
          world.size(), static_cast<double>(trainer.communicated_bytes_per_step()) / 1e6,
          per_step * trainer.communication_seconds(), per_step * trainer.waiting_seconds());
    }
    fmt::print("checkpoint  {}\n", checkpoint.string());
    return 0;
  }

 private:
  std::filesystem::path config_path_;
  std::vector<std::string> overrides_;
  std::filesystem::path out_;
  bool resume_ = false;
  bool progress_ = true;
};

}  // namespace

std::unique_ptr<Command> make_train_command() { return std::make_unique<TrainCommand>(); }

}  // namespace psm::cli
