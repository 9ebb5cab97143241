#include "psm/train/training_run.h"

#include <fmt/format.h>

#include "psm/core/atomic_file.h"
#include "psm/core/error.h"
#include "psm/diffusion/schedule.h"
#include "psm/train/callbacks.h"
#include "psm/train/checkpoint.h"

namespace psm {

TrainingRun::TrainingRun(const Config& config, std::filesystem::path dir,
                         const TrainingRunOptions& options)
    : dir_(std::move(dir)), progress_(options.progress), run_(read_run_config(config)) {
  data_ = load_dataset(run_.train_data).to(options.device);
  trainer_ = std::make_unique<Trainer>(
      data_, run_.network, run_.loss, run_.trainer,
      RunRecord{.config_toml = run_.config.to_toml(), .data_source = run_.train_data.string()},
      options.ranks);
  if (options.resume) trainer_->resume(checkpoint());
}

std::optional<std::string> TrainingRun::sigma_max_note() const {
  const LossOptions& loss = trainer_->loss_options();
  const double extent = suggest_sigma_max(data_.positions, loss.com_free);
  if (loss.schedule.sigma_max >= extent) return std::nullopt;
  return fmt::format(
      "diffusion.sigma_max = {:.6g} is below the largest distance between training "
      "configurations, {:.3g} (Song & Ermon's choice of sigma_max); raise it if samples miss "
      "modes",
      loss.schedule.sigma_max, extent);
}

int64_t TrainingRun::train() {
  if (trainer_->ranks().is_root()) {
    write_text_atomically(dir_ / "config.toml", run_.config.to_toml());
    add_run_directory_callbacks(*trainer_, dir_, progress_);
  }
  const int64_t first_step = trainer_->step_count();
  trainer_->train();
  return trainer_->step_count() - first_step;
}

bool training_finished(const Config& config, const std::filesystem::path& dir) {
  const std::filesystem::path checkpoint = dir / "checkpoint.pt";
  return std::filesystem::exists(checkpoint) &&
         read_checkpoint_info(checkpoint).step >= read_run_config(config).trainer.steps;
}

RunLock open_run_directory(const std::filesystem::path& dir, bool resume) {
  const std::filesystem::path checkpoint = dir / "checkpoint.pt";
  check_directory_writable(dir);
  RunLock lock = lock_run_directory(dir);
  if (resume) {
    check(std::filesystem::exists(checkpoint),
          fmt::format("--resume: {} does not exist (nothing to resume)", checkpoint.string()));
  } else {
    check(!std::filesystem::exists(checkpoint),
          fmt::format("{} exists: pass --resume to continue that run, or choose another --out",
                      checkpoint.string()));
  }
  return lock;
}

}  // namespace psm
