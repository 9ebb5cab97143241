#include "psm/train/run_config.h"

#include <fmt/format.h>

#include "psm/core/error.h"
#include "psm/model/activation.h"

namespace psm {

namespace {

/// Runs `read`, prefixing a bare psm::Error (an enum parser's "unknown crossover 'x'") with the
/// config source and key so that the message says where the value came from.
template <class Read>
auto with_context(const std::string& source, const std::string& key, Read read) {
  try {
    return read();
  } catch (const Error& e) {
    throw Error(key.empty() ? fmt::format("{}: {}", source, e.what())
                            : fmt::format("{}: {}: {}", source, key, e.what()));
  }
}

/// The keys both network kinds share; `read` applies them to the kind's options.
template <class Options>
void read_common_network_keys(ConfigSection& section, Options& options) {
  const Options& defaults = options;
  options.layers(section.get<int64_t>("layers", defaults.layers()))
      .hidden(section.get<int64_t>("width", defaults.hidden()))
      .activation(section.get<std::string>("activation", defaults.activation()))
      .noise_features(section.get<int64_t>("noise_features", defaults.noise_features()))
      .num_rbf(section.get<int64_t>("rbf", defaults.num_rbf()))
      .rbf_cutoff(section.get<double>("rbf_cutoff", defaults.rbf_cutoff()))
      .cutoff(section.get<double>("cutoff", defaults.cutoff()))
      .chunk_size(section.get<int64_t>("chunk_size", defaults.chunk_size()));
}

void read_network_keys(ConfigSection& section, EgnnOptions& options) {
  read_common_network_keys(section, options);
  options.attention(section.get<bool>("attention", options.attention()))
      .tanh(section.get<bool>("tanh", options.tanh()))
      .coord_range(section.get<double>("coord_range", options.coord_range()));
}

void read_network_keys(ConfigSection& section, PainnOptions& options) {
  read_common_network_keys(section, options);
  options.num_input_rbf(section.get<int64_t>("input_rbf", options.num_input_rbf()))
      .bond_graph(section.get<bool>("bond_graph", options.bond_graph()))
      .conservative(section.get<bool>("conservative", options.conservative()))
      .neighbours(neighbour_mode_from_string(
          section.get<std::string>("neighbours", to_string(options.neighbours()))));
}

NetworkOptions read_network(ConfigSection section, const std::string& source) {
  const auto kind = section.get<std::string>("kind", "egnn");
  NetworkOptions network =
      with_context(source, "model.kind", [&] { return default_network_options(kind); });
  with_context(source, "", [&] {
    std::visit([&](auto& options) { read_network_keys(section, options); }, network);
    return 0;
  });
  const auto dtype = section.get<std::string>("dtype", "float32");
  check(dtype == "float32" || dtype == "float64",
        fmt::format("{}: model.dtype must be \"float32\" or \"float64\" (got \"{}\")", source,
                    dtype));
  std::visit([&](auto& o) { o.dtype(dtype == "float32" ? torch::kFloat32 : torch::kFloat64); },
             network);
  section.finish();

  const auto positive = [&](const char* key, double value, double minimum) {
    check(value >= minimum,
          fmt::format("{}: model.{} must be >= {} (got {})", source, key, minimum, value));
  };
  std::visit(
      [&](const auto& options) {
        positive("layers", static_cast<double>(options.layers()), 1);
        positive("width", static_cast<double>(options.hidden()), 1);
        positive("rbf", static_cast<double>(options.num_rbf()), 0);
        positive("cutoff", options.cutoff(), 0);
        positive("chunk_size", static_cast<double>(options.chunk_size()), 0);
        check(options.noise_features() >= 2 && options.noise_features() % 2 == 0,
              fmt::format("{}: model.noise_features must be even and >= 2 (got {})", source,
                          options.noise_features()));
        check_activation(options.activation(), source + ": model.activation");
      },
      network);
  if (const auto* painn = std::get_if<PainnOptions>(&network)) {
    positive("input_rbf", static_cast<double>(painn->num_input_rbf()), 0);
    check(painn->neighbours() != NeighbourMode::sparse || painn->cutoff() > 0,
          fmt::format("{}: model.neighbours = \"sparse\" needs model.cutoff > 0", source));
  }
  return network;
}

LossOptions read_loss(ConfigSection section, const std::string& source) {
  const LossOptions defaults;
  LossOptions options;
  options.schedule.sigma_min = section.get<double>("sigma_min", defaults.schedule.sigma_min);
  options.schedule.sigma_max = section.get<double>("sigma_max", defaults.schedule.sigma_max);
  const auto distribution =
      section.get<std::string>("distribution", to_string(defaults.schedule.distribution));
  options.schedule.distribution = with_context(source, "diffusion.distribution", [&] {
    return sigma_distribution_from_string(distribution);
  });
  options.schedule.p_mean = section.get<double>("p_mean", defaults.schedule.p_mean);
  options.schedule.p_std = section.get<double>("p_std", defaults.schedule.p_std);
  const auto process = section.get<std::string>("process", to_string(defaults.process));
  options.process =
      with_context(source, "diffusion.process", [&] { return noise_process_from_string(process); });
  const auto crossover = section.get<std::string>("crossover", to_string(defaults.crossover));
  options.crossover =
      with_context(source, "diffusion.crossover", [&] { return crossover_from_string(crossover); });
  const auto sigma_c = section.get<nlohmann::json>("sigma_c", "auto");
  if (sigma_c.is_number()) {
    options.sigma_c = sigma_c.get<double>();
  } else {
    check(sigma_c == "auto",
          fmt::format("{}: diffusion.sigma_c must be a length or \"auto\" (got {})", source,
                      sigma_c.dump()));
  }
  options.crossover_exponent =
      section.get<double>("crossover_exponent", defaults.crossover_exponent);
  const auto weighting = section.get<std::string>("weighting", to_string(defaults.weighting));
  options.weighting = with_context(source, "diffusion.weighting",
                                   [&] { return loss_weighting_from_string(weighting); });
  options.com_free = section.get<bool>("com_free", defaults.com_free);
  section.finish();

  with_context(source, "", [&] { options.schedule.validate("diffusion"); });
  check(options.crossover_exponent > 0,
        fmt::format("{}: diffusion.crossover_exponent must be positive (got {})", source,
                    options.crossover_exponent));
  check(!options.sigma_c || *options.sigma_c > 0,
        fmt::format("{}: diffusion.sigma_c must be positive (got {})", source,
                    options.sigma_c.value_or(0)));
  return options;
}

TrainerOptions read_trainer(ConfigSection section, double validation_fraction,
                            const std::string& source) {
  const TrainerOptions d;
  TrainerOptions options{
      .steps = section.get<int64_t>("steps", d.steps),
      .batch_size = section.get<int64_t>("batch_size", d.batch_size),
      .optimizer = d.optimizer,
      .lr = section.get<double>("lr", d.lr),
      .lr_min = section.get<double>("lr_min", d.lr_min),
      .weight_decay = section.get<double>("weight_decay", d.weight_decay),
      .beta1 = section.get<double>("beta1", d.beta1),
      .beta2 = section.get<double>("beta2", d.beta2),
      .warmup_steps = section.get<int64_t>("warmup_steps", d.warmup_steps),
      .grad_clip = section.get<double>("grad_clip", d.grad_clip),
      .ema_decay = section.get<double>("ema_decay", d.ema_decay),
      .seed = d.seed,
      .checkpoint_every = section.get<int64_t>("checkpoint_every", d.checkpoint_every),
      .validation_fraction = validation_fraction,
      .validation_every = section.get<int64_t>("validation_every", d.validation_every),
      .log_every = section.get<int64_t>("log_every", d.log_every)};
  const auto optimizer = section.get<std::string>("optimizer", to_string(d.optimizer));
  options.optimizer =
      with_context(source, "train.optimizer", [&] { return optimizer_from_string(optimizer); });
  const auto seed = section.get<int64_t>("seed", 0);
  check(seed >= 0, fmt::format("{}: train.seed must be >= 0 (got {})", source, seed));
  options.seed = static_cast<uint64_t>(seed);
  section.finish();
  with_context(source, "", [&] { options.validate("train"); });
  return options;
}

}  // namespace

RunConfig read_run_config(const Config& config) {
  const std::string& source = config.source;
  ConfigSection root(config.tree, "", source);
  RunConfig run;
  run.config = config;

  ConfigSection data = root.section("data");
  check(data.has("train"),
        fmt::format("{}: missing key 'data.train' (the dataset file to train on)", source));
  run.train_data = data.require<std::string>("train");
  const double validation_fraction =
      data.get<double>("validation_fraction", TrainerOptions{}.validation_fraction);
  check(validation_fraction >= 0 && validation_fraction < 1,
        fmt::format("{}: data.validation_fraction must lie in [0, 1) (got {})", source,
                    validation_fraction));
  data.finish();

  run.network = read_network(root.section("model"), source);
  run.loss = read_loss(root.section("diffusion"), source);
  run.trainer = read_trainer(root.section("train"), validation_fraction, source);
  run.network = with_seed(std::move(run.network), run.trainer.seed);
  run.threads = static_cast<int>(root.get<int64_t>("threads", 0));
  check(run.threads >= 0,
        fmt::format("{}: threads must be >= 0 (0: all cores; got {})", source, run.threads));
  root.finish();
  return run;
}

}  // namespace psm
