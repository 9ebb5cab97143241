// psm: thin dispatcher over the command registry.

#include <torch/torch.h>

#include <cstdio>
#include <thread>

#include "psm/cli/command.h"
#include "psm/cli/validators.h"
#include "psm/core/allocator.h"
#include "psm/core/error.h"

int main(int argc, char** argv) {
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
  GlobalOptions global;
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
    return app.exit(e);
  }
  const int threads =
      global.threads > 0 ? global.threads : static_cast<int>(std::thread::hardware_concurrency());
  torch::set_num_threads(std::max(1, threads));

  for (auto& [sub, command] : commands) {
    if (!sub->parsed()) continue;
    try {
      return command->run(global);
    } catch (const psm::Error& e) {
      std::fprintf(stderr, "psm %s: error: %s\n", sub->get_name().c_str(), e.what());
      if (global.verbose) std::fprintf(stderr, "  at %s\n", e.where().c_str());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "psm %s: error: %s\n", sub->get_name().c_str(), e.what());
      return 1;
    }
  }
  return 1;
}
