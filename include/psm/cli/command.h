#pragma once
// Each `psm` subcommand is a small class kept in a registry; main() only dispatches.

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "psm/core/communicator.h"
#include "psm/core/registry.h"

namespace psm::cli {

/// Options shared by every subcommand, set on the top-level `psm` program.
struct GlobalOptions {
  int threads = 0;  ///< intra-op threads; 0 = all cores
  /// Device of training, sampling and simulation: "cpu", "cuda" or "cuda:N" (psm::parse_device)
  std::string device = "cpu";
  bool verbose = false;
  /// The ranks of this run (mpirun / srun); one process otherwise. Rank 0 prints and writes.
  Communicator world{};
};

class Command {
 public:
  virtual ~Command() = default;
  /// Adds this command's options (and sub-subcommands) to `app`.
  virtual void configure(CLI::App& app) = 0;
  /// Runs after parsing; returns the process exit code. Throws psm::Error on bad input.
  virtual int run(const GlobalOptions& global) = 0;
  /// Whether run() shares its work over several MPI ranks (GlobalOptions::world); the commands
  /// that do not refuse to start under more than one rank instead of repeating their work.
  virtual bool runs_on_ranks() const { return false; }
};

using CommandRegistry = Registry<Command>;

/// Registers every built-in subcommand: simulate, data, ...
void register_builtin_commands(CommandRegistry& registry);

}  // namespace psm::cli
