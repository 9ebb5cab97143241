#include "psm/simulate/hamiltonian.h"

#include <fmt/format.h>

#include <cmath>

#include "psm/core/error.h"
#include "psm/core/random.h"
#include "simulate/internal/adaptive_step.h"

namespace psm {

namespace {

/// Stream of momenta, time-step factors and acceptance tests (see psm::CounterRandom).
constexpr uint64_t hamiltonian_stream = 4;

/// Each trajectory's time step is the chain's times a factor uniform in [1 - j, 1 + j].
constexpr double kStepJitter = 0.2;

}  // namespace

void HamiltonianOptions::validate() const {
  const auto fail = [](const char* what, const auto& value) {
    return fmt::format("hmc: {} {}", what, value);
  };
  check(std::isfinite(kT) && kT > 0, fail("kT must be positive, got", kT));
  check(chains > 0, fail("chains must be positive, got", chains));
  check(burn_in >= 0, fail("burn_in must be >= 0, got", burn_in));
  check(thin > 0, fail("thin must be positive, got", thin));
  check(samples > 0, fail("samples must be positive, got", samples));
  check(leapfrog_steps > 0, fail("leapfrog_steps must be positive, got", leapfrog_steps));
  check(std::isfinite(initial_step) && initial_step > 0,
        fail("initial time step must be positive, got", initial_step));
  check(target_acceptance > 0 && target_acceptance < 1,
        fail("target_acceptance must be in (0, 1), got", target_acceptance));
  check(adaptation_exponent > 0.5 && adaptation_exponent <= 1,
        fail("adaptation_exponent must be in (0.5, 1], got", adaptation_exponent));
  check(checkpoint_every > 0, fail("checkpoint_every must be positive, got", checkpoint_every));
  share.count(chains);
}

HamiltonianSampler::HamiltonianSampler(const System& system, HamiltonianOptions options)
    : system_(system), options_(std::move(options)), random_(options_.seed, hamiltonian_stream) {
  options_.validate();
}

HamiltonianState HamiltonianSampler::start(const torch::Tensor& positions) const {
  check_start_shape(system_, positions, options_.chains, "hmc");
  const int64_t chains = options_.share.count(options_.chains);
  HamiltonianState state;
  state.positions = options_.share.of(positions).to(torch::kFloat64).contiguous();
  const Evaluation start = system_.evaluate(state.positions, {.forces = true});
  state.energies = start.energy;
  state.forces = start.forces;
  check(torch::isfinite(state.energies).all().item<bool>() &&
            torch::isfinite(state.forces).all().item<bool>(),
        "hmc: a starting configuration has a non-finite energy or force");
  const auto options = state.energies.options();
  state.log_step = torch::full({chains}, std::log(options_.initial_step), options);
  state.accepted = torch::zeros({chains}, options.dtype(torch::kInt64));
  return state;
}

double HamiltonianSampler::step(HamiltonianState& state) const {
  const auto& x0 = state.positions;
  const int64_t chains = x0.size(0), per_chain = x0.size(1) * x0.size(2);
  // Step s draws 3s (momenta), 3s + 1 (time-step factors) and 3s + 2 (acceptance tests), this
  // process's chains only, on the CPU, so CPU and CUDA runs and any split into ranks match.
  const uint64_t draw = 3 * static_cast<uint64_t>(state.step);
  const int64_t first = options_.share.begin;
  const auto device = x0.device();
  auto momenta = random_.normal(draw, first * per_chain, chains * per_chain)
                     .view({chains, x0.size(1), x0.size(2)})
                     .to(device) *
                 std::sqrt(options_.kT);
  if (options_.com_free) momenta = momenta - momenta.mean(1, /*keepdim=*/true);
  const auto factor =
      1.0 + kStepJitter * (2.0 * random_.uniform(draw + 1, first, chains).to(device) - 1.0);
  const auto dt = (state.log_step.exp() * factor).view({chains, 1, 1});
  const auto kinetic0 = 0.5 * momenta.square().sum({1, 2});

  // Leapfrog (velocity Verlet) with unit masses: volume-preserving and reversible, so the
  // Metropolis test on the total energy makes the chain exact.
  auto x = x0, p = momenta, forces = state.forces;
  torch::Tensor energies;
  for (int64_t i = 0; i < options_.leapfrog_steps; ++i) {
    p = p + 0.5 * dt * forces;
    x = x + dt * p;
    Evaluation end = system_.evaluate(x, {.forces = true});
    forces = end.forces;
    energies = end.energy;
    p = p + 0.5 * dt * forces;
  }
  const auto kinetic = 0.5 * p.square().sum({1, 2});
  // NaN energies (overflowing overlaps) compare false below: the trajectory is rejected.
  const auto log_ratio = (state.energies + kinetic0 - energies - kinetic) / options_.kT;
  const auto uniform = random_.uniform(draw + 2, first, chains).to(device);
  const auto accept = uniform.log() < log_ratio;
  const auto moved = accept.view({chains, 1, 1});
  state.positions = torch::where(moved, x, x0);
  state.forces = torch::where(moved, forces, state.forces);
  state.energies = torch::where(accept, energies, state.energies);

  if (state.step < options_.burn_in) {
    state.log_step =
        adaptive_step::adapted(state.log_step, log_ratio, state.step, options_.adaptation_exponent,
                               options_.target_acceptance);
  } else {
    state.accepted = state.accepted + accept.to(torch::kInt64);
  }
  ++state.step;
  return accept.to(torch::kFloat64).mean().item<double>();
}

void HamiltonianSampler::run(HamiltonianState& state) const {
  // Display only: a moving average of the acceptance over about 100 trajectories.
  double recent_acceptance = options_.target_acceptance;
  const ChainSteps steps{
      .advance =
          [&] {
            recent_acceptance += 0.01 * (step(state) - recent_acceptance);
            return std::vector<std::pair<std::string, double>>{
                {"acc", recent_acceptance}, {"dt", state.log_step.exp().mean().item<double>()}};
          },
      // The forces at the kept positions are known from the trajectory: no labelling pass.
      .keep =
          [&] {
            state.kept.add(state.positions, state.energies,
                           options_.forces ? state.forces : torch::Tensor());
          },
      .save = options_.checkpoint.empty() ? std::function<void()>()
                                          : [&] { save(options_.checkpoint, state); }};
  run_chains(state,
             {.chains = options_.chains,
              .burn_in = options_.burn_in,
              .every = options_.thin,
              .samples = options_.samples,
              .checkpoint_every = options_.checkpoint_every},
             steps, "hmc", options_.progress);
}

double HamiltonianSampler::acceptance(const HamiltonianState& state) const {
  return adaptive_step::acceptance(state.accepted, state.step, options_.burn_in);
}

Dataset HamiltonianSampler::dataset(const HamiltonianState& state) const {
  check(state.kept.rounds() * options_.chains >= options_.samples,
        fmt::format("hmc: {} frames kept, {} asked for; run() first",
                    state.kept.rounds() * options_.chains, options_.samples));
  return state.kept.to_dataset(system_, options_.samples, options_.kT, provenance(state));
}

nlohmann::json HamiltonianSampler::fingerprint() const {
  return {{"sampler", "hmc"},
          {"system", system_.spec()},
          {"num_atoms", system_.num_atoms()},
          {"dim", system_.dim()},
          {"kT", options_.kT},
          {"chains", options_.chains},
          {"burn_in", options_.burn_in},
          {"thin", options_.thin},
          {"leapfrog_steps", options_.leapfrog_steps},
          {"initial_step", options_.initial_step},
          {"target_acceptance", options_.target_acceptance},
          {"adaptation_exponent", options_.adaptation_exponent},
          {"com_free", options_.com_free},
          {"seed", options_.seed},
          {"random", kCounterRandom}};
}

nlohmann::json HamiltonianSampler::provenance(const HamiltonianState& state) const {
  auto record = fingerprint();
  record.erase("system");
  record.update({{"steps", state.step},
                 {"acceptance", acceptance(state)},
                 {"time_step", adaptive_step::summary(state.log_step)},
                 {"frame_order", "round-major: frame = round * chains + chain"}});
  return record;
}

void HamiltonianSampler::save(const std::filesystem::path& path,
                              const HamiltonianState& state) const {
  StateFile file = chain_state_file(state, fingerprint());
  adaptive_step::put(file, state.log_step, state.accepted);
  save_shared_state_file(path, file, options_.share);
}

HamiltonianState HamiltonianSampler::load(const std::filesystem::path& path,
                                          torch::Device device) const {
  const std::string source = path.string();
  const StateFile file = load_shared_state_file(path, device, options_.share);
  HamiltonianState state;
  read_chain_state(file, fingerprint(), source, state);
  adaptive_step::take(file, source, state.log_step, state.accepted);
  // The forces are a function of the positions: recomputed, not stored.
  state.forces = system_.evaluate(state.positions, {.forces = true}).forces;
  return state;
}

}  // namespace psm
