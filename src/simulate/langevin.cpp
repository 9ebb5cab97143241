#include "psm/simulate/langevin.h"

#include <fmt/format.h>

#include <cmath>

#include "psm/core/elements.h"
#include "psm/core/error.h"
#include "psm/core/random.h"

namespace psm {

namespace {

/// Stream of Langevin velocities and thermostat noise (see psm::CounterRandom).
constexpr uint64_t langevin_stream = 2;

/// Draw `draw` of standard normal numbers for `share`'s trajectories: [B, N, D] like `like`, on
/// its device (made on the CPU, so CPU and CUDA runs match).
torch::Tensor standard_normal(const CounterRandom& random, uint64_t draw, const ChainShare& share,
                              const torch::Tensor& like) {
  const int64_t per_trajectory = like.size(1) * like.size(2);
  return random.normal(draw, share.begin * per_trajectory, like.size(0) * per_trajectory)
      .view(like.sizes())
      .to(like.device());
}

}  // namespace

torch::Tensor standard_atomic_masses(const std::vector<int64_t>& species) {
  std::vector<double> masses;
  for (const int64_t z : species) masses.push_back(z == 0 ? 1.0 : element(z).mass);
  return torch::tensor(masses, torch::kFloat64);
}

void LangevinOptions::validate() const {
  check(std::isfinite(kT) && kT > 0, fmt::format("langevin: kT must be positive, got {}", kT));
  check(std::isfinite(time_step) && time_step > 0,
        fmt::format("langevin: time_step must be positive, got {}", time_step));
  check(std::isfinite(friction) && friction >= 0,
        fmt::format("langevin: friction must be >= 0, got {}", friction));
  check(!masses.defined() || (masses.dim() == 1 && (masses > 0).all().item<bool>()),
        "langevin: masses must be a 1-D tensor of positive values");
  check(trajectories > 0,
        fmt::format("langevin: trajectories must be positive, got {}", trajectories));
  check(burn_in >= 0, fmt::format("langevin: burn_in must be >= 0, got {}", burn_in));
  check(record_every > 0,
        fmt::format("langevin: record_every must be positive, got {}", record_every));
  check(samples > 0, fmt::format("langevin: samples must be positive, got {}", samples));
  check(checkpoint_every > 0,
        fmt::format("langevin: checkpoint_every must be positive, got {}", checkpoint_every));
  share.count(trajectories);
}

LangevinSampler::LangevinSampler(const System& system, LangevinOptions options)
    : system_(system), options_(std::move(options)), random_(options_.seed, langevin_stream) {
  options_.validate();
  const int64_t atoms = system_.num_atoms();
  masses_ = options_.masses.defined() ? options_.masses.to(torch::kFloat64)
                                      : torch::ones({atoms}, torch::kFloat64);
  check(masses_.size(0) == atoms,
        fmt::format("langevin: {} masses for a system of {} atoms", masses_.size(0), atoms));
  masses_ = masses_.view({1, atoms, 1});
}

torch::Tensor LangevinSampler::remove_momentum(const torch::Tensor& velocities) const {
  if (!options_.com_free) return velocities;
  const auto masses = masses_.to(velocities.device());
  // v_i - P / M is v conditioned on zero total momentum P for Maxwell-Boltzmann velocities.
  return velocities - (masses * velocities).sum(1, /*keepdim=*/true) / masses.sum();
}

torch::Tensor LangevinSampler::kinetic_energy(const torch::Tensor& velocities) const {
  return 0.5 * (masses_.to(velocities.device()) * velocities.square()).sum({1, 2});
}

LangevinState LangevinSampler::start(const torch::Tensor& positions) const {
  check_start_shape(system_, positions, options_.trajectories, "langevin");
  LangevinState state;
  state.positions = options_.share.of(positions).to(torch::kFloat64).contiguous();
  const auto evaluation = system_.evaluate(state.positions, {.forces = true});
  state.energies = evaluation.energy;
  state.forces = evaluation.forces;
  check(torch::isfinite(state.energies).all().item<bool>() &&
            torch::isfinite(state.forces).all().item<bool>(),
        "langevin: a starting configuration has a non-finite energy or force");
  // Draw 0: the starting velocities; draw s + 1: the noise of step s.
  const auto masses = masses_.to(positions.device());
  state.velocities = remove_momentum(standard_normal(random_, 0, options_.share, state.positions) *
                                     (options_.kT / masses).sqrt());
  return state;
}

void LangevinSampler::step(LangevinState& state) const {
  const double dt = options_.time_step;
  const auto masses = masses_.to(state.positions.device());
  // O step: exact Ornstein-Uhlenbeck update of the velocities over dt.
  const double decay = std::exp(-options_.friction * dt);
  const auto thermal = ((1.0 - decay * decay) * options_.kT / masses).sqrt();

  auto v = state.velocities + 0.5 * dt * state.forces / masses;  // B
  auto x = state.positions + 0.5 * dt * v;                       // A
  const auto noise =
      standard_normal(random_, static_cast<uint64_t>(state.step) + 1, options_.share, v);
  v = remove_momentum(decay * v + thermal * noise);  // O
  state.midstep_velocities = v;
  x = x + 0.5 * dt * v;  // A
  const auto evaluation = system_.evaluate(x, {.forces = true});
  v = v + 0.5 * dt * evaluation.forces / masses;  // B

  state.positions = x;
  state.velocities = v;
  state.forces = evaluation.forces;
  state.energies = evaluation.energy;
  ++state.step;
}

void LangevinSampler::run(LangevinState& state) const {
  const ChainSteps steps{
      .advance =
          [&] {
            step(state);
            return std::vector<std::pair<std::string, double>>{
                {"E", state.energies.mean().item<double>()}};
          },
      .keep =
          [&] {
            state.kept.add(state.positions, state.energies, state.forces);
            state.kinetic.push_back(kinetic_energy(state.midstep_velocities));
          },
      .save = options_.checkpoint.empty() ? std::function<void()>()
                                          : [&] { save(options_.checkpoint, state); },
      .finish =
          [&] {
            check(torch::isfinite(state.energies).all().item<bool>(),
                  fmt::format("langevin: energies became non-finite; time_step {} is too large",
                              options_.time_step));
          }};
  run_chains(state,
             {.chains = options_.trajectories,
              .burn_in = options_.burn_in,
              .every = options_.record_every,
              .samples = options_.samples,
              .checkpoint_every = options_.checkpoint_every},
             steps, "langevin", options_.progress);
}

torch::Tensor LangevinSampler::kinetic_temperatures(const LangevinState& state) const {
  if (state.kinetic.empty()) return torch::zeros({options_.trajectories, 0}, torch::kFloat64);
  const int64_t dof = system_.num_atoms() * system_.dim() - (options_.com_free ? system_.dim() : 0);
  return 2.0 * torch::stack(state.kinetic, 1).to(torch::kFloat64).cpu() / static_cast<double>(dof);
}

double LangevinSampler::kinetic_temperature(const LangevinState& state) const {
  if (state.kinetic.empty()) return std::nan("");
  return kinetic_temperatures(state).mean().item<double>();
}

Dataset LangevinSampler::dataset(const LangevinState& state) const {
  check(state.kept.rounds() * options_.trajectories >= options_.samples,
        fmt::format("langevin: {} frames recorded, {} asked for; run() first",
                    state.kept.rounds() * options_.trajectories, options_.samples));
  return state.kept.to_dataset(system_, options_.samples, options_.kT, provenance(state));
}

nlohmann::json LangevinSampler::fingerprint() const {
  const auto masses = masses_.flatten().contiguous();
  return {{"sampler", "langevin"},
          {"system", system_.spec()},
          {"num_atoms", system_.num_atoms()},
          {"dim", system_.dim()},
          {"kT", options_.kT},
          {"time_step", options_.time_step},
          {"friction", options_.friction},
          {"masses", std::vector<double>(masses.data_ptr<double>(),
                                         masses.data_ptr<double>() + masses.numel())},
          {"trajectories", options_.trajectories},
          {"burn_in", options_.burn_in},
          {"record_every", options_.record_every},
          {"com_free", options_.com_free},
          {"seed", options_.seed},
          {"random", kCounterRandom}};
}

nlohmann::json LangevinSampler::provenance(const LangevinState& state) const {
  auto record = fingerprint();
  record.erase("system");
  record["sampler"] = "langevin-baoab";
  record.update({{"steps", state.step},
                 {"kinetic_temperature", kinetic_temperature(state)},
                 {"frame_order", "round-major: frame = round * trajectories + trajectory"}});
  return record;
}

void LangevinSampler::save(const std::filesystem::path& path, const LangevinState& state) const {
  StateFile file = chain_state_file(state, fingerprint());
  file.tensors["velocities"] = state.velocities;
  file.tensors["forces"] = state.forces;
  if (!state.kinetic.empty()) file.tensors["kept_kinetic"] = torch::stack(state.kinetic);
  save_shared_state_file(path, file, options_.share);
}

LangevinState LangevinSampler::load(const std::filesystem::path& path, torch::Device device) const {
  const std::string source = path.string();
  const StateFile file = load_shared_state_file(path, device, options_.share);
  LangevinState state;
  read_chain_state(file, fingerprint(), source, state);
  state.velocities = file.tensor("velocities", source);
  state.forces = file.tensor("forces", source);
  if (file.tensors.contains("kept_kinetic")) {
    for (const auto& round : file.tensors.at("kept_kinetic").unbind(0)) {
      state.kinetic.push_back(round.contiguous());
    }
  }
  return state;
}

}  // namespace psm
