#pragma once
// One model trained into a run directory (checkpoint.pt, metrics.jsonl, config.toml): the one
// path that `psm train` and the training stage of `psm run` both take.
//
//   TrainingRun run(config, "runs/lj13", {.resume = true});
//   if (auto note = run.sigma_max_note()) print(*note);
//   run.train();

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "psm/core/communicator.h"
#include "psm/core/config.h"
#include "psm/core/run_lock.h"
#include "psm/io/dataset.h"
#include "psm/train/run_config.h"
#include "psm/train/trainer.h"

namespace psm {

struct TrainingRunOptions {
  bool resume = false;                 ///< continue from dir/checkpoint.pt (which must then exist)
  bool progress = true;                ///< progress bar on stderr
  torch::Device device = torch::kCPU;  ///< where the data and the model live
  /// Ranks that train data-parallel (see Trainer); rank 0 alone writes the run directory.
  Communicator ranks{};
};

class TrainingRun {
 public:
  /// Reads `config` (read_run_config), loads its training data onto options.device and builds
  /// the trainer, resumed from dir/checkpoint.pt when options.resume. Throws psm::Error on a bad
  /// configuration, unreadable data or a checkpoint of another run.
  TrainingRun(const Config& config, std::filesystem::path dir, const TrainingRunOptions& options);

  /// The checkpoint of the run: dir/checkpoint.pt.
  std::filesystem::path checkpoint() const { return dir_ / "checkpoint.pt"; }
  const RunConfig& run_config() const { return run_; }
  const Dataset& data() const { return data_; }
  Trainer& trainer() { return *trainer_; }
  const Trainer& trainer() const { return *trainer_; }

  /// Why diffusion.sigma_max looks too small: it is below the largest distance between training
  /// configurations (Song & Ermon's choice of sigma_max). Empty when it is not.
  std::optional<std::string> sigma_max_note() const;

  /// Writes dir/config.toml, adds the run-directory callbacks (add_run_directory_callbacks) and
  /// trains to train.steps; returns the steps taken by this call. Under several ranks only rank
  /// 0 writes and shows progress.
  int64_t train();

 private:
  std::filesystem::path dir_;
  bool progress_;
  RunConfig run_;
  Dataset data_;
  std::unique_ptr<Trainer> trainer_;
};

/// Whether the checkpoint in `dir` exists and has reached the train.steps of `config`.
bool training_finished(const Config& config, const std::filesystem::path& dir);

/// Readies `dir` for a TrainingRun: checks that it is writable, locks it for the run's lifetime
/// (the returned lock) and checks that dir/checkpoint.pt exists when `resume` and does not
/// otherwise. Throws psm::Error saying which, as `psm train` reports it.
RunLock open_run_directory(const std::filesystem::path& dir, bool resume);

}  // namespace psm
