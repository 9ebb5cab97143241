// `psm sample`: draws configurations from a trained checkpoint (EMA weights) with the reverse
// SDE or the probability-flow ODE and writes them as a psm dataset, with energies and forces
// when the checkpoint's system is known.

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
#include "psm/core/memory.h"
#include "psm/diffusion/sampler.h"
#include "psm/io/dataset.h"
#include "psm/systems/labelling.h"
#include "psm/systems/potential.h"
#include "psm/train/checkpoint.h"
#include "psm/train/model_likelihood.h"
#include "psm/train/model_sampling.h"

namespace psm::cli {

namespace {

class SampleCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    app.add_option("--checkpoint", checkpoint_, "Checkpoint written by `psm train`")->required();
    app.add_option("--out", out_, "Output dataset (.npz)")->required();
    count_option_ = app.add_option("--n", count_, "Number of samples")
                        ->capture_default_str()
                        ->check(positive_number);
    app.add_option("--steps", options_.steps, "Integration steps from sigma_max to sigma_min")
        ->capture_default_str()
        ->check(positive_number);
    app.add_option("--solver", solver_,
                   "heun (probability-flow ODE), sde (Euler-Maruyama), edm (EDM's stochastic "
                   "sampler: --churn), dpm2 (DPM-Solver++(2M), one evaluation per step) or "
                   "adaptive (Heun with step-size control: --tolerance)")
        ->capture_default_str();
    app.add_option("--churn", options_.churn,
                   "edm: total churn S_churn (each step in the band raises sigma by "
                   "min(churn/steps, 0.414))")
        ->capture_default_str()
        ->check(non_negative_number);
    app.add_option("--churn-sigma-min", options_.churn_sigma_min,
                   "edm: churn only at noise levels at or above this")
        ->capture_default_str()
        ->check(non_negative_number);
    app.add_option("--churn-sigma-max", options_.churn_sigma_max,
                   "edm: churn only at noise levels at or below this (default: all)")
        ->check(non_negative_number);
    app.add_option("--churn-noise", options_.churn_noise, "edm: scale of the added noise (S_noise)")
        ->capture_default_str()
        ->check(positive_number);
    app.add_option("--tolerance", options_.tolerance,
                   "adaptive: RMS step error as a fraction of the noise level (--steps sets the "
                   "first step)")
        ->capture_default_str()
        ->check(positive_number);
    app.add_option("--grid", grid_, "Sigma grid: edm or geometric")->capture_default_str();
    app.add_option("--rho", options_.rho, "Exponent of the edm grid")->capture_default_str();
    app.add_option("--sigma-min", sigma_min_, "Last noise level (default: the training one)")
        ->check(positive_number);
    app.add_option("--sigma-max", sigma_max_, "First noise level (default: the training one)")
        ->check(positive_number);
    app.add_option("--corrector-steps", options_.corrector_steps,
                   "Langevin corrector steps after each step (predictor-corrector)")
        ->capture_default_str()
        ->check(non_negative_number);
    app.add_option("--corrector-sigma-min", options_.corrector_sigma_min,
                   "Corrector steps only at noise levels at or above this (0: all)")
        ->capture_default_str()
        ->check(non_negative_number);
    app.add_option("--corrector-max-step", options_.corrector_max_step,
                   "Largest corrector step in units of sigma^2 (heats a mode by at most "
                   "1/(1-c/2); default: no cap)")
        ->check(positive_number);
    app.add_option("--snr", options_.snr, "Signal-to-noise ratio of the corrector steps")
        ->capture_default_str()
        ->check(positive_number);
    app.add_option("--from", from_,
                   "Partial diffusion: noise the frames of this dataset to --sigma-max and "
                   "integrate them back (first --n frames; checks the score below sigma-max)")
        ->check(CLI::ExistingFile);
    app.add_option("--batch", options_.batch_size, "Samples integrated together")
        ->capture_default_str()
        ->check(positive_number);
    app.add_option("--seed", options_.seed, "Random seed")
        ->capture_default_str()
        ->check(seed_value);
    app.add_flag("--likelihood", likelihood_,
                 "Also write log q of each sample (probability-flow ODE and the final "
                 "denoising step; needs --solver heun) and, with energies, log importance "
                 "weights -U/kT - log q and their effective sample size");
    app.add_option("--likelihood-steps", likelihood_options_.steps,
                   "Heun steps of the likelihood integration (even)")
        ->capture_default_str()
        ->check(positive_number);
    app.add_option("--divergence", divergence_,
                   fmt::format("Likelihood divergence: exact or hutchinson (default: exact up to "
                               "{} dimensions)",
                               kExactDivergenceMaxDim));
    app.add_option("--probes", likelihood_options_.probes,
                   "Rademacher probes per sample (hutchinson)")
        ->capture_default_str()
        ->check(positive_number);
    app.add_flag("--energies,!--no-energies", energies_,
                 "Label samples with energies and forces when the system is known");
    app.add_flag("--progress,!--no-progress", progress_, "Progress bar on stderr");
  }

