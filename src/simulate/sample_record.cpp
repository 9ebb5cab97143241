#include "psm/simulate/sample_record.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/serialize.h>

#include "psm/core/atomic_file.h"
#include "psm/core/error.h"
#include "psm/core/progress.h"

namespace psm {

void SampleRecord::add(const torch::Tensor& round_positions, const torch::Tensor& round_energies,
                       const torch::Tensor& round_forces) {
  positions.push_back(round_positions);
  energies.push_back(round_energies);
  if (round_forces.defined()) forces.push_back(round_forces);
}

torch::Tensor SampleRecord::energy_series() const {
  check(!energies.empty(), "sample record: no frames kept yet");
  return torch::stack(energies, 1);
}

Dataset SampleRecord::to_dataset(const System& system, int64_t frames, double kT,
                                 nlohmann::json provenance) const {
  check(rounds() > 0, "sample record: no frames kept yet");
  const int64_t chains = positions.front().size(0);
  check(frames > 0 && frames <= rounds() * chains,
        fmt::format("sample record: asked for {} frames, {} kept", frames, rounds() * chains));
  // Round-major flattening: [T, C, ...] -> [T * C, ...].
  auto first = [frames](const std::vector<torch::Tensor>& rounds) {
    return torch::cat(rounds, 0).slice(0, 0, frames).contiguous();
  };
  Dataset dataset;
  dataset.positions = first(positions);
  dataset.energies = first(energies);
  if (!forces.empty()) dataset.forces = first(forces);
  dataset.species = system.species();
  dataset.units = system.units();
  dataset.kT = kT;
  dataset.system = system.spec();
  dataset.provenance = std::move(provenance);
  return dataset;
}

void StateFile::put_record(const SampleRecord& record) {
  if (record.rounds() == 0) return;
  tensors["kept_positions"] = torch::stack(record.positions);
  tensors["kept_energies"] = torch::stack(record.energies);
  if (!record.forces.empty()) tensors["kept_forces"] = torch::stack(record.forces);
}

SampleRecord StateFile::take_record() const {
  SampleRecord record;
  auto unstack = [](const torch::Tensor& stacked) {
    std::vector<torch::Tensor> rounds;
    for (const auto& round : stacked.unbind(0)) rounds.push_back(round.contiguous());
    return rounds;
  };
  if (tensors.contains("kept_positions")) {
    record.positions = unstack(tensors.at("kept_positions"));
    record.energies = unstack(tensors.at("kept_energies"));
  }
  if (tensors.contains("kept_forces")) record.forces = unstack(tensors.at("kept_forces"));
  return record;
}

SamplingClock::SamplingClock(SamplingTime before)
    : before_(before), cpu_start_(std::clock()), wall_start_(std::chrono::steady_clock::now()) {}

SamplingTime SamplingClock::total() const {
  const double cpu =
      static_cast<double>(std::clock() - cpu_start_) / static_cast<double>(CLOCKS_PER_SEC);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start_).count();
  return {.cpu_seconds = before_.cpu_seconds + cpu, .wall_seconds = before_.wall_seconds + wall};
}

void StateFile::put_time(const SamplingTime& time) {
  header["sampling_cpu_seconds"] = time.cpu_seconds;
  header["sampling_wall_seconds"] = time.wall_seconds;
}

SamplingTime StateFile::take_time() const {
  return {.cpu_seconds = header.value("sampling_cpu_seconds", 0.0),
          .wall_seconds = header.value("sampling_wall_seconds", 0.0)};
}

const torch::Tensor& StateFile::tensor(const std::string& name, const std::string& source) const {
  auto it = tensors.find(name);
  check(it != tensors.end(), fmt::format("{}: state file has no '{}'", source, name));
  return it->second;
}

int64_t ChainShare::count(int64_t chains) const {
  const int64_t last = end < 0 ? chains : end;
  check(0 <= begin && begin < last && last <= chains,
        fmt::format("chain share [{}, {}) of {} chains is empty or out of range", begin, last,
                    chains));
  return last - begin;
}

torch::Tensor ChainShare::of(const torch::Tensor& all) const {
  return all.slice(0, begin, end < 0 ? all.size(0) : end);
}

void run_chains(ChainState& state, const ChainSchedule& schedule, const ChainSteps& steps,
                const std::string& label, bool progress) {
  const int64_t rounds = (schedule.samples + schedule.chains - 1) / schedule.chains;
  const int64_t checkpoint_rounds =
      std::max<int64_t>(1, schedule.checkpoint_every / schedule.chains);
  const SamplingClock clock(state.time);
  ProgressBar bar(label, schedule.burn_in + rounds * schedule.every, progress);
  while (state.kept.rounds() < rounds) {
    const auto shown = steps.advance();
    const int64_t production = state.step - schedule.burn_in;
    if (production > 0 && production % schedule.every == 0) {
      steps.keep();
      if (steps.save && state.kept.rounds() % checkpoint_rounds == 0) {
        state.time = clock.total();
        steps.save();
      }
    }
    bar.update(state.step, shown);
  }
  bar.finish();
  state.time = clock.total();
  if (steps.finish) steps.finish();
  if (steps.save) steps.save();
}

