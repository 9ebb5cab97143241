// `psm data SUBCOMMAND`: inspect datasets and make the biased or limited training sets of
// METHOD.md.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "psm/cli/commands.h"
#include "psm/cli/validators.h"
#include "psm/core/atomic_file.h"
#include "psm/core/elements.h"
#include "psm/core/error.h"
#include "psm/data/force_check.h"
#include "psm/data/subsets.h"
#include "psm/data/thermal_check.h"
#include "psm/io/dataset.h"
#include "psm/io/smiles.h"
#include "psm/systems/potential.h"

namespace psm::cli {

namespace {

/// `psm data info FILE`: what a dataset holds, in one screen.
class DataInfoCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    app.add_option("file", file_, "Dataset: psm/rMD17/sGDML .npz or extended XYZ")->required();
    app.add_option("--temperature", temperature_kelvin_,
                   "Temperature of the data in K (overrides the file or the MD17 default)")
        ->check(positive_number);
    app.add_option("--labels", labels_,
                   "rMD17 files: recomputed (energies, forces) or original (old_energies, "
                   "old_forces: MD17's, of the potential that sampled the frames)")
        ->check(CLI::IsMember({"recomputed", "original"}));
  }

  int run(const GlobalOptions&) override {
    const Dataset data = load_dataset(file_, {.temperature_kelvin = temperature_kelvin_,
                                              .rmd17_labels = rmd17_labels_from_string(labels_)});
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
      row("energy", fmt::format("min {:.6f}  mean {:.6f}  std {:.6f}  max {:.6f}",
                                e.min().item<double>(), e.mean().item<double>(),
                                e.std(/*unbiased=*/false).item<double>(), e.max().item<double>()));
    } else {
      row("energy", "none");
    }
    if (data.has_forces()) {
      const torch::Tensor norm = data.forces.norm(2, -1);  // [F, N] per-atom |F|
      row("|F|",
          fmt::format("min {:.6f}  max {:.6f}  rms {:.6f}", norm.min().item<double>(),
                      norm.max().item<double>(), norm.square().mean().sqrt().item<double>()));
      if (data.num_frames() >= 2) {
        row("force check", describe_force_check(virial_temperature(data), data.frames_kT()));
        if (data.is_molecular()) {
          // Stiff stretches the whole-frame virial averages away: PSM follows the forces, so
          // bonds hotter or colder than the forces imply come out narrower or wider than the
          // frames'.
          try {
            const std::vector<std::string> lines =
                describe_thermal_check(check_thermal_equilibrium(data));
            for (size_t k = 0; k < lines.size(); ++k) row(k == 0 ? "bond kT" : "", lines[k]);
          } catch (const Error& error) {
            row("bond kT", fmt::format("not computed: {}", error.what()));
          }
        }
      }
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
  std::string labels_ = "recomputed";
};

/// `psm data subset`: writes a training set made from a larger one (limited, temperature-,
/// basin- or selection-biased), recording the step in the output's provenance.
class DataSubsetCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    app.add_option("--in", in_, "Source dataset")->required();
    app.add_option("--out", out_, "Output dataset (.npz, .xyz)")->required();
    app.add_option("--kind", kind_, fmt::format("{}", fmt::join(subset_kind_names(), " | ")))
        ->required()
        ->check(CLI::IsMember(subset_kind_names()));
    app.add_option("--frames", frames_, "Frames to keep (limited, temperature, basin)")
        ->check(positive_number);
    app.add_option("--seed", seed_, "Random seed")->capture_default_str()->check(seed_value);
    app.add_option("--target-kT", target_kT_,
                   "temperature: the k_B T the training is for (the source's kT is the "
                   "sampled one)")
        ->check(positive_number);
    app.add_option("--energy-max", energy_max_, "energy: keep frames with energy <= this");
    app.add_option("--quantile", quantile_, "energy: keep the lowest fraction of frames")
        ->check(unit_interval);
    app.add_option("--atoms", atoms_, "torsion: four atom indices (0-based) a b c d")->expected(4);
    app.add_option("--window", window_, "torsion: low high, degrees (low > high wraps)")
        ->expected(2);
    app.add_option("--trajectories", basin_.trajectories,
                   "basin: short trajectories started in the minimum")
        ->capture_default_str()
        ->check(positive_number);
    app.add_option("--thin", basin_.thin, "basin: MCMC steps between frames")
        ->capture_default_str()
        ->check(positive_number);
    app.add_option("--start-frame", start_frame_,
                   "basin: frame to minimise (default: lowest energy)");
    app.add_option("--kT-data", kT_data_, "basin: sampling k_B T (default: the source's kT)")
        ->check(positive_number);
  }

  int run(const GlobalOptions&) override {
    check_distinct_files(in_, out_);
    check_dataset_output(out_);
    const Dataset source = load_dataset(in_);
    const Dataset subset = make_subset(source);
    save_dataset(out_, subset);
    fmt::print("{}: {} of {} frames ({}), kT {:.6g}{}\n", out_, subset.num_frames(),
               source.num_frames(), kind_, subset.kT,
               subset.sampled_kT ? fmt::format(", sampled at kT {:.6g}", *subset.sampled_kT) : "");
    return 0;
  }

 private:
  Dataset make_subset(const Dataset& source) const {
    switch (subset_kind_from_string(kind_)) {
      case SubsetKind::limited:
        check(frames_.has_value(), "--kind limited needs --frames");
        return limited_subset(source, *frames_, seed_);
      case SubsetKind::temperature:
        check(target_kT_.has_value(), "--kind temperature needs --target-kT");
        return temperature_biased_subset(source, *target_kT_, frames_, seed_);
      case SubsetKind::energy:
        return energy_selected_subset(source, {energy_max_, quantile_});
      case SubsetKind::torsion:
        check(atoms_.size() == 4 && window_.size() == 2,
              "--kind torsion needs --atoms a b c d and --window low high");
        return torsion_selected_subset(source, {atoms_[0], atoms_[1], atoms_[2], atoms_[3]},
                                       window_[0], window_[1]);
      case SubsetKind::basin:
        return basin_subset(source);
    }
    throw Error(fmt::format("--kind {}: no subset", kind_));
  }

  Dataset basin_subset(const Dataset& source) const {
    check(!source.system.is_null(),
          fmt::format("{}: --kind basin needs a dataset that names its system", in_));
    const auto system = make_system(source.system);
    BasinOptions options = basin_;
    options.frames = frames_.value_or(options.frames);
    options.start_frame = start_frame_;
    options.kT = kT_data_;
    options.seed = seed_;
    return basin_biased_subset(*system, source, options);
  }

  std::string in_, out_, kind_;
  std::optional<int64_t> frames_, start_frame_;
  uint64_t seed_ = 0;
  std::optional<double> target_kT_, energy_max_, quantile_, kT_data_;
  std::vector<int64_t> atoms_;
  std::vector<double> window_;
  BasinOptions basin_;
};

