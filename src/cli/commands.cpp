#include <fmt/format.h>

#include "psm/cli/command.h"
#include "psm/cli/commands.h"
#include "psm/systems/potential.h"

namespace psm::cli {

namespace {

/// `psm systems`: lists the systems that `--system` accepts.
class SystemsCommand final : public Command {
 public:
  void configure(CLI::App&) override {}
  int run(const GlobalOptions&) override {
    SystemRegistry registry("system");
    register_builtin_systems(registry);
    for (const auto& name : registry.names()) {
      fmt::print("{:<8} {}\n", name, registry.summary(name));
    }
    return 0;
  }
};

}  // namespace

void register_builtin_commands(CommandRegistry& registry) {
  registry.add("systems", "List the physical systems psm knows",
               [] { return std::make_unique<SystemsCommand>(); });
  registry.add("data", "Inspect datasets (.npz, extended XYZ)", make_data_command);
  registry.add("simulate", "Reference samples of a system by MCMC or Langevin dynamics",
               make_simulate_command);
  registry.add("validate", "Compare psm's reference sampling with published samples (LJ13, DW4)",
               make_validate_command);
  registry.add("train", "Train a score model from a TOML config", make_train_command);
  registry.add("sample", "Draw samples from a trained checkpoint", make_sample_command);
  registry.add("likelihood",
               "Log-likelihood of frames under a trained checkpoint (probability-flow ODE)",
               make_likelihood_command);
  registry.add("eval", "Metrics, histograms and a report: samples against a reference",
               make_eval_command);
  registry.add("score-check",
               "A trained score against reference frames and forces at a small noise level",
               make_score_check_command);
  registry.add("run", "Run an experiment: reference, training sets, DSM/PSM training, report",
               make_run_command);
}

}  // namespace psm::cli
