#pragma once
// What the many-chain samplers (Metropolis, Langevin) share: the frames kept, one entry per
// round (all chains at once); the state every sampler has and the loop that advances it; and
// the state file that lets a sampler stop and resume exactly where it was.

#include <torch/types.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "psm/core/communicator.h"
#include "psm/core/random.h"
#include "psm/io/dataset.h"
#include "psm/systems/potential.h"

namespace psm {

/// Kept frames of C chains. Round r holds one frame of every chain; flattened frames are in
/// round-major order: frame index = round * C + chain.
struct SampleRecord {
  std::vector<torch::Tensor> positions;  ///< per round [C, N, D] float64
  std::vector<torch::Tensor> energies;   ///< per round [C] float64
  std::vector<torch::Tensor> forces;     ///< per round [C, N, D] float64; empty if not recorded

  int64_t rounds() const { return static_cast<int64_t>(positions.size()); }
  void add(const torch::Tensor& round_positions, const torch::Tensor& round_energies,
           const torch::Tensor& round_forces = {});
  /// Energies of each chain in the order they were kept: [C, T] float64 (T = rounds()).
  torch::Tensor energy_series() const;
  /// The first `frames` frames in round-major order as a dataset of `system` (positions,
  /// energies, and forces when recorded) with the given kT and provenance.
  Dataset to_dataset(const System& system, int64_t frames, double kT,
                     nlohmann::json provenance) const;
};

/// CPU and wall seconds a run has spent in burn-in and sampling, kept in its state files so that
/// a resumed run reports the cost of the whole run, not only of its last part.
struct SamplingTime {
  double cpu_seconds = 0.0;  ///< process CPU time, all threads
  double wall_seconds = 0.0;
};

/// Measures a run that had already spent `before` (zero for a fresh one).
class SamplingClock {
 public:
  explicit SamplingClock(SamplingTime before);
  /// `before` plus the time since construction.
  SamplingTime total() const;

 private:
  SamplingTime before_;
  std::clock_t cpu_start_;
  std::chrono::steady_clock::time_point wall_start_;
};

/// A sampler's resumable state on disk: a JSON header (sampler name, options that must match on
/// resume, counters) and named tensors (positions, kept frames, ...). The samplers' random
/// numbers are counter-based (CounterRandom), so the step count is all of their state.
struct StateFile {
  nlohmann::json header;
  std::map<std::string, torch::Tensor> tensors;

  /// Stores `record` as stacked tensors "kept_positions" [T, C, N, D], "kept_energies" [T, C]
  /// and, when recorded, "kept_forces".
  void put_record(const SampleRecord& record);
  /// The record stored by put_record (empty when T = 0).
  SampleRecord take_record() const;
  /// Stores `time` in the header; read back by take_time (zero in files that predate it).
  void put_time(const SamplingTime& time);
  SamplingTime take_time() const;
  /// The tensor named `name`; throws psm::Error naming `source` when it is missing.
  const torch::Tensor& tensor(const std::string& name, const std::string& source) const;
};

/// The samplers' random numbers, as their state files' fingerprints record them: files of the
/// earlier generator-based samplers are refused rather than continued with other numbers.
inline constexpr const char* kCounterRandom = "counter-splitmix64";

/// The state every many-chain sampler has; each sampler's own state derives from it.
struct ChainState {
  torch::Tensor positions;  ///< [C, N, D] float64, current configuration of each chain
  torch::Tensor energies;   ///< [C] float64, energy of `positions`
  int64_t step = 0;         ///< steps taken by every chain, burn-in included
  SampleRecord kept;        ///< rounds kept after burn-in
  SamplingTime time;        ///< spent so far, earlier runs of a resumed state included
};

/// The chains [begin, end) of a run's C chains that one process advances, when MPI ranks share
/// them out. Samplers draw this share's rows of counter-based random numbers (CounterRandom), so
/// a chain's trajectory is the same whichever process runs it. Default: all chains.
struct ChainShare {
  int64_t begin = 0;
  int64_t end = -1;      ///< -1: the last chain
  Communicator ranks{};  ///< the processes that share the chains, in the order of their blocks

