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
#include "psm/core/progress.h"
#include "psm/diffusion/sampler.h"
#include "psm/io/dataset.h"
#include "psm/systems/labelling.h"
#include "psm/systems/potential.h"
#include "psm/train/checkpoint.h"

namespace psm::cli {

namespace {

std::optional<double> optional_number(const nlohmann::json& record, const char* key) {
  const nlohmann::json value = record.value(key, nlohmann::json());
  return value.is_number() ? std::optional<double>(value.get<double>()) : std::nullopt;
}

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
    app.add_option("--solver", solver_, "heun (probability-flow ODE) or sde (Euler-Maruyama)")
        ->capture_default_str();
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
    app.add_flag("--energies,!--no-energies", energies_,
                 "Label samples with energies and forces when the system is known");
    app.add_flag("--progress,!--no-progress", progress_, "Progress bar on stderr");
  }

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
    options_.solver = solver_from_string(solver_);
    options_.grid = sigma_grid_from_string(grid_);
    options_.sigma_min = sigma_min_.value_or(info.loss.schedule.sigma_min);
    options_.sigma_max = sigma_max_.value_or(info.loss.schedule.sigma_max);
    options_.com_free = info.loss.com_free;
    options_.validate("psm sample");

    const int64_t atoms = static_cast<int64_t>(info.species().size());
    std::unique_ptr<ProgressBar> bar;  // made at the first step, when the total is known
    const SamplerProgress progress = [&](int64_t done, int64_t total) {
      if (!bar) bar = std::make_unique<ProgressBar>("sample", total, progress_);
      bar->update(done);
    };
    const auto start = std::chrono::steady_clock::now();
    const torch::Tensor positions =
        from_.empty() ? sample_diffusion(trained.score(), count_, atoms, info.dim(), options_,
                                         torch::dtype(torch::kFloat64).device(device), progress)
                      : renoise_and_integrate(trained.score(), frames_to_renoise(info).to(device),
                                              options_, progress);
    if (bar) bar->finish();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    check(torch::isfinite(positions).all().item<bool>(),
          fmt::format("{}: sampling produced non-finite positions (try more --steps or another "
                      "checkpoint)",
                      checkpoint_.string()));

    Dataset samples;
    samples.positions = positions.cpu();
    samples.species = info.species();
    samples.units = info.units();
    samples.kT = info.kT();
    samples.temperature_kelvin = optional_number(info.data, "temperature_kelvin");
    samples.system = info.system();
    samples.provenance = {{"command", "psm sample"},
                          {"checkpoint", checkpoint_.string()},
                          {"training_step", info.step},
                          {"solver", to_string(options_.solver)},
                          {"steps", options_.steps},
                          {"grid", to_string(options_.grid)},
                          {"rho", options_.rho},
                          {"sigma_min", options_.sigma_min},
                          {"sigma_max", options_.sigma_max},
                          {"corrector_steps", options_.corrector_steps},
                          {"snr", options_.snr},
                          {"corrector_sigma_min", options_.corrector_sigma_min},
                          {"corrector_max_step", options_.corrector_max_step},
                          {"seed", options_.seed},
                          {"training_data", info.data.value("source", "")}};
    if (!from_.empty()) samples.provenance["renoised_frames"] = from_.string();
    if (energies_ && !info.system().is_null()) {
      std::unique_ptr<System> system;
      try {
        system = make_system(info.system());
      } catch (const Error& e) {
        fmt::print("note        system {} is not available ({}): no energies\n",
                   info.system().dump(), e.what());
      }
      const int64_t bad = system ? label_dataset(*system, samples, options_.batch_size) : 0;
      if (bad > 0) {
        fmt::print(
            "note        {} sample(s) have a non-finite energy or force: energies and forces "
            "are not written\n",
            bad);
      }
    }
    save_dataset(out_, samples);
    fmt::print(
        "sampled     {} configurations in {:.2f} s: {:.4g} samples/s ({} solver, {} steps, "
        "{} score evaluations each)\n",
        count_, seconds, static_cast<double>(count_) / seconds, to_string(options_.solver),
        options_.steps, score_evaluations(options_));
    fmt::print("wrote       {}{}\n", out_.string(),
               samples.has_energies() ? " (with energies and forces)" : "");
    return 0;
  }

 private:
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
};

}  // namespace

std::unique_ptr<Command> make_sample_command() { return std::make_unique<SampleCommand>(); }

}  // namespace psm::cli
