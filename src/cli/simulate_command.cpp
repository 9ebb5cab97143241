// `psm simulate`: reference samples of a system's Boltzmann distribution by MCMC or Langevin
// dynamics, written as a psm dataset with energies and forces.

#include <fmt/format.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "psm/cli/commands.h"
#include "psm/cli/system_options.h"
#include "psm/cli/validators.h"
#include "psm/core/device.h"
#include "psm/core/error.h"
#include "psm/core/run_lock.h"
#include "psm/data/thermal_check.h"
#include "psm/eval/molecular.h"
#include "psm/io/dataset.h"
#include "psm/simulate/autocorrelation.h"
#include "psm/simulate/langevin.h"
#include "psm/simulate/simulation.h"

namespace psm::cli {

namespace {

class SimulateCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    app.add_option("--system", system_.name, "System name (see `psm systems`)")->required();
    app.add_option("--system-option", system_.options,
                   "System option key=value, repeatable (e.g. n=38 for lj)");
    app.add_option("--molecule", system_.molecule,
                   "Geometry file (.xyz, .npz) of a molecule: its species for --system xtb, its "
                   "frames as starting configurations");
    add_temperature_options(app, temperature_);
    app.add_option("--samples", settings_.samples, "Frames to keep, all chains together")
        ->capture_default_str();
    app.add_option("--out", out_, "Output dataset (.npz)")->required();
    app.add_option("--sampler", sampler_,
                   "mcmc (Metropolis), hmc (Hamiltonian Monte Carlo) or langevin (default: per "
                   "system)");
    app.add_option("--chains", settings_.chains, "Chains or trajectories run together");
    app.add_option("--burn-in", settings_.burn_in, "Steps before the first kept frame");
    app.add_option("--thin", settings_.thin, "Steps between kept frames");
    app.add_option("--step-size", settings_.step_size,
                   "MCMC initial proposal standard deviation (length units)");
    app.add_option("--time-step", time_step_,
                   "Langevin or HMC time step (fs for molecules, default 0.25; reduced time "
                   "otherwise; HMC adapts it in burn-in)");
    app.add_option("--leapfrog-steps", settings_.leapfrog_steps,
                   "HMC: force evaluations per trajectory (default 10)");
    app.add_option("--friction", friction_,
                   "Langevin friction (1/ps for molecules, default 20; reduced 1/time otherwise)");
    app.add_option("--target-acceptance", settings_.target_acceptance,
                   "Acceptance that burn-in adapts step sizes toward (default: MCMC 0.5, HMC 0.8)");
    app.add_option("--seed", settings_.seed, "Random seed")
        ->capture_default_str()
        ->check(seed_value);
    app.add_option("--init", init_, "Dataset whose frames start the chains (cycled)");
    app.add_option("--checkpoint", settings_.checkpoint, "State file written during the run");
    app.add_option("--checkpoint-every", settings_.checkpoint_every,
                   "Kept frames between state files")
        ->capture_default_str();
    app.add_flag("--resume", settings_.resume, "Continue from the --checkpoint state file");
    app.add_flag("--forces,!--no-forces", settings_.forces,
                 "Label kept frames with forces (default on)");
    app.add_flag("--progress,!--no-progress", settings_.progress, "Progress bar on stderr");
  }

  bool runs_on_ranks() const override { return true; }

  int run(const GlobalOptions& global) override {
    settings_.device = parse_device(global.device);
    const SystemWithStart choice = choose_system(system_);
    const auto& system = choice.system;
    check_dataset_output(out_, system->dim());
    std::optional<RunLock> checkpoint_lock;
    // Rank 0 writes the state file (the ranks' chains gathered); the others only read it.
    if (!settings_.checkpoint.empty() && global.world.is_root()) {
      checkpoint_lock = lock_state_file(settings_.checkpoint);
    }
    const Temperature temperature = resolve_temperature(*system, temperature_);
    settings_.kT = temperature.kT;
    check(settings_.samples > 0,
          fmt::format("--samples must be positive, got {}", settings_.samples));
    settings_.sampler = sampler_;
    // Molecules: users think in fs and 1/ps; the samplers work in AKMA time units.
    set_langevin_time_from_user(settings_, system->units(), time_step_, friction_);
    if (!init_.empty())
      settings_.initial_positions = read_geometry(init_).positions;
    else
      settings_.initial_positions = choice.start;

    // Under mpirun / srun the ranks share the chains; rank 0 reports and writes the dataset.
    settings_.progress = settings_.progress && global.world.is_root();
    const SimulationOutcome outcome = simulate(*system, settings_, global.world);
    if (!global.world.is_root()) return 0;
    Dataset dataset = outcome.dataset;
    dataset.temperature_kelvin = temperature.kelvin;
    dataset.provenance["command"] = "psm simulate";
    dataset.provenance["cpu_seconds"] = outcome.sampling_cpu_seconds;
    const Decorrelation decorrelation = measure_decorrelation(*system, outcome);
    if (decorrelation.energy)
      dataset.provenance["tau_energy_steps"] = decorrelation.energy->tau * outcome.thin;
    if (decorrelation.torsion) {
      dataset.provenance["tau_torsion_steps"] = decorrelation.torsion->tau.tau * outcome.thin;
      dataset.provenance["slowest_torsion"] = decorrelation.torsion->atoms;
    }
    const ThermalCheck thermal = check_thermal_equilibrium(dataset, outcome.kinetic_series);
    record_thermal_check(thermal, dataset.provenance);
    save_dataset(out_, dataset);
    print_summary(*system, temperature, outcome, decorrelation);
    const std::vector<std::string> thermometers = describe_thermal_check(thermal);
    for (size_t k = 0; k < thermometers.size(); ++k) {
      fmt::print("  {:<18} {}\n", k == 0 ? "thermometers" : "", thermometers[k]);
    }
    fmt::print("  wrote              {}\n", out_);
    return 0;
  }

