// `psm likelihood`: the negative log-likelihood of frames (test data, or samples) under a
// trained checkpoint, through its probability-flow ODE.

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "psm/cli/commands.h"
#include "psm/cli/validators.h"
#include "psm/core/device.h"
#include "psm/core/error.h"
#include "psm/core/units.h"
#include "psm/io/dataset.h"
#include "psm/train/checkpoint.h"
#include "psm/train/model_likelihood.h"

namespace psm::cli {

namespace {

class LikelihoodCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    app.add_option("--checkpoint", checkpoint_, "Checkpoint written by `psm train`")->required();
    app.add_option("--frames", frames_, "Frames to score (.npz or extended XYZ)")
        ->required()
        ->check(CLI::ExistingFile);
    app.add_option("--n", count_, "Score the first N frames only (default: all)")
        ->check(positive_number);
    app.add_option("--out", out_,
                   "Write the frames with their log q (log_q, log_q_error) to this dataset");
    app.add_option("--steps", options_.steps,
                   "Heun steps from sigma_min to sigma_max (even with the error estimate)")
        ->capture_default_str()
        ->check(positive_number);
    app.add_option("--divergence", divergence_,
                   fmt::format("exact or hutchinson (default: exact up to {} dimensions)",
                               kExactDivergenceMaxDim));
    app.add_option("--probes", options_.probes, "Rademacher probes per frame (hutchinson)")
        ->capture_default_str()
        ->check(positive_number);
    app.add_flag("--error-estimate,!--no-error-estimate", options_.error_estimate,
                 "Also integrate with half the steps and report the integration error (x1.5 "
                 "cost)")
        ->capture_default_str();
    app.add_flag("--denoised,!--no-denoised", options_.denoised,
                 "The density of the samplers' output, after their final denoising step; "
                 "--no-denoised: of the ODE at sigma_min, before it")
        ->capture_default_str();
    app.add_option("--batch", options_.batch_size, "Frames integrated together")
        ->capture_default_str()
        ->check(positive_number);
    app.add_option("--seed", options_.seed, "Random seed (hutchinson probes)")
        ->capture_default_str()
        ->check(seed_value);
    app.add_flag("--progress,!--no-progress", progress_, "Progress bar on stderr");
  }

  int run(const GlobalOptions& global) override {
    if (!out_.empty()) check_dataset_output(out_);
    const torch::Device device = parse_device(global.device);
    const TrainedModel trained = load_trained_model(checkpoint_, device);
    Dataset frames = load_dataset(frames_);
    trained.info.check_frames(frames, frames_.string());
    if (count_) {
      check(*count_ <= frames.num_frames(),
            fmt::format("psm likelihood: --n {} but {} has {} frames", *count_, frames_.string(),
                        frames.num_frames()));
      frames = frames.select(torch::arange(*count_));
    }
    LikelihoodOptions options = likelihood_options_for(trained.info, options_);
    if (divergence_) options.divergence = divergence_method_from_string(*divergence_);
    options.validate("psm likelihood");
    const ModelLikelihood likelihood{.options = options, .device = device, .progress = progress_};

    const auto start = std::chrono::steady_clock::now();
    const LogDensity density = trained_model_log_density(trained, frames.positions, likelihood);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    const int64_t dim = effective_dim(frames.num_atoms(), frames.dim(), options.com_free);
    const torch::Tensor nll = -density.log_q;
    const double mean = nll.mean().item<double>();
    const double standard_error =
        frames.num_frames() > 1
            ? nll.std().item<double>() / std::sqrt(static_cast<double>(frames.num_frames()))
            : 0.0;
    fmt::print("NLL         {:.4f} ± {:.4f} nats per frame ({:.5f} per dimension), {} frames\n",
               mean, standard_error, mean / static_cast<double>(dim), frames.num_frames());
    fmt::print(
        "convention  -log q(x), q a density on the {}-dimensional {}space in {} length units, "
        "sigma {:.4g}..{:.4g}{}\n",
        dim, options.com_free ? "centre-of-mass-free " : "",
        frames.units == Units::reduced ? "reduced" : "Å", options.sigma_min, options.sigma_max,
        options.denoised ? ", after the final denoising step" : "");
    if (density.error.defined()) {
      fmt::print("ODE error   {:.2g} nats mean, {:.2g} largest (Richardson, {} vs {} steps)\n",
                 density.error.mean().item<double>(), density.error.max().item<double>(),
                 options.steps, options.steps / 2);
    }
    fmt::print("divergence  {} ({} score evaluations per frame), {:.2f} s: {:.3g} frames/s\n",
               to_string(divergence_method(options, dim)), likelihood_evaluations(options), seconds,
               static_cast<double>(frames.num_frames()) / seconds);
    if (!out_.empty()) {
      frames.log_q = density.log_q;
      frames.log_q_error = density.error;
      frames.log_weights = torch::Tensor();
      frames.provenance["likelihood"] = to_json(options);
      frames.provenance["likelihood"]["checkpoint"] = checkpoint_.string();
      save_dataset(out_, frames);
      fmt::print("wrote       {}\n", out_.string());
    }
    return 0;
  }

 private:
  std::filesystem::path checkpoint_;
  std::filesystem::path frames_;
  std::filesystem::path out_;
  std::optional<int64_t> count_;
  std::optional<std::string> divergence_;
  LikelihoodOptions options_{.denoised = true};
  bool progress_ = true;
};

}  // namespace

std::unique_ptr<Command> make_likelihood_command() { return std::make_unique<LikelihoodCommand>(); }

}  // namespace psm::cli