  bool runs_on_ranks() const override { return true; }

  int run(const GlobalOptions& global) override {
    check_dataset_output(out_);
    const torch::Device device = parse_device(global.device);
    const TrainedModel trained = load_trained_model(checkpoint_, device);
    const CheckpointInfo& info = trained.info;
    check_dataset_output(out_, info.dim());
    check_memory_fits(4.0 * static_cast<double>(count_) *
                          static_cast<double>(info.species().size()) *
                          static_cast<double>(info.dim()) * 8.0,
                      fmt::format("psm sample: --n {} of {} atoms", count_, info.species().size()));
    SamplerOptions sampler = sampler_options_for(info, options_);
    sampler.solver = solver_from_string(solver_);
    sampler.grid = sigma_grid_from_string(grid_);
    sampler.sigma_min = sigma_min_.value_or(sampler.sigma_min);
    sampler.sigma_max = sigma_max_.value_or(sampler.sigma_max);
    sampler.validate("psm sample");
    std::optional<ModelLikelihood> likelihood;
    if (likelihood_) {
      check(from_.empty(),
            "psm sample: --likelihood and --from exclude each other (renoised frames have no "
            "model density)");
      LikelihoodOptions base = likelihood_options_;
      if (divergence_) base.divergence = divergence_method_from_string(*divergence_);
      likelihood = ModelLikelihood{
          .options = likelihood_for_sampling(info, sampler, base, "psm sample --likelihood"),
          .device = device,
          .progress = progress_};
    }
    // Under mpirun / srun the ranks share the sampler's chunks; rank 0 labels and writes.
    const ModelSampling sampling{.checkpoint = checkpoint_,
                                 .sampler = sampler,
                                 .device = device,
                                 .progress = progress_ && global.world.is_root(),
                                 .ranks = global.world};

    const auto start = std::chrono::steady_clock::now();
    ModelSamples drawn = from_.empty() ? sample_trained_model(trained, count_, sampling)
                                       : renoise_trained_model(trained, frames_to_renoise(info),
                                                               from_.string(), sampling);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!global.world.is_root()) return 0;
    check(drawn.diverged < drawn.drawn,
          fmt::format("{}: every sample diverged (non-finite positions): try more --steps or "
                      "another checkpoint",
                      checkpoint_.string()));
    if (drawn.diverged > 0) {
      fmt::print(stderr,
                 "note: {} of {} samples diverged (non-finite positions) and are left out; the "
                 "provenance counts them (try more --steps)\n",
                 drawn.diverged, drawn.drawn);
    }