 private:
  /// How many kept frames make an independent sample: by the energy, and for molecules by the
  /// slowest rotatable torsion (which usually decorrelates far more slowly).
  struct Decorrelation {
    std::optional<AutocorrelationTime> energy;  ///< unset when it cannot be estimated
    std::string energy_failure;                 ///< why not
    std::optional<TorsionAutocorrelation> torsion{};
  };

  static Decorrelation measure_decorrelation(const System& system,
                                             const SimulationOutcome& outcome) {
    Decorrelation result;
    const int64_t per_chain = outcome.energy_series.size(1);
    if (per_chain < 2) {
      // The samples are good; only their correlation cannot be measured.
      result.energy_failure = fmt::format(
          "each of the {} chains kept {} frame(s), and tau needs at least 2 per chain (use fewer "
          "--chains or more --samples)",
          outcome.chains, per_chain);
      return result;
    }
    result.energy = integrated_autocorrelation_time(outcome.energy_series);
    const torch::Tensor& positions = outcome.dataset.positions;
    const int64_t chains = outcome.chains, rounds = positions.size(0) / chains;
    if (system.units() != Units::kcal_mol_angstrom || rounds < 2) return result;
    // The dataset's frames are round-major: [rounds * chains] -> [chains, rounds].
    const torch::Tensor trajectories = positions.slice(0, 0, rounds * chains)
                                           .view({rounds, chains, positions.size(1), 3})
                                           .transpose(0, 1);
    result.torsion = slowest_torsion(trajectories, system.species());
    return result;
  }

  void print_summary(const System& system, const Temperature& temperature,
                     const SimulationOutcome& outcome, const Decorrelation& decorrelation) const {
    const auto& energies = outcome.dataset.energies;
    const double kept = static_cast<double>(outcome.energy_series.numel());
    const double mean = energies.mean().item<double>(), std = energies.std().item<double>();
    const bool dynamics = outcome.sampler == "langevin";
    const char* method = dynamics                   ? "Langevin dynamics (BAOAB)"
                         : outcome.sampler == "hmc" ? "Hamiltonian Monte Carlo"
                                                    : "Metropolis MCMC";
    fmt::print("psm simulate: {} by {}, {}\n", system.name(), method,
               describe(temperature, system.units()));
    // An HMC step is a trajectory of several force evaluations.
    const char* steps = outcome.sampler == "hmc" ? "trajectories" : "steps";
    fmt::print("  samples            {} ({} chains, a frame every {} {})\n",
               outcome.dataset.num_frames(), outcome.chains, outcome.thin, steps);
    if (!dynamics) {
      fmt::print("  acceptance         {:.3f} after burn-in\n", outcome.acceptance);
    } else {
      fmt::print("  kinetic kT         {:.4g} (target {:.4g})\n", outcome.kinetic_temperature,
                 temperature.kT);
    }
    fmt::print("  energy             mean {:.4f}  std {:.4f}\n", mean, std);
    fmt::print("  CPU seconds        {:.2f} sampling (wall {:.2f}), {:.2f} force labels\n",
               outcome.sampling_cpu_seconds, outcome.sampling_wall_seconds,
               outcome.labelling_cpu_seconds);
    if (!decorrelation.energy) {
      fmt::print("  tau(energy)        not estimated: {}\n", decorrelation.energy_failure);
      return;
    }
    const AutocorrelationTime& tau = *decorrelation.energy;
    const double independent = kept / tau.tau;
    fmt::print("  standard error     {:.4f} from tau, {:.4f} from the spread of chain means\n",
               std / std::sqrt(independent),
               outcome.chains >= 2 ? chain_means_standard_error(outcome.energy_series) : NAN);
    fmt::print("  tau(energy)        {:.3g} kept frames = {:.3g} {}{}\n", tau.tau,
               tau.tau * static_cast<double>(outcome.thin), steps,
               tau.reliable ? "" : " (unreliable: fewer than 50 tau per chain)");
    fmt::print("  independent        {:.0f} = samples / tau (all kept frames: {:.0f})\n",
               independent, kept);
    fmt::print("  CPU s / indep.     {:.3g} = sampling CPU seconds / (kept frames / tau)\n",
               outcome.sampling_cpu_seconds / independent);
    if (!decorrelation.torsion) return;
    const TorsionAutocorrelation& torsion = *decorrelation.torsion;
    fmt::print(
        "  tau(torsion)       {:.3g} kept frames = {:.3g} steps ({}, the slowest rotatable "
        "torsion){}\n",
        torsion.tau.tau, torsion.tau.tau * static_cast<double>(outcome.thin),
        atom_label(torsion.atoms, system.species()),
        torsion.tau.reliable ? "" : " (unreliable: fewer than 50 tau per chain)");
    fmt::print("  CPU s / indep.     {:.3g} by the torsion\n",
               outcome.sampling_cpu_seconds * torsion.tau.tau / kept);
  }

  SystemArguments system_;
  TemperatureArguments temperature_;
  SimulationSettings settings_{.samples = 10000, .progress = true};
  std::optional<std::string> sampler_;
  std::optional<double> time_step_, friction_;
  std::string init_;
  std::string out_;
};

}  // namespace

std::unique_ptr<Command> make_simulate_command() { return std::make_unique<SimulateCommand>(); }

}  // namespace psm::cli
