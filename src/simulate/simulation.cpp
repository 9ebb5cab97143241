#include "psm/simulate/simulation.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <ctime>

#include "psm/core/error.h"
#include "psm/core/memory.h"
#include "psm/core/random.h"
#include "psm/core/value_registry.h"
#include "psm/simulate/hamiltonian.h"
#include "psm/simulate/langevin.h"
#include "psm/simulate/metropolis.h"
#include "psm/simulate/presets.h"

namespace psm {

namespace {

/// Generator stream of starting configurations.
constexpr uint64_t start_stream = 3;

/// Process CPU time since construction.
class Stopwatch {
 public:
  double cpu_seconds() const {
    return static_cast<double>(std::clock() - cpu_) / static_cast<double>(CLOCKS_PER_SEC);
  }

 private:
  std::clock_t cpu_ = std::clock();
};

torch::Tensor starting_positions(const System& system, const SimulationSettings& settings,
                                 const SamplerPreset& preset, int64_t chains) {
  if (!settings.initial_positions.defined()) {
    auto generator = make_generator(settings.seed, start_stream);
    return lattice_configurations(system, chains, preset.spacing, generator).to(settings.device);
  }
  const auto& frames = settings.initial_positions;
  check(frames.dim() == 3 && frames.size(0) > 0 && frames.size(1) == system.num_atoms() &&
            frames.size(2) == system.dim(),
        fmt::format("simulate: starting configurations must have shape [F, {}, {}], got [{}]",
                    system.num_atoms(), system.dim(), fmt::join(frames.sizes(), ", ")));
  const auto index = torch::arange(chains, torch::kInt64).remainder(frames.size(0));
  return frames.to(settings.device, torch::kFloat64).index_select(0, index.to(settings.device));
}

template <class Sampler, class State>
State start_or_resume(const Sampler& sampler, const System& system,
                      const SimulationSettings& settings, const SamplerPreset& preset,
                      int64_t chains) {
  if (settings.resume) {
    check(!settings.checkpoint.empty(), "simulate: --resume needs a --checkpoint file");
    return sampler.load(settings.checkpoint, settings.device);
  }
  return sampler.start(starting_positions(system, settings, preset, chains));
}

/// Refuses chain counts and sample counts whose arrays cannot fit in memory, before any work:
/// the chains' state (positions, proposals, forces, velocities: about 8 arrays) and the kept
/// frames (positions, forces, plus their copies in the dataset: about 4).
void check_memory(const System& system, const SimulationSettings& settings, int64_t chains) {
  const double frame_bytes =
      static_cast<double>(system.num_atoms()) * static_cast<double>(system.dim()) * 8.0;
  check_memory_fits(8.0 * frame_bytes * static_cast<double>(chains),
                    fmt::format("simulate: {} chains of {} atoms", chains, system.num_atoms()));
  check_memory_fits(
      4.0 * frame_bytes * static_cast<double>(settings.samples),
      fmt::format("simulate: {} samples of {} atoms", settings.samples, system.num_atoms()));
}

/// This rank's block of `chains`, in rank order.
ChainShare share_of(const Communicator& ranks, int64_t chains) {
  check(chains >= ranks.size(),
        fmt::format("simulate: {} chains cannot be shared by {} ranks (use --chains {} or more)",
                    chains, ranks.size(), ranks.size()));
  const auto [begin, end] = ranks.block(chains);
  return {.begin = begin, .end = end, .ranks = ranks};
}

/// The ranks' chains of `local` (chains along `dim`) in one CPU tensor on rank 0, in rank order;
/// undefined on the others.
torch::Tensor gather_chains(const Communicator& ranks, const torch::Tensor& local,
                            int64_t dim = 0) {
  const torch::Tensor all = ranks.gather(local.cpu().movedim(dim, 0));
  return all.defined() ? all.movedim(0, dim).contiguous() : all;
}

/// Per-round tensors [C_local, ...] of every rank as rounds [C, ...] on rank 0.
std::vector<torch::Tensor> gather_rounds(const Communicator& ranks,
                                         const std::vector<torch::Tensor>& rounds) {
  if (rounds.empty()) return {};
  const torch::Tensor all = gather_chains(ranks, torch::stack(rounds), 1);
  if (!all.defined()) return {};
  std::vector<torch::Tensor> gathered;
  for (const auto& round : all.unbind(0)) gathered.push_back(round.contiguous());
  return gathered;
}

/// Rank 0 gets the state of all chains (positions, energies, kept rounds); every rank gets the
/// CPU seconds of all ranks together.
void gather_chain_state(const Communicator& ranks, ChainState& state) {
  state.positions = gather_chains(ranks, state.positions);
  state.energies = gather_chains(ranks, state.energies);
  state.kept.positions = gather_rounds(ranks, state.kept.positions);
  state.kept.energies = gather_rounds(ranks, state.kept.energies);
  state.kept.forces = gather_rounds(ranks, state.kept.forces);
  state.time.cpu_seconds =
      ranks.allreduce_sum(torch::tensor(state.time.cpu_seconds, torch::kFloat64)).item<double>();
}

/// Labels the kept rounds of this rank's chains with forces, so that ranks share the labelling.
void label_kept_rounds(const System& system, SampleRecord& kept, bool progress) {
  const int64_t chains = kept.positions.front().size(0);
  const auto forces = evaluate_forces(system, torch::cat(kept.positions), 1024, progress);
  kept.forces.clear();
  for (const auto& round : forces.split(chains)) kept.forces.push_back(round);
}

/// The timings of a rank other than 0, which holds no frames.
SimulationOutcome timings_only(const SimulationOutcome& outcome, const ChainState& state) {
  SimulationOutcome timings = outcome;
  timings.sampling_cpu_seconds = state.time.cpu_seconds;
  timings.sampling_wall_seconds = state.time.wall_seconds;
  return timings;
}

/// Runs a Monte Carlo sampler (Metropolis or HMC, step sizes adapted in burn-in) from its start
/// or state file into `outcome`, labelling the kept frames with forces when settings.forces and
/// the sampler did not keep them (HMC does). Under several ranks each labels its own chains and
/// rank 0 gathers them; returns false on the other ranks, whose outcome holds timings only.
template <class Sampler, class State>
bool run_monte_carlo(const Sampler& sampler, const System& system,
                     const SimulationSettings& settings, const SamplerPreset& preset,
                     const Communicator& ranks, SimulationOutcome& outcome) {
  auto state = start_or_resume<Sampler, State>(sampler, system, settings, preset, outcome.chains);
  sampler.run(state);
  const bool shared = ranks.size() > 1;
  if (shared) {
    const Stopwatch labelling;
    if (settings.forces && state.kept.forces.empty()) {
      label_kept_rounds(system, state.kept, settings.progress);
    }
    outcome.labelling_cpu_seconds = labelling.cpu_seconds();
    gather_chain_state(ranks, state);
    state.log_step = gather_chains(ranks, state.log_step);
    state.accepted = gather_chains(ranks, state.accepted);
    if (!ranks.is_root()) {
      outcome = timings_only(outcome, state);
      return false;
    }
  }
  outcome.sampling_cpu_seconds = state.time.cpu_seconds;
  outcome.sampling_wall_seconds = state.time.wall_seconds;
  outcome.dataset = sampler.dataset(state);
  outcome.energy_series = state.kept.energy_series();
  outcome.acceptance = sampler.acceptance(state);
  outcome.kinetic_temperature = std::nan("");
  if (settings.forces && !shared && !outcome.dataset.has_forces()) {
    const Stopwatch labelling;
    outcome.dataset.forces =
        evaluate_forces(system, outcome.dataset.positions, 1024, settings.progress);
    outcome.labelling_cpu_seconds = labelling.cpu_seconds();
  }
  return true;
}

const ValueRegistry<SimulationSampler> kSimulationSamplers("sampler",
                                                           {{"mcmc", SimulationSampler::mcmc},
                                                            {"hmc", SimulationSampler::hmc},
                                                            {"langevin",
                                                             SimulationSampler::langevin}});

}  // namespace

SimulationSampler simulation_sampler_from_string(const std::string& name) {
  return kSimulationSamplers.get(name);
}
std::string to_string(SimulationSampler sampler) { return kSimulationSamplers.name_of(sampler); }

SimulationOutcome simulate(const System& system, const SimulationSettings& settings,
                           const Communicator& ranks) {
  SimulationOutcome outcome;
  SimulationSampler kind = SimulationSampler::mcmc;
  try {
    kind =
        simulation_sampler_from_string(settings.sampler.value_or(sampler_preset(system).sampler));
  } catch (const Error& error) {
    throw Error(fmt::format("simulate: {}", error.what()));
  }
  // No system's default is HMC: its step counts are trajectories, with presets of their own.
  const SamplerPreset preset =
      kind == SimulationSampler::hmc ? hamiltonian_preset(system) : sampler_preset(system);
  outcome.sampler = to_string(kind);
  outcome.chains = settings.chains.value_or(preset.chains);
  outcome.thin = settings.thin.value_or(preset.thin);
  const int64_t burn_in = settings.burn_in.value_or(preset.burn_in);
  check_memory(system, settings, outcome.chains);
  const ChainShare share = share_of(ranks, outcome.chains);
  const bool shared = ranks.size() > 1;

  if (kind == SimulationSampler::mcmc) {
    MetropolisSampler sampler(system,
                              {.kT = settings.kT,
                               .chains = outcome.chains,
                               .burn_in = burn_in,
                               .thin = outcome.thin,
                               .samples = settings.samples,
                               .initial_step = settings.step_size.value_or(preset.step_size),
                               .target_acceptance = settings.target_acceptance.value_or(0.5),
                               .forces = false,
                               .seed = settings.seed,
                               .checkpoint = settings.checkpoint,
                               .checkpoint_every = settings.checkpoint_every,
                               .progress = settings.progress,
                               .share = share});
    if (!run_monte_carlo<MetropolisSampler, MetropolisState>(sampler, system, settings, preset,
                                                             ranks, outcome)) {
      return outcome;
    }
  } else if (kind == SimulationSampler::hmc) {
    HamiltonianSampler sampler(
        system, {.kT = settings.kT,
                 .chains = outcome.chains,
                 .burn_in = burn_in,
                 .thin = outcome.thin,
                 .samples = settings.samples,
                 .leapfrog_steps = settings.leapfrog_steps.value_or(preset.leapfrog_steps),
                 .initial_step = settings.time_step.value_or(preset.time_step),
                 .target_acceptance = settings.target_acceptance.value_or(0.8),
                 .forces = settings.forces,
                 .seed = settings.seed,
                 .checkpoint = settings.checkpoint,
                 .checkpoint_every = settings.checkpoint_every,
                 .progress = settings.progress,
                 .share = share});
    if (!run_monte_carlo<HamiltonianSampler, HamiltonianState>(sampler, system, settings, preset,
                                                               ranks, outcome)) {
      return outcome;
    }
  } else {
    const bool molecular = system.units() == Units::kcal_mol_angstrom;
    LangevinSampler sampler(
        system, {.kT = settings.kT,
                 .time_step = settings.time_step.value_or(preset.time_step),
                 .friction = settings.friction.value_or(preset.friction),
                 .masses = molecular ? standard_atomic_masses(system.species()) : torch::Tensor(),
                 .trajectories = outcome.chains,
                 .burn_in = burn_in,
                 .record_every = outcome.thin,
                 .samples = settings.samples,
                 .seed = settings.seed,
                 .checkpoint = settings.checkpoint,
                 .checkpoint_every = settings.checkpoint_every,
                 .progress = settings.progress,
                 .share = share});
    auto state = start_or_resume<LangevinSampler, LangevinState>(sampler, system, settings, preset,
                                                                 outcome.chains);
    sampler.run(state);
    if (shared) {
      gather_chain_state(ranks, state);
      state.velocities = gather_chains(ranks, state.velocities);
      state.forces = gather_chains(ranks, state.forces);
      state.kinetic = gather_rounds(ranks, state.kinetic);
      if (!ranks.is_root()) return timings_only(outcome, state);
    }
    outcome.sampling_cpu_seconds = state.time.cpu_seconds;
    outcome.sampling_wall_seconds = state.time.wall_seconds;
    outcome.dataset = sampler.dataset(state);
    // Langevin computes forces at every step anyway; dropping them saves only file space.
    if (!settings.forces) outcome.dataset.forces = torch::Tensor();
    outcome.energy_series = state.kept.energy_series();
    outcome.acceptance = std::nan("");
    outcome.kinetic_temperature = sampler.kinetic_temperature(state);
    outcome.kinetic_series = sampler.kinetic_temperatures(state);
  }
  outcome.dataset = outcome.dataset.to(torch::kCPU);
  outcome.energy_series = outcome.energy_series.cpu();
  return outcome;
}

void set_langevin_time_from_user(SimulationSettings& settings, Units units,
                                 std::optional<double> time_step_user,
                                 std::optional<double> friction_user) {
  const bool molecular = units == Units::kcal_mol_angstrom;
  if (time_step_user) {
    settings.time_step = molecular ? *time_step_user / akma_time_fs : *time_step_user;
  }
  if (friction_user) {
    settings.friction = molecular ? *friction_user * akma_time_fs / 1000.0 : *friction_user;
  }
}

}  // namespace psm