void check_start_shape(const System& system, const torch::Tensor& positions, int64_t chains,
                       const std::string& sampler) {
  check(positions.dim() == 3 && positions.size(0) == chains &&
            positions.size(1) == system.num_atoms() && positions.size(2) == system.dim(),
        fmt::format("{}: starting positions must have shape [{}, {}, {}], got [{}]", sampler,
                    chains, system.num_atoms(), system.dim(), fmt::join(positions.sizes(), ", ")));
}

StateFile chain_state_file(const ChainState& state, nlohmann::json fingerprint) {
  StateFile file;
  file.header = std::move(fingerprint);
  file.header["step"] = state.step;
  file.tensors = {{"positions", state.positions}, {"energies", state.energies}};
  file.put_record(state.kept);
  file.put_time(state.time);
  return file;
}

void read_chain_state(const StateFile& file, const nlohmann::json& fingerprint,
                      const std::string& source, ChainState& state) {
  check_state_matches(file.header, fingerprint, source);
  state.positions = file.tensor("positions", source);
  state.energies = file.tensor("energies", source);
  state.step = file.header.value("step", int64_t{0});
  state.kept = file.take_record();
  state.time = file.take_time();
}

void save_state_file(const std::filesystem::path& path, const StateFile& state) {
  torch::serialize::OutputArchive archive;
  archive.write("header", c10::IValue(state.header.dump()));
  for (const auto& [name, tensor] : state.tensors) archive.write("tensor." + name, tensor);
  write_atomically(path, [&](const std::filesystem::path& tmp) { archive.save_to(tmp.string()); });
}

namespace {

/// The axis along which a state file's tensor `name` holds one row per chain: 1 for the kept
/// rounds [T, C, ...], 0 for the rest.
int64_t chain_axis(const std::string& name) { return name.starts_with("kept_") ? 1 : 0; }

}  // namespace

void save_shared_state_file(const std::filesystem::path& path, const StateFile& state,
                            const ChainShare& share) {
  const Communicator& ranks = share.ranks;
  if (ranks.size() == 1) return save_state_file(path, state);
  StateFile all{.header = state.header, .tensors = {}};
  // std::map: every rank visits the same names in the same order, as the collectives need.
  for (const auto& [name, tensor] : state.tensors) {
    const int64_t axis = chain_axis(name);
    const torch::Tensor gathered = ranks.gather(tensor.cpu().movedim(axis, 0).contiguous());
    if (ranks.is_root()) all.tensors[name] = gathered.movedim(0, axis).contiguous();
  }
  SamplingTime time = state.take_time();
  time.cpu_seconds =
      ranks.allreduce_sum(torch::tensor(time.cpu_seconds, torch::kFloat64)).item<double>();
  all.put_time(time);
  if (ranks.is_root()) save_state_file(path, all);
}

StateFile load_shared_state_file(const std::filesystem::path& path, torch::Device device,
                                 const ChainShare& share) {
  StateFile state = load_state_file(path, device);
  if (share.ranks.size() == 1) return state;
  for (auto& [name, tensor] : state.tensors) {
    const int64_t axis = chain_axis(name);
    tensor = share.of(tensor.movedim(axis, 0)).movedim(0, axis).contiguous();
  }
  if (!share.ranks.is_root()) {
    state.put_time({.cpu_seconds = 0, .wall_seconds = state.take_time().wall_seconds});
  }
  return state;
}

StateFile load_state_file(const std::filesystem::path& path, torch::Device device) {
  const std::string source = path.string();
  check(std::filesystem::is_regular_file(path), fmt::format("{}: no such state file", source));
  StateFile state;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(source, device);
    c10::IValue header;
    archive.read("header", header);
    state.header = nlohmann::json::parse(header.toStringRef());
    for (const auto& key : archive.keys()) {
      if (!key.starts_with("tensor.")) continue;
      torch::Tensor tensor;
      archive.read(key, tensor);
      state.tensors[key.substr(7)] = tensor;
    }
  } catch (const c10::Error& e) {
    const std::string reason = e.what_without_backtrace();
    throw Error(
        fmt::format("{}: not a psm state file ({})", source, reason.substr(0, reason.find('\n'))));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: state file header is not valid JSON ({})", source, e.what()));
  } catch (const std::exception& e) {
    // TorchScript reports a LibTorch archive of another kind (a training checkpoint) with a
    // multi-line error that names no file.
    const std::string reason = e.what();
    throw Error(fmt::format(
        "{}: not a psm simulation state file (one written by `psm simulate --checkpoint`): {}",
        source, reason.substr(0, reason.find('\n'))));
  }
  return state;
}

void check_state_matches(const nlohmann::json& saved, const nlohmann::json& expected,
                         const std::string& source) {
  for (const auto& [key, value] : expected.items()) {
    check(saved.contains(key) && saved[key] == value,
          fmt::format("{}: state was made with {} = {}, options now say {}", source, key,
                      saved.contains(key) ? saved[key].dump() : "nothing", value.dump()));
  }
}

}  // namespace psm