  /// Chains in the share of a run of `chains`; throws psm::Error unless 0 <= begin < end <= chains.
  int64_t count(int64_t chains) const;
  /// This share's rows of `all` [C, ...] (a view).
  torch::Tensor of(const torch::Tensor& all) const;
};

/// When a sampler keeps rounds and writes its state file.
struct ChainSchedule {
  int64_t chains = 1;   ///< chains (trajectories) advanced together
  int64_t burn_in = 0;  ///< steps before the first kept round
  int64_t every = 1;    ///< steps between kept rounds
  int64_t samples = 1;  ///< frames to keep, all chains together (last round may be partial)
  int64_t checkpoint_every = 1;  ///< kept frames between state files (rounded to rounds)
};

/// What one sampler does in the loop of run_chains.
struct ChainSteps {
  /// One step of every chain (increments state.step); returns the values the progress bar shows.
  std::function<std::vector<std::pair<std::string, double>>()> advance;
  std::function<void()> keep;  ///< adds the current round to state.kept (and any extras)
  std::function<void()> save;  ///< writes the state file; empty when there is none
  /// Checks the state after the last step, before the final state file; may throw. Optional.
  std::function<void()> finish{};
};

/// Advances `state` with `steps` until it holds ceil(samples / chains) rounds, keeping a round
/// every `every` steps after burn-in and saving every checkpoint_every frames and (after
/// steps.finish) at the end;
/// a progress bar named `label` when `progress`. Continuing a saved state keeps the same rounds
/// as one uninterrupted run.
void run_chains(ChainState& state, const ChainSchedule& schedule, const ChainSteps& steps,
                const std::string& label, bool progress);

/// Throws psm::Error "<sampler>: starting positions must have shape [C, N, D], got [...]" unless
/// `positions` is [chains, N, D] for `system`.
void check_start_shape(const System& system, const torch::Tensor& positions, int64_t chains,
                       const std::string& sampler);

/// Writes `state` atomically (a LibTorch archive; the header is stored as a JSON string).
void save_state_file(const std::filesystem::path& path, const StateFile& state);

/// Reads a file written by save_state_file. Throws psm::Error naming the file when it is
/// missing or unreadable. Its tensors are put on `device`.
StateFile load_state_file(const std::filesystem::path& path, torch::Device device = torch::kCPU);

/// save_state_file of the chains that `share.ranks` advance together: each tensor's chain rows
/// (axis 1 of the kept rounds "kept_*", axis 0 of the others) gathered on rank 0, which writes
/// the file one process would have
/// written; the CPU seconds are summed over the ranks. Every rank must call it.
void save_shared_state_file(const std::filesystem::path& path, const StateFile& state,
                            const ChainShare& share);

/// load_state_file keeping `share`'s chain rows, so that a state file resumes on any number of
/// ranks; the CPU seconds spent so far are counted on rank 0 alone.
StateFile load_shared_state_file(const std::filesystem::path& path, torch::Device device,
                                 const ChainShare& share);

/// A state file of `state`: header `fingerprint` plus the step and the time spent; tensors
/// positions, energies and the kept rounds. Samplers add their own tensors.
StateFile chain_state_file(const ChainState& state, nlohmann::json fingerprint);

/// Reads back what chain_state_file stored into `state`, after checking that the file was made
/// with `fingerprint` (check_state_matches). Throws psm::Error naming `source`.
void read_chain_state(const StateFile& file, const nlohmann::json& fingerprint,
                      const std::string& source, ChainState& state);

/// Throws psm::Error naming `source` when a key of `expected` has a different value in `saved`
/// (a state file resumed with options it was not made with).
void check_state_matches(const nlohmann::json& saved, const nlohmann::json& expected,
                         const std::string& source);

}  // namespace psm
