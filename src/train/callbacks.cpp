#include "psm/train/callbacks.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "psm/core/atomic_file.h"
#include "psm/core/error.h"

namespace psm {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

SigmaBands::SigmaBands(double sigma_min, double sigma_max, int64_t count) {
  check(sigma_min > 0 && sigma_min < sigma_max && count >= 1,
        fmt::format("sigma bands: need 0 < sigma_min < sigma_max and count >= 1 (got {}, {}, {})",
                    sigma_min, sigma_max, count));
  const double log_min = std::log(sigma_min);
  const double step = (std::log(sigma_max) - log_min) / static_cast<double>(count);
  for (int64_t i = 0; i <= count; ++i) edges_.push_back(std::exp(log_min + step * i));
  edges_.front() = sigma_min;
  edges_.back() = sigma_max;
}

torch::Tensor SigmaBands::index(const torch::Tensor& sigma) const {
  const double log_min = std::log(edges_.front());
  const double width = (std::log(edges_.back()) - log_min) / static_cast<double>(count());
  return ((sigma.to(torch::kFloat64).log() - log_min) / width)
      .floor()
      .clamp(0, count() - 1)
      .to(torch::kInt64);
}

std::string SigmaBands::label(int64_t band) const {
  return fmt::format("σ{:.2g}", std::sqrt(edges_.at(band) * edges_.at(band + 1)));
}

LossAverager::LossAverager(SigmaBands bands)
    : bands_(std::move(bands)),
      band_sums_(torch::zeros({bands_.count()}, torch::kFloat64)),
      band_counts_(torch::zeros({bands_.count()}, torch::kFloat64)) {}

void LossAverager::add(const StepInfo& info) {
  const torch::Tensor band = bands_.index(info.sigma).cpu();
  band_sums_.index_add_(0, band, info.per_sample_loss.to(torch::kFloat64).cpu());
  band_counts_.index_add_(0, band, torch::ones({band.size(0)}, torch::kFloat64));
  loss_sum_ += info.loss;
  grad_norm_sum_ += info.grad_norm;
  ++steps_;
}

double LossAverager::loss() const {
  return steps_ > 0 ? loss_sum_ / static_cast<double>(steps_) : kNaN;
}

double LossAverager::grad_norm() const {
  return steps_ > 0 ? grad_norm_sum_ / static_cast<double>(steps_) : kNaN;
}

std::vector<double> LossAverager::band_losses() const {
  std::vector<double> out;
  for (int64_t i = 0; i < bands_.count(); ++i) {
    const double count = band_counts_[i].item<double>();
    out.push_back(count > 0 ? band_sums_[i].item<double>() / count : kNaN);
  }
  return out;
}

void LossAverager::reset() {
  band_sums_.zero_();
  band_counts_.zero_();
  loss_sum_ = 0;
  grad_norm_sum_ = 0;
  steps_ = 0;
}

CheckpointWriter::CheckpointWriter(std::filesystem::path path, int64_t every)
    : path_(std::move(path)), every_(every) {
  check(every_ >= 0, fmt::format("checkpoint_every must be >= 0 (got {})", every_));
}

void CheckpointWriter::on_step_end(const Trainer& trainer, const StepInfo& info) {
  if (every_ > 0 && info.step % every_ == 0) {
    trainer.save_checkpoint(path_);
    last_written_ = info.step;
  }
}

void CheckpointWriter::on_train_end(const Trainer& trainer) {
  if (last_written_ != trainer.step_count()) {
    trainer.save_checkpoint(path_);
    last_written_ = trainer.step_count();
  }
}

MetricLogger::MetricLogger(std::filesystem::path path, int64_t every, SigmaBands bands,
                           int64_t resume_step)
    : path_(std::move(path)), every_(every), average_(std::move(bands)) {
  check(every_ >= 1, fmt::format("log_every must be >= 1 (got {})", every_));
  // Lines past the resumed step belong to the interrupted run's lost steps: drop them.
  std::string kept;
  if (resume_step > 0 && std::filesystem::exists(path_)) {
    std::ifstream in(path_);
    std::string line;
    while (std::getline(in, line)) {
      const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (record.is_object() && record.value("step", int64_t{-1}) <= resume_step) {
        kept += line + "\n";
        elapsed_before_ = std::max(elapsed_before_, record.value("elapsed_s", 0.0));
      }
    }
  }
  write_atomically(path_, [&](const std::filesystem::path& tmp) {
    std::ofstream(tmp, std::ios::binary) << kept;
  });
  out_.open(path_, std::ios::app);
  check(out_.good(), fmt::format("{}: cannot open the metrics log for writing", path_.string()));
  start_ = std::chrono::steady_clock::now();
}

void MetricLogger::write(const nlohmann::json& line) {
  out_ << line.dump() << '\n';
  out_.flush();
  check(out_.good(), fmt::format("{}: writing the metrics log failed", path_.string()));
}

void MetricLogger::on_train_begin(const Trainer& trainer, std::optional<double> validation_loss) {
  start_ = std::chrono::steady_clock::now();
  if (validation_loss) {
    write({{"step", trainer.step_count()}, {"validation_loss", *validation_loss}});
  }
}

void MetricLogger::on_step_end(const Trainer& trainer, const StepInfo& info) {
  average_.add(info);
  const bool last = info.step == trainer.options().steps;
  if (info.step % every_ != 0 && !info.validation_loss && !last) return;
  nlohmann::json line = {
      {"step", info.step},
      {"lr", info.learning_rate},
      {"loss", average_.loss()},
      {"grad_norm", average_.grad_norm()},
      {"band_losses", average_.band_losses()},
      {"band_edges", average_.bands().edges()},
      {"elapsed_s",
       elapsed_before_ +
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count()}};
  if (info.validation_loss) line["validation_loss"] = *info.validation_loss;
  write(line);
  average_.reset();
}

ProgressReporter::ProgressReporter(int64_t every, SigmaBands bands, bool enabled)
    : every_(std::max<int64_t>(1, every)), average_(std::move(bands)), enabled_(enabled) {}

void ProgressReporter::on_train_begin(const Trainer& trainer,
                                      std::optional<double> validation_loss) {
  first_step_ = trainer.step_count();
  validation_ = validation_loss;
  bar_ = std::make_unique<ProgressBar>("train", trainer.options().steps - first_step_, enabled_);
}

void ProgressReporter::on_step_end(const Trainer&, const StepInfo& info) {
  average_.add(info);
  if (info.validation_loss) validation_ = info.validation_loss;
  if (average_.steps() >= every_ || shown_.empty()) {
    shown_ = {{"loss", average_.loss()}};
    const auto bands = average_.band_losses();
    for (size_t i = 0; i < bands.size(); ++i) {
      shown_.emplace_back(average_.bands().label(static_cast<int64_t>(i)), bands[i]);
    }
    average_.reset();
  }
  auto values = shown_;
  if (validation_) values.emplace_back("val", *validation_);
  bar_->update(info.step - first_step_, values);
}

void ProgressReporter::on_train_end(const Trainer&) {
  if (bar_) bar_->finish();
}

void add_run_directory_callbacks(Trainer& trainer, const std::filesystem::path& dir,
                                 bool progress) {
  const NoiseSchedule& schedule = trainer.loss_options().schedule;
  const SigmaBands bands(schedule.sigma_min, schedule.sigma_max);
  const TrainerOptions& options = trainer.options();
  trainer.add_callback(std::make_unique<ProgressReporter>(options.log_every, bands, progress));
  trainer.add_callback(std::make_unique<MetricLogger>(dir / "metrics.jsonl", options.log_every,
                                                      bands, trainer.step_count()));
  trainer.add_callback(
      std::make_unique<CheckpointWriter>(dir / "checkpoint.pt", options.checkpoint_every));
}

void LastValidationLoss::on_train_begin(const Trainer&, std::optional<double> validation_loss) {
  if (validation_loss) value_ = validation_loss;
}

void LastValidationLoss::on_step_end(const Trainer&, const StepInfo& info) {
  if (info.validation_loss) value_ = info.validation_loss;
}

}  // namespace psm
