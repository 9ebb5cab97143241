// `psm data SUBCOMMAND`: inspect (and, later, prepare) datasets.

#include <fmt/format.h>

#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "psm/cli/commands.h"
#include "psm/core/elements.h"
#include "psm/io/dataset.h"

namespace psm::cli {

namespace {

/// `psm data info FILE`: what a dataset holds, in one screen.
class DataInfoCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    app.add_option("file", file_, "Dataset: psm/rMD17/sGDML .npz or extended XYZ")->required();
    app.add_option("--temperature", temperature_kelvin_,
                   "Temperature of the data in K (overrides the file or the MD17 default)")
        ->check(CLI::PositiveNumber);
  }

  int run(const GlobalOptions&) override {
    const Dataset data = load_dataset(file_, {.temperature_kelvin = temperature_kelvin_});
    const auto row = [](std::string_view name, const std::string& value) {
      fmt::print("{:<12}{}\n", name, value);
    };
    row("file", file_);
    row("frames", std::to_string(data.num_frames()));
    row("atoms", std::to_string(data.num_atoms()));
    row("dim", std::to_string(data.dim()));
    row("species", chemical_formula(data.species));
    row("units", to_string(data.units));
    row("kT", data.temperature_kelvin
                  ? fmt::format("{:.6g} ({:g} K)", data.kT, *data.temperature_kelvin)
                  : fmt::format("{:.6g}", data.kT));
    if (data.sampled_kT) row("sampled kT", fmt::format("{:.6g}", *data.sampled_kT));
    if (data.has_energies()) {
      const torch::Tensor e = data.energies;
      row("energy", fmt::format("min {:.6f}  mean {:.6f}  max {:.6f}", e.min().item<double>(),
                                e.mean().item<double>(), e.max().item<double>()));
    } else {
      row("energy", "none");
    }
    if (data.has_forces()) {
      const torch::Tensor norm = data.forces.norm(2, -1);  // [F, N] per-atom |F|
      row("|F|",
          fmt::format("min {:.6f}  max {:.6f}  rms {:.6f}", norm.min().item<double>(),
                      norm.max().item<double>(), norm.square().mean().sqrt().item<double>()));
    } else {
      row("|F|", "none");
    }
    if (!data.system.is_null()) row("system", data.system.dump());
    row("provenance", data.provenance.is_null() ? "none" : data.provenance.dump());
    return 0;
  }

 private:
  std::string file_;
  std::optional<double> temperature_kelvin_;
};

/// Registers the subcommands of `psm data`. A sibling (e.g. `subset`) is one more Command
/// class and one more line here.
void register_data_subcommands(CommandRegistry& registry) {
  registry.add("info", "Print frames, species, units, kT, energy and force ranges of a dataset",
               [] { return std::make_unique<DataInfoCommand>(); });
}

/// `psm data`: dispatches to the subcommand that was parsed.
class DataCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    CommandRegistry registry("data subcommand");
    register_data_subcommands(registry);
    app.require_subcommand(1);
    for (const auto& name : registry.names()) {
      auto command = registry.create(name);
      CLI::App* sub = app.add_subcommand(name, registry.summary(name));
      command->configure(*sub);
      subcommands_.emplace_back(sub, std::move(command));
    }
  }

  int run(const GlobalOptions& global) override {
    for (auto& [sub, command] : subcommands_) {
      if (sub->parsed()) return command->run(global);
    }
    return 1;
  }

 private:
  std::vector<std::pair<CLI::App*, std::unique_ptr<Command>>> subcommands_;
};

}  // namespace

std::unique_ptr<Command> make_data_command() { return std::make_unique<DataCommand>(); }

}  // namespace psm::cli