    Dataset& samples = drawn.dataset;
    samples.provenance["command"] = "psm sample";
    if (energies_ && !info.system().is_null()) label(samples, info, sampler.batch_size);
    double likelihood_seconds = 0;
    if (likelihood) {
      const auto likelihood_start = std::chrono::steady_clock::now();
      add_likelihood(samples, trained, *likelihood);
      likelihood_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - likelihood_start)
              .count();
    }
    save_dataset(out_, samples);
    fmt::print(
        "sampled     {} configurations in {:.2f} s: {:.4g} samples/s ({} solver, {} steps, "
        "{:.4g} score evaluations each)\n",
        count_, seconds, static_cast<double>(count_) / seconds, to_string(sampler.solver),
        sampler.steps, drawn.score_evaluations);
    if (likelihood) print_likelihood(samples, *likelihood, likelihood_seconds);
    fmt::print("wrote       {}{}\n", out_.string(),
               samples.has_energies() ? " (with energies and forces)" : "");
    return 0;
  }

 private:
  /// Energies and forces of `samples` from the checkpoint's system, when it can be built.
  static void label(Dataset& samples, const CheckpointInfo& info, int64_t batch) {
    std::unique_ptr<System> system;
    try {
      system = make_system(info.system());
    } catch (const Error& e) {
      fmt::print("note        system {} is not available ({}): no energies\n", info.system().dump(),
                 e.what());
      return;
    }
    const int64_t bad = label_dataset(*system, samples, batch);
    if (bad > 0) {
      fmt::print(
          "note        {} sample(s) have a non-finite energy or force: energies and forces "
          "are not written\n",
          bad);
    }
  }

  /// The log-density's summary and the effective sample size of the importance weights.
  static void print_likelihood(const Dataset& samples, const ModelLikelihood& likelihood,
                               double seconds) {
    fmt::print(
        "likelihood  {:.2f} s: {:.4g} samples/s ({} divergence, {} steps, {} score "
        "evaluations each)\n",
        seconds, static_cast<double>(samples.num_frames()) / seconds,
        samples.provenance["likelihood"].value("divergence", ""), likelihood.options.steps,
        likelihood_evaluations(likelihood.options));
    fmt::print("log q       mean {:.4f} nats, ODE error {:.2g} mean, {:.2g} largest\n",
               samples.log_q.mean().item<double>(),
               samples.log_q_error.defined() ? samples.log_q_error.mean().item<double>() : 0.0,
               samples.log_q_error.defined() ? samples.log_q_error.max().item<double>() : 0.0);
    if (const auto ess = effective_sample_fraction(samples)) {
      fmt::print("weights     Kish effective sample size {:.4f} of {} samples ({:.1f} samples)\n",
                 *ess, samples.num_frames(), *ess * static_cast<double>(samples.num_frames()));
    } else {
      fmt::print("weights     none: the samples have no energies\n");
    }
  }

  /// The first --n frames of --from, checked against the checkpoint's atoms; sets count_.
  torch::Tensor frames_to_renoise(const CheckpointInfo& info) {
    check(sigma_max_.has_value(),
          "psm sample: --from needs --sigma-max (the noise level to start from)");
    const Dataset frames = load_dataset(from_);
    info.check_frames(frames, from_.string());
    check(count_option_->count() == 0 || count_ <= frames.num_frames(),
          fmt::format("psm sample: --n {} but {} has {} frames", count_, from_.string(),
                      frames.num_frames()));
    count_ = std::min(count_, frames.num_frames());
    return frames.positions.narrow(0, 0, count_).to(torch::kFloat64);
  }

  std::filesystem::path checkpoint_;
  std::filesystem::path from_;
  std::filesystem::path out_;
  int64_t count_ = 10000;
  CLI::Option* count_option_ = nullptr;  ///< --n, to tell a given count from the default
  SamplerOptions options_{.steps = 100, .batch_size = 1000};
  std::string solver_ = "heun";
  std::string grid_ = "edm";
  std::optional<double> sigma_min_;
  std::optional<double> sigma_max_;
  bool energies_ = true;
  bool progress_ = true;
  bool likelihood_ = false;
  LikelihoodOptions likelihood_options_{};
  std::optional<std::string> divergence_;
};

}  // namespace

std::unique_ptr<Command> make_sample_command() { return std::make_unique<SampleCommand>(); }

}  // namespace psm::cli
