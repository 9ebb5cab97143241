#include "psm/simulate/metropolis.h"

#include <fmt/format.h>

#include <cmath>

#include "psm/core/error.h"
#include "psm/core/progress.h"
#include "psm/core/random.h"
#include "simulate/internal/adaptive_step.h"

namespace psm {

namespace {

/// Stream of Metropolis proposals and acceptance tests (see psm::CounterRandom).
constexpr uint64_t metropolis_stream = 1;

}  // namespace

void MetropolisOptions::validate() const {
  check(std::isfinite(kT) && kT > 0, fmt::format("metropolis: kT must be positive, got {}", kT));
  check(chains > 0, fmt::format("metropolis: chains must be positive, got {}", chains));
  check(burn_in >= 0, fmt::format("metropolis: burn_in must be >= 0, got {}", burn_in));
  check(thin > 0, fmt::format("metropolis: thin must be positive, got {}", thin));
  check(samples > 0, fmt::format("metropolis: samples must be positive, got {}", samples));
  check(std::isfinite(initial_step) && initial_step > 0,
        fmt::format("metropolis: initial_step must be positive, got {}", initial_step));
  check(target_acceptance > 0 && target_acceptance < 1,
        fmt::format("metropolis: target_acceptance must be in (0, 1), got {}", target_acceptance));
  check(adaptation_exponent > 0.5 && adaptation_exponent <= 1,
        fmt::format("metropolis: adaptation_exponent must be in (0.5, 1], got {}",
                    adaptation_exponent));
  check(checkpoint_every > 0,
        fmt::format("metropolis: checkpoint_every must be positive, got {}", checkpoint_every));
  share.count(chains);
}

MetropolisSampler::MetropolisSampler(const System& system, MetropolisOptions options)
    : system_(system), options_(std::move(options)), random_(options_.seed, metropolis_stream) {
  options_.validate();
}

MetropolisState MetropolisSampler::start(const torch::Tensor& positions) const {
  check_start_shape(system_, positions, options_.chains, "metropolis");
  const int64_t chains = options_.share.count(options_.chains);
  MetropolisState state;
  state.positions = options_.share.of(positions).to(torch::kFloat64).contiguous();
  state.energies = system_.evaluate(state.positions, {.forces = false}).energy;
  check(torch::isfinite(state.energies).all().item<bool>(),
        "metropolis: a starting configuration has a non-finite energy");
  const auto options = state.energies.options();
  state.log_step = torch::full({chains}, std::log(options_.initial_step), options);
  state.accepted = torch::zeros({chains}, options.dtype(torch::kInt64));
  return state;
}

double MetropolisSampler::step(MetropolisState& state) const {
  const auto& x = state.positions;
  const int64_t chains = x.size(0), per_chain = x.size(1) * x.size(2);
  // Step s draws 2s (proposals) and 2s + 1 (acceptance tests), this process's chains only; the
  // numbers are made on the CPU and moved, so CPU and CUDA runs match.
  const uint64_t draw = 2 * static_cast<uint64_t>(state.step);
  const int64_t first = options_.share.begin;
  auto noise = random_.normal(draw, first * per_chain, chains * per_chain)
                   .view({chains, x.size(1), x.size(2)})
                   .to(x.device()) *
               state.log_step.exp().view({chains, 1, 1});
  if (options_.com_free) noise = noise - noise.mean(1, /*keepdim=*/true);
  const auto proposal = x + noise;
  const auto proposed_energies = system_.evaluate(proposal, {.forces = false}).energy;
  // NaN energies (overflowing overlaps) compare false below: the move is rejected.
  const auto log_ratio = (state.energies - proposed_energies) / options_.kT;
  const auto uniform = random_.uniform(draw + 1, first, chains).to(x.device());
  const auto accept = uniform.log() < log_ratio;
  state.positions = torch::where(accept.view({chains, 1, 1}), proposal, x);
  state.energies = torch::where(accept, proposed_energies, state.energies);

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

void MetropolisSampler::run(MetropolisState& state) const {
  // Display only: a moving average of the acceptance over about 100 steps.
  double recent_acceptance = options_.target_acceptance;
  const ChainSteps steps{
      .advance =
          [&] {
            recent_acceptance += 0.01 * (step(state) - recent_acceptance);
            return std::vector<std::pair<std::string, double>>{
                {"acc", recent_acceptance}, {"step", state.log_step.exp().mean().item<double>()}};
          },
      .keep = [&] { state.kept.add(state.positions, state.energies); },
      .save = options_.checkpoint.empty() ? std::function<void()>()
                                          : [&] { save(options_.checkpoint, state); }};
  run_chains(state,
             {.chains = options_.chains,
              .burn_in = options_.burn_in,
              .every = options_.thin,
              .samples = options_.samples,
              .checkpoint_every = options_.checkpoint_every},
             steps, "mcmc", options_.progress);
}

double MetropolisSampler::acceptance(const MetropolisState& state) const {
  return adaptive_step::acceptance(state.accepted, state.step, options_.burn_in);
}

Dataset MetropolisSampler::dataset(const MetropolisState& state) const {
  check(state.kept.rounds() * options_.chains >= options_.samples,
        fmt::format("metropolis: {} frames kept, {} asked for; run() first",
                    state.kept.rounds() * options_.chains, options_.samples));
  Dataset dataset =
      state.kept.to_dataset(system_, options_.samples, options_.kT, provenance(state));
  if (options_.forces) {
    dataset.forces = evaluate_forces(system_, dataset.positions, 1024, options_.progress);
  }
  return dataset;
}

nlohmann::json MetropolisSampler::fingerprint() const {
  return {{"sampler", "metropolis"},
          {"system", system_.spec()},
          {"num_atoms", system_.num_atoms()},
          {"dim", system_.dim()},
          {"kT", options_.kT},
          {"chains", options_.chains},
          {"burn_in", options_.burn_in},
          {"thin", options_.thin},
          {"initial_step", options_.initial_step},
          {"target_acceptance", options_.target_acceptance},
          {"adaptation_exponent", options_.adaptation_exponent},
          {"com_free", options_.com_free},
          {"seed", options_.seed},
          {"random", kCounterRandom}};
}

nlohmann::json MetropolisSampler::provenance(const MetropolisState& state) const {
  auto record = fingerprint();
  record.erase("system");
  record.update({{"steps", state.step},
                 {"acceptance", acceptance(state)},
                 {"step_size", adaptive_step::summary(state.log_step)},
                 {"frame_order", "round-major: frame = round * chains + chain"}});
  return record;
}

void MetropolisSampler::save(const std::filesystem::path& path,
                             const MetropolisState& state) const {
  StateFile file = chain_state_file(state, fingerprint());
  adaptive_step::put(file, state.log_step, state.accepted);
  save_shared_state_file(path, file, options_.share);
}

MetropolisState MetropolisSampler::load(const std::filesystem::path& path,
                                        torch::Device device) const {
  const std::string source = path.string();
  const StateFile file = load_shared_state_file(path, device, options_.share);
  MetropolisState state;
  read_chain_state(file, fingerprint(), source, state);
  adaptive_step::take(file, source, state.log_step, state.accepted);
  return state;
}

torch::Tensor evaluate_forces(const System& system, const torch::Tensor& positions, int64_t chunk,
                              bool progress) {
  const int64_t frames = positions.size(0);
  ProgressBar bar("forces", frames, progress && frames > chunk);
  std::vector<torch::Tensor> forces;
  for (int64_t begin = 0; begin < frames; begin += chunk) {
    const auto part = positions.slice(0, begin, std::min(frames, begin + chunk));
    forces.push_back(system.evaluate(part, {.forces = true}).forces);
    bar.update(begin + part.size(0));
  }
  bar.finish();
  return torch::cat(forces, 0);
}

}  // namespace psm
