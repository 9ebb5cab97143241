// `psm score-check`: a trained score against reference frames (and their forces) at a small
// noise level, before any sampling: how strong the score is compared with the frames' kT, and
// how close kT times the score comes to the forces.

#include <fmt/format.h>
#include <torch/torch.h>

#include <filesystem>
#include <optional>

#include "psm/cli/commands.h"
#include "psm/cli/validators.h"
#include "psm/eval/score_check.h"
#include "psm/io/dataset.h"
#include "psm/systems/potential.h"
#include "psm/train/checkpoint.h"

namespace psm::cli {

namespace {

class ScoreCheckCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    app.add_option("--checkpoint", checkpoint_, "Checkpoint written by `psm train`")->required();
    app.add_option("--frames", frames_,
                   "Reference frames (psm .npz, rMD17, sGDML, extxyz), ideally not the "
                   "training set; with forces for the force comparison")
        ->required()
        ->check(CLI::ExistingFile);
    app.add_option("--sigma", sigma_, "Noise level (default: the checkpoint's sigma_min)")
        ->check(positive_number);
    app.add_option("--n", count_, "Use the first N frames (0 = all)")->check(non_negative_number);
    app.add_option("--seed", options_.seed, "Seed of the noise")
        ->capture_default_str()
        ->check(seed_value);
  }

  int run(const GlobalOptions&) override {
    const TrainedModel trained = load_trained_model(checkpoint_);
    const CheckpointInfo& info = trained.info;
    Dataset frames = load_dataset(frames_);
    info.check_frames(frames, frames_.string());
    if (count_ > 0 && count_ < frames.num_frames()) {
      frames = frames.select(torch::arange(count_, torch::kInt64));
    }
    options_.sigma = sigma_.value_or(info.loss.schedule.sigma_min);
    options_.com_free = info.loss.com_free;
    std::unique_ptr<System> system;
    if (!info.system().is_null()) {
      try {
        system = make_system(info.system());
      } catch (const Error& e) {
        fmt::print("note           system {} is not available ({}): no exact-score reference\n",
                   info.system().dump(), e.what());
      }
    }
    options_.system = system.get();
    const ScoreCheck result = check_score(trained.score(), frames, options_);

    const double kT = frames.frames_kT();
    const auto row = [](const std::string& name, const std::string& value) {
      fmt::print("{:<14} {}\n", name, value);
    };
    row("frames", fmt::format("{} of {} (kT {:.5g})", frames.num_frames(), frames_.string(), kT));
    row("sigma",
        fmt::format("{:.4g}{}", options_.sigma, sigma_ ? "" : " (the checkpoint's sigma_min)"));
    const VirialTemperature& virial = result.score_virial;
    row("score virial", fmt::format("kT {:.4g} ± {:.2g}: {}", virial.kT, virial.standard_error,
                                    describe_score_strength(virial.kT, kT)));
    if (result.forces_virial) {
      row("forces virial",
          fmt::format("kT {:.4g} ± {:.2g} (the frames' own forces)", result.forces_virial->kT,
                      result.forces_virial->standard_error));
      row("forces", fmt::format("kT·score ≈ {:.4g} F (least squares); residual RMS {:.4g} of "
                                "force RMS {:.4g} per component ({:.3g} %)",
                                *result.slope, *result.residual_rms, *result.force_rms,
                                100 * *result.residual_rms / *result.force_rms));
      row("force error",
          fmt::format("kT·score - F(x0): MAE {:.4g}, RMS {:.4g} ({})", result.force_errors->mae,
                      result.force_errors->rms,
                      frames.units == Units::reduced ? "reduced units" : "kcal/mol/Å"));
    }
    if (result.exact_score_errors) {
      row("exact score",
          fmt::format("F(x_sigma) - F(x0): MAE {:.4g}, RMS {:.4g}: what the exact "
                      "score differs by at this sigma (first order)",
                      result.exact_score_errors->mae, result.exact_score_errors->rms));
    }
    if (result.network_errors) {
      row("network error", fmt::format("kT·score - F(x_sigma): MAE {:.4g}, RMS {:.4g}",
                                       result.network_errors->mae, result.network_errors->rms));
    }
    return 0;
  }

 private:
  std::filesystem::path checkpoint_;
  std::filesystem::path frames_;
  std::optional<double> sigma_;
  int64_t count_ = 0;
  ScoreCheckOptions options_;
};

}  // namespace

std::unique_ptr<Command> make_score_check_command() {
  return std::make_unique<ScoreCheckCommand>();
}

}  // namespace psm::cli
