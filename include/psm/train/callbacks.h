#pragma once
// The standard training callbacks: periodic checkpoints, a JSON-lines metrics log for plots and
// a progress bar, plus the loss-per-noise-band bookkeeping they share.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "psm/core/progress.h"
#include "psm/train/trainer.h"

namespace psm {

/// `count` log-spaced noise-level bands over [sigma_min, sigma_max]: the loss is reported per
/// band because its scale and its noise differ by orders of magnitude across sigma.
class SigmaBands {
 public:
  SigmaBands(double sigma_min, double sigma_max, int64_t count = 4);

  int64_t count() const { return static_cast<int64_t>(edges_.size()) - 1; }
  /// [count + 1] band edges, ascending, length units.
  const std::vector<double>& edges() const { return edges_; }
  /// Band of each noise level: sigma [B] -> [B] int64 in [0, count), clamped at the ends.
  torch::Tensor index(const torch::Tensor& sigma) const;
  /// Short name of a band for progress output: "σ0.024" (its geometric centre).
  std::string label(int64_t band) const;

 private:
  std::vector<double> edges_;
};

/// Mean loss, overall and per band, over the steps added since the last reset().
class LossAverager {
 public:
  explicit LossAverager(SigmaBands bands);

  /// per_sample [B] and sigma [B] of one step.
  void add(const StepInfo& info);
  int64_t steps() const { return steps_; }
  /// Mean of the step losses; NaN before the first add().
  double loss() const;
  /// Mean of the step gradient norms; NaN before the first add().
  double grad_norm() const;
  /// Mean per-sample loss in each band [count]; NaN for a band that received no sample.
  std::vector<double> band_losses() const;
  void reset();
  const SigmaBands& bands() const { return bands_; }

 private:
  SigmaBands bands_;
  torch::Tensor band_sums_;    ///< [count] float64
  torch::Tensor band_counts_;  ///< [count] float64
  double loss_sum_ = 0;
  double grad_norm_sum_ = 0;
  int64_t steps_ = 0;
};

/// Writes the trainer's checkpoint to `path` every `every` steps (0: never in between) and at the
/// end of training.
class CheckpointWriter final : public Callback {
 public:
  CheckpointWriter(std::filesystem::path path, int64_t every);
  void on_step_end(const Trainer& trainer, const StepInfo& info) override;
  void on_train_end(const Trainer& trainer) override;

 private:
  std::filesystem::path path_;
  int64_t every_;
  int64_t last_written_ = -1;
};

/// A JSON-lines log for plots. Every `every` steps (and at validation steps and the last step)
/// one line {"step", "lr", "loss", "grad_norm", "band_losses", "band_edges", "elapsed_s"} with
/// the means since the previous line, plus "validation_loss" when one was computed at that step.
/// A fresh run's first line is {"step": 0, "validation_loss": ...}. Resuming at step S keeps the
/// existing lines up to S and appends after them; "elapsed_s" (wall seconds of training) then
/// goes on from the last kept line, so it counts every run that reached the step, less the
/// steps an interruption lost.
class MetricLogger final : public Callback {
 public:
  MetricLogger(std::filesystem::path path, int64_t every, SigmaBands bands,
               int64_t resume_step = 0);
  void on_train_begin(const Trainer& trainer, std::optional<double> validation_loss) override;
  void on_step_end(const Trainer& trainer, const StepInfo& info) override;

 private:
  void write(const nlohmann::json& line);

  std::filesystem::path path_;
  int64_t every_;
  LossAverager average_;
  std::ofstream out_;
  std::chrono::steady_clock::time_point start_;
  double elapsed_before_ = 0;  // seconds logged by the runs before a resume
};

/// The callbacks of a run directory `dir`: a progress bar (when `progress`), dir/metrics.jsonl
/// every options().log_every steps and dir/checkpoint.pt every options().checkpoint_every, with
/// noise bands from the trainer's schedule. Call after any resume().
void add_run_directory_callbacks(Trainer& trainer, const std::filesystem::path& dir, bool progress);

/// Keeps the latest validation loss (a resumed run's, then each new one) in `value`, which must
/// outlive the trainer: what a training reports at its end.
class LastValidationLoss final : public Callback {
 public:
  explicit LastValidationLoss(std::optional<double>& value) : value_(value) {}
  void on_train_begin(const Trainer& trainer, std::optional<double> validation_loss) override;
  void on_step_end(const Trainer& trainer, const StepInfo& info) override;

 private:
  std::optional<double>& value_;
};

/// A progress bar over the remaining steps showing the loss and the band losses (means over the
/// last `every` steps), the latest validation loss and the ETA.
class ProgressReporter final : public Callback {
 public:
  ProgressReporter(int64_t every, SigmaBands bands, bool enabled = true);
  void on_train_begin(const Trainer& trainer, std::optional<double> validation_loss) override;
  void on_step_end(const Trainer& trainer, const StepInfo& info) override;
  void on_train_end(const Trainer& trainer) override;

 private:
  int64_t every_;
  LossAverager average_;
  bool enabled_;
  std::unique_ptr<ProgressBar> bar_;
  int64_t first_step_ = 0;
  std::vector<std::pair<std::string, double>> shown_;
  std::optional<double> validation_;
};

}  // namespace psm