/// `psm data molecule`: a 3-D geometry from a SMILES string, for `psm simulate --molecule`.
class DataMoleculeCommand final : public Command {
 public:
  void configure(CLI::App& app) override {
    app.add_option("--smiles", smiles_, "The molecule, e.g. CCO (hydrogens are added)")->required();
    app.add_option("--out", out_, "Output geometry: extended XYZ (.xyz) or psm .npz")->required();
    app.add_option("--seed", options_.seed, "Seed of the ETKDG embedding")
        ->capture_default_str()
        ->check(seed_value);
    app.add_flag("--no-optimise", no_optimise_, "Keep the ETKDG geometry (no MMFF/UFF relaxation)");
  }

  int run(const GlobalOptions&) override {
    options_.optimise = !no_optimise_;
    check_dataset_output(out_);
    const Dataset molecule = molecule_from_smiles(smiles_, options_);
    save_dataset(out_, molecule);
    fmt::print("{}: {} ({} atoms), RDKit ETKDGv3 seed {}, force field {}\n", out_.string(),
               chemical_formula(molecule.species), molecule.num_atoms(), options_.seed,
               molecule.provenance["force_field"].get<std::string>());
    return 0;
  }

 private:
  std::string smiles_;
  std::filesystem::path out_;
  SmilesOptions options_;
  bool no_optimise_ = false;
};

/// Registers the subcommands of `psm data`. A sibling (e.g. `subset`) is one more Command
/// class and one more line here.
void register_data_subcommands(CommandRegistry& registry) {
  registry.add("info", "Print frames, species, units, kT, energy and force ranges of a dataset",
               [] { return std::make_unique<DataInfoCommand>(); });
  registry.add("subset", "Make a limited or biased training set from a larger dataset",
               [] { return std::make_unique<DataSubsetCommand>(); });
  registry.add("molecule", "Make a 3-D geometry (.xyz) from SMILES with RDKit (ETKDGv3)",
               [] { return std::make_unique<DataMoleculeCommand>(); });
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
