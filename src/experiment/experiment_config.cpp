#include "psm/experiment/experiment_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "psm/core/error.h"
#include "psm/core/value_registry.h"
#include "psm/experiment/default_config.h"
#include "psm/simulate/simulation.h"
#include "psm/systems/molecule.h"
#include "psm/train/model_likelihood.h"
#include "psm/train/run_config.h"

namespace psm {

namespace {

const ValueRegistry<SubsetKind> kTrainingSetKinds("training-set kind",
                                                  {{"limited", SubsetKind::limited},
                                                   {"temperature", SubsetKind::temperature},
                                                   {"basin", SubsetKind::basin},
                                                   {"energy", SubsetKind::energy}});

bool is_plain_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

/// A file name or a list of them (`key` names the config key in errors).
std::vector<std::string> read_file_list(ConfigSection& section, const std::string& key,
                                        const std::string& source) {
  const auto value = section.get<nlohmann::json>(key, nlohmann::json());
  if (value.is_null()) return {};
  if (value.is_string()) return {value.get<std::string>()};
  const bool strings = value.is_array() && !value.empty() &&
                       std::all_of(value.begin(), value.end(),
                                   [](const nlohmann::json& v) { return v.is_string(); });
  check(strings, fmt::format("{}: reference.{} must be a file name or a non-empty list of file "
                             "names, got {}",
                             source, key, value.dump()));
  return value.get<std::vector<std::string>>();
}

ReferenceSpec read_reference(ConfigSection section, const std::string& source) {
  ReferenceSpec spec;
  if (section.has("samples")) spec.samples = section.require<int64_t>("samples");
  if (section.has("test_samples")) spec.test_samples = section.require<int64_t>("test_samples");
  spec.test_seed = section.get<uint64_t>("test_seed", spec.test_seed);
  if (section.has("sampler")) {
    spec.sampler = section.require<std::string>("sampler");
    try {
      simulation_sampler_from_string(*spec.sampler);
    } catch (const Error& e) {
      throw Error(fmt::format("{}: reference.sampler: {}", source, e.what()));
    }
  }
  if (section.has("chains")) spec.chains = section.require<int64_t>("chains");
  if (section.has("burn_in")) spec.burn_in = section.require<int64_t>("burn_in");
  if (section.has("thin")) spec.thin = section.require<int64_t>("thin");
  if (section.has("leapfrog_steps"))
    spec.leapfrog_steps = section.require<int64_t>("leapfrog_steps");
  if (section.has("time_step")) spec.time_step = section.require<double>("time_step");
  spec.pool_files = read_file_list(section, "pool", source);
  spec.test_files = read_file_list(section, "test", source);
  const auto directory = section.get<std::string>("directory", "");
  const auto labels = section.get<std::string>("labels", to_string(spec.labels));
  try {
    spec.labels = rmd17_labels_from_string(labels);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: reference.labels: {}", source, e.what()));
  }
  section.finish();
  for (auto* files : {&spec.pool_files, &spec.test_files}) {
    for (auto& file : *files) file = (std::filesystem::path(directory) / file).string();
  }
  check(spec.samples.value_or(1) > 0 && spec.test_samples.value_or(1) > 0,
        fmt::format("{}: reference.samples and reference.test_samples must be positive", source));
  return spec;
}

/// The value of an optional number key.
std::optional<double> optional_number(ConfigSection& section, const std::string& key) {
  if (!section.has(key)) return std::nullopt;
  return section.require<double>(key);
}

/// `pool_size`: the pool's frames when known before reading files; `system`: the system whose
/// potential samples new frames, null without [system].
TrainingSetSpec read_set(const nlohmann::json& node, int64_t index, const std::string& source,
                         std::optional<int64_t> pool_size, const System* system) {
  const std::string where = fmt::format("sets[{}]", index);
  check(node.is_object(), fmt::format("{}: {} must be a table", source, where));
  ConfigSection section(node, where, source);
  TrainingSetSpec set;
  const std::string kind = section.require<std::string>("kind");
  set.name = section.get<std::string>("name", kind);
  set.frames = section.get<int64_t>("frames", set.frames);
  const std::optional<double> kT_data = optional_number(section, "kT_data");
  const std::optional<double> temperature_data = optional_number(section, "temperature_data");
  if (section.has("quantile")) set.quantile = section.require<double>("quantile");
  set.sigma_c = optional_number(section, "sigma_c");
  section.finish();

  const std::string context = fmt::format("{}: {} ({})", source, where, set.name);
  check(is_plain_name(set.name),
        fmt::format("{}: name must be letters, digits, '_' or '-'", context));
  try {
    set.kind = training_set_kind_from_string(kind);
  } catch (const Error& error) {
    throw Error(fmt::format("{}: {}", context, error.what()));
  }
  check(set.frames > 0, fmt::format("{}: frames must be positive", context));
  check(set.sigma_c.value_or(1) > 0,
        fmt::format("{}: sigma_c must be positive (got {})", context, set.sigma_c.value_or(0)));
  if (set.kind == SubsetKind::limited && pool_size) {
    check(set.frames <= *pool_size, fmt::format("{}: frames = {} exceeds reference.samples = {}",
                                                context, set.frames, *pool_size));
  }
  const bool samples = set.kind == SubsetKind::temperature || set.kind == SubsetKind::basin;
  check(system != nullptr || !samples,
        fmt::format("{}: kind {} samples new frames, but without [system] there is no potential "
                    "to sample with (the reference files define the system): use kind limited "
                    "or energy",
                    context, kind));
  check(samples || (!kT_data && !temperature_data),
        fmt::format("{}: kind {} samples no frames, so it takes no kT_data or temperature_data",
                    context, kind));
  if (samples) {
    try {
      const auto temperature = read_temperature(kT_data, temperature_data, system->units(),
                                                system->name(), {"kT_data", "temperature_data"});
      if (temperature) set.kT_data = temperature->kT;
    } catch (const Error& error) {
      throw Error(fmt::format("{}: {}", context, error.what()));
    }
  }
  if (set.kind == SubsetKind::temperature) {
    check(set.kT_data.has_value(),
          fmt::format("{}: kind temperature needs kT_data (or temperature_data in K for "
                      "molecules)",
                      context));
  }
  if (set.kind == SubsetKind::energy) {
    check(set.quantile && *set.quantile > 0 && *set.quantile <= 1,
          fmt::format("{}: kind energy needs quantile in (0, 1]", context));
  }
  return set;
}

void read_sampler(ConfigSection section, ExperimentConfig& experiment) {
  SamplerOptions& sampler = experiment.sampler;
  sampler.batch_size = 1000;
  experiment.sample_count = section.get<int64_t>("n", experiment.sample_count);
  sampler.steps = section.get<int64_t>("steps", sampler.steps);
  sampler.solver =
      solver_from_string(section.get<std::string>("solver", to_string(sampler.solver)));
  sampler.grid = sigma_grid_from_string(section.get<std::string>("grid", to_string(sampler.grid)));
  sampler.rho = section.get<double>("rho", sampler.rho);
  sampler.corrector_steps = section.get<int64_t>("corrector_steps", sampler.corrector_steps);
  sampler.snr = section.get<double>("snr", sampler.snr);
  sampler.corrector_sigma_min =
      section.get<double>("corrector_sigma_min", sampler.corrector_sigma_min);
  sampler.corrector_max_step =
      section.get<double>("corrector_max_step", sampler.corrector_max_step);
  sampler.batch_size = section.get<int64_t>("batch", sampler.batch_size);
  sampler.churn = section.get<double>("churn", sampler.churn);
  sampler.churn_sigma_min = section.get<double>("churn_sigma_min", sampler.churn_sigma_min);
  sampler.churn_sigma_max = section.get<double>("churn_sigma_max", sampler.churn_sigma_max);
  sampler.churn_noise = section.get<double>("churn_noise", sampler.churn_noise);
  sampler.tolerance = section.get<double>("tolerance", sampler.tolerance);
  if (section.get<bool>("likelihood", false)) {
    LikelihoodOptions& likelihood = experiment.likelihood.emplace();
    likelihood.steps = section.get<int64_t>("likelihood_steps", likelihood.steps);
    if (section.has("divergence")) {
      likelihood.divergence =
          divergence_method_from_string(section.require<std::string>("divergence"));
    }
    likelihood.probes = section.get<int64_t>("probes", likelihood.probes);
  }
  section.finish();
  const std::string context = experiment.config.source + ": [sample]";
  check(experiment.sample_count > 0,
        fmt::format("{}: sample.n must be positive", experiment.config.source));
  sampler.validate(context);
  if (experiment.likelihood) {
    check_likelihood_sampler(sampler, context + " likelihood = true");
    experiment.likelihood->validate(context);
  }
}

}  // namespace

SubsetKind training_set_kind_from_string(const std::string& name) {
  return kTrainingSetKinds.get(name);
}

ExperimentConfig read_experiment_config(const Config& config) {
  const std::string& source = config.source;
  ConfigSection root(config.tree, "", source);
  ExperimentConfig experiment;
  experiment.config = config;
  experiment.name = root.get<std::string>("name", "experiment");
  check(is_plain_name(experiment.name),
        fmt::format("{}: name must be letters, digits, '_' or '-' (got '{}')", source,
                    experiment.name));
  experiment.threads = static_cast<int>(root.get<int64_t>("threads", 0));
  check(experiment.threads >= 0, fmt::format("{}: threads must be >= 0", source));
  experiment.seed = root.get<uint64_t>("seed", 0);

  experiment.reference = read_reference(root.section("reference"), source);
  const ReferenceSpec& reference = experiment.reference;
  // Built here to check the table (the system's own options, its molecule file) before anything
  // is written, and because whether a temperature may be given in kelvin depends on its units.
  SystemWithStart system;
  if (config.tree.contains("system")) {
    check(config.tree["system"].is_object(),
          fmt::format("{}: system must be a table (name = \"lj13\", kT = 1.0, ...)", source));
    ConfigSection table = root.section("system");
    table.require<std::string>("name");
    const std::optional<double> kT = optional_number(table, "kT");
    const std::optional<double> kelvin = optional_number(table, "temperature");
    nlohmann::json spec = config.tree["system"];
    spec.erase("kT");  // the system's own options are checked by its factory
    spec.erase("temperature");
    try {
      system = make_system_with_molecule(spec);
      experiment.temperature =
          read_temperature(kT, kelvin, system.system->units(), system.system->name(),
                           {"system.kT", "system.temperature"})
              .value_or(default_temperature(system.system->units()));
    } catch (const Error& error) {
      throw Error(fmt::format("{}: [system]: {}", source, error.what()));
    }
    experiment.system = system.system->spec();
    experiment.start = system.start;
  } else {
    check(!reference.pool_files.empty() && !reference.test_files.empty(),
          fmt::format("{}: missing table [system] (name = \"lj13\", kT = 1.0, ...); only a "
                      "reference read from files (reference.pool and reference.test) may leave "
                      "it out",
                      source));
  }
  const std::optional<int64_t> pool_size =
      reference.pool_files.empty() ? reference.samples.value_or(ReferenceSpec::default_samples)
                                   : reference.samples;

  const auto sets = root.get<nlohmann::json>("sets", nlohmann::json::array());
  check(sets.is_array() && !sets.empty(),
        fmt::format("{}: needs at least one [[sets]] table (name, kind, frames)", source));
  std::set<std::string> names;
  for (size_t i = 0; i < sets.size(); ++i) {
    experiment.sets.push_back(
        read_set(sets[i], static_cast<int64_t>(i), source, pool_size, system.system.get()));
    check(names.insert(experiment.sets.back().name).second,
          fmt::format("{}: two sets are named '{}'", source, experiment.sets.back().name));
  }

  experiment.variants = root.get<std::vector<std::string>>("variants", {"dsm", "psm", "hybrid"});
  check(!experiment.variants.empty(), fmt::format("{}: variants is empty", source));
  check(std::set<std::string>(experiment.variants.begin(), experiment.variants.end()).size() ==
            experiment.variants.size(),
        fmt::format("{}: variants lists a name twice", source));

  read_sampler(root.section("sample"), experiment);
  ConfigSection eval = root.section("eval");
  experiment.metrics.equivariant_samples =
      eval.get<int64_t>("equivariant_samples", experiment.metrics.equivariant_samples);
  experiment.xtb_frames = eval.get<int64_t>("xtb_frames", experiment.xtb_frames);
  experiment.min_ess = eval.get<double>("min_ess", experiment.min_ess);
  eval.finish();
  check(experiment.xtb_frames >= 0, fmt::format("{}: eval.xtb_frames must be >= 0", source));
  check(experiment.min_ess >= 0 && experiment.min_ess <= 1,
        fmt::format("{}: eval.min_ess must be in [0, 1]", source));

  for (const char* table : {"model", "diffusion", "train"}) {
    root.get<nlohmann::json>(table, nlohmann::json::object());  // marks the key as read
    if (config.tree.contains(table)) experiment.training[table] = config.tree[table];
  }
  root.finish();

  // The training tables are read_run_config's to check, once per set and variant (the
  // crossover names are checked there too).
  for (const auto& set : experiment.sets) {
    for (const auto& variant : experiment.variants) {
      read_run_config(training_config(experiment, set, "<training set>", variant));
    }
  }
  return experiment;
}

Config training_config(const ExperimentConfig& experiment, const TrainingSetSpec& set,
                       const std::string& train_file, const std::string& variant) {
  Config config;
  config.source = experiment.config.source;
  config.tree = experiment.training;
  config.tree["data"]["train"] = train_file;
  config.tree["diffusion"]["crossover"] = variant;
  if (set.sigma_c) config.tree["diffusion"]["sigma_c"] = *set.sigma_c;
  if (experiment.threads > 0) config.tree["threads"] = experiment.threads;
  return config;
}

Config default_experiment_config() {
  return Config::from_toml_string(kDefaultExperimentToml, "psm run (default: lj13_quick.toml)");
}

}  // namespace psm
