// psm: thin dispatcher over the command registry.

#include <torch/torch.h>

#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <thread>

#include "psm/cli/command.h"
#include "psm/cli/validators.h"
#include "psm/core/allocator.h"
#include "psm/core/communicator.h"
#include "psm/core/error.h"

int main(int argc, char** argv) {
  // Under mpirun / srun: this rank's place in the run; otherwise one process.
  const psm::MpiSession session(argc, argv);
  psm::keep_freed_memory_for_reuse();
  using namespace psm::cli;
  CLI::App app{
      "psm: sample Boltzmann distributions of atomic systems with diffusion models trained by "
      "Potential Score Matching"};
  app.require_subcommand(1);
  // Parse errors are one line, like every other psm error.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("psm: error: ") + e.what() + " (run with --help for usage)\n";
  });
  GlobalOptions global{.world = session.world()};
  app.add_option("--threads", global.threads, "CPU threads for tensor work (0 = all cores)")
      ->check(psm::cli::non_negative_number);
  app.add_option("--device", global.device,
                 "Where training, sampling and simulation run: cpu, cuda or cuda:N")
      ->capture_default_str();
  app.add_flag("-v,--verbose", global.verbose, "More output; source locations on errors");

  CommandRegistry registry("command");
  register_builtin_commands(registry);
  std::vector<std::pair<CLI::App*, std::unique_ptr<Command>>> commands;
  for (const auto& name : registry.names()) {
    auto command = registry.create(name);
    CLI::App* sub = app.add_subcommand(name, registry.summary(name));
    command->configure(*sub);
    commands.emplace_back(sub, std::move(command));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // A rank that stops here must stop the others, which would wait for it.
    const int code = app.exit(e);
    if (code != 0 && session.world().size() > 1) session.abort(code);
    return code;
  }
  const int threads =
      global.threads > 0 ? global.threads : static_cast<int>(std::thread::hardware_concurrency());
  torch::set_num_threads(std::max(1, threads));

  // One rank's failure ends every rank (the others may wait in a collective); rank 0 writes
  // its outputs atomically, so none is left half-written.
  const auto fail = [&](const std::string& command, const char* message, const char* where) {
    const std::string rank =
        global.world.size() > 1 ? fmt::format(" (rank {})", global.world.rank()) : "";
    std::fprintf(stderr, "psm %s: error%s: %s\n", command.c_str(), rank.c_str(), message);
    if (global.verbose && where != nullptr) std::fprintf(stderr, "  at %s\n", where);
    if (global.world.size() > 1) session.abort(1);
    return 1;
  };
  for (auto& [sub, command] : commands) {
    if (!sub->parsed()) continue;
    try {
      psm::check(global.world.size() == 1 || command->runs_on_ranks(),
                 fmt::format("runs as one process (several MPI ranks share only psm simulate, "
                             "sample, train and run); started on {} ranks",
                             global.world.size()));
      return command->run(global);
    } catch (const psm::Error& e) {
      return fail(sub->get_name(), e.what(), e.where().c_str());
    } catch (const std::exception& e) {
      return fail(sub->get_name(), e.what(), nullptr);
    }
  }
  return 1;
}
