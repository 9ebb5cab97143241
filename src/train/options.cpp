#include "psm/train/options.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <numbers>

#include "psm/core/error.h"
#include "psm/core/value_registry.h"

namespace psm {

namespace {

/// json.at(key) with a one-line psm::Error when the key is missing or has the wrong type.
template <class T>
T field(const nlohmann::json& json, const char* key, const char* what) {
  check(json.is_object() && json.contains(key),
        fmt::format("checkpoint: {} options lack '{}'", what, key));
  try {
    return json.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(fmt::format("checkpoint: {} option '{}' has the wrong type ({})", what, key,
                            json.at(key).dump()));
  }
}

std::string dtype_name(torch::Dtype dtype) {
  check(dtype == torch::kFloat32 || dtype == torch::kFloat64,
        "model: dtype must be float32 or float64");
  return dtype == torch::kFloat32 ? "float32" : "float64";
}

torch::Dtype dtype_from_name(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "float64") return torch::kFloat64;
  throw Error(fmt::format("unknown dtype '{}' (known: float32, float64)", name));
}

}  // namespace

void TrainerOptions::validate(const std::string& context) const {
  const auto fail = [&](const char* key, const char* rule, auto value) {
    return fmt::format("{}.{} {} (got {})", context, key, rule, value);
  };
  check(steps >= 1, fail("steps", "must be >= 1", steps));
  check(batch_size >= 1, fail("batch_size", "must be >= 1", batch_size));
  check(lr > 0 && std::isfinite(lr), fail("lr", "must be positive", lr));
  check(lr_min >= 0 && lr_min <= lr, fail("lr_min", "must lie in [0, lr]", lr_min));
  check(weight_decay >= 0, fail("weight_decay", "must be >= 0", weight_decay));
  check(beta1 >= 0 && beta1 < 1, fail("beta1", "must lie in [0, 1)", beta1));
  check(beta2 >= 0 && beta2 < 1, fail("beta2", "must lie in [0, 1)", beta2));
  check(warmup_steps >= 0, fail("warmup_steps", "must be >= 0", warmup_steps));
  check(grad_clip >= 0, fail("grad_clip", "must be >= 0 (0: off)", grad_clip));
  check(ema_decay >= 0 && ema_decay < 1, fail("ema_decay", "must lie in [0, 1)", ema_decay));
  check(checkpoint_every >= 0,
        fail("checkpoint_every", "must be >= 0 (0: at the end only)", checkpoint_every));
  check(validation_fraction >= 0 && validation_fraction < 1,
        fail("validation_fraction", "must lie in [0, 1)", validation_fraction));
  check(validation_every >= 1, fail("validation_every", "must be >= 1", validation_every));
  check(log_every >= 1, fail("log_every", "must be >= 1", log_every));
}

double learning_rate(const TrainerOptions& options, int64_t step) {
  if (step < options.warmup_steps) {
    return options.lr * static_cast<double>(step + 1) / static_cast<double>(options.warmup_steps);
  }
  const int64_t decay_steps = options.steps - options.warmup_steps;
  if (decay_steps <= 1) return options.lr;
  const double t = std::min(
      1.0, static_cast<double>(step - options.warmup_steps) / static_cast<double>(decay_steps - 1));
  return options.lr_min +
         (options.lr - options.lr_min) * 0.5 * (1.0 + std::cos(std::numbers::pi * t));
}

const ValueRegistry<OptimizerKind> optimizer_names("optimizer", {{"adam", OptimizerKind::adam},
                                                                 {"adamw", OptimizerKind::adamw}});

std::string to_string(OptimizerKind value) { return optimizer_names.name_of(value); }

OptimizerKind optimizer_from_string(const std::string& name) { return optimizer_names.get(name); }

nlohmann::json to_json(const TrainerOptions& o) {
  return {{"steps", o.steps},
          {"batch_size", o.batch_size},
          {"optimizer", to_string(o.optimizer)},
          {"lr", o.lr},
          {"lr_min", o.lr_min},
          {"weight_decay", o.weight_decay},
          {"beta1", o.beta1},
          {"beta2", o.beta2},
          {"warmup_steps", o.warmup_steps},
          {"grad_clip", o.grad_clip},
          {"ema_decay", o.ema_decay},
          {"seed", o.seed},
          {"checkpoint_every", o.checkpoint_every},
          {"validation_fraction", o.validation_fraction},
          {"validation_every", o.validation_every},
          {"log_every", o.log_every}};
}

TrainerOptions trainer_options_from_json(const nlohmann::json& j) {
  constexpr const char* what = "trainer";
  return {.steps = field<int64_t>(j, "steps", what),
          .batch_size = field<int64_t>(j, "batch_size", what),
          .optimizer = optimizer_from_string(field<std::string>(j, "optimizer", what)),
          .lr = field<double>(j, "lr", what),
          .lr_min = field<double>(j, "lr_min", what),
          .weight_decay = field<double>(j, "weight_decay", what),
          .beta1 = field<double>(j, "beta1", what),
          .beta2 = field<double>(j, "beta2", what),
          .warmup_steps = field<int64_t>(j, "warmup_steps", what),
          .grad_clip = field<double>(j, "grad_clip", what),
          .ema_decay = field<double>(j, "ema_decay", what),
          .seed = field<uint64_t>(j, "seed", what),
          .checkpoint_every = field<int64_t>(j, "checkpoint_every", what),
          .validation_fraction = field<double>(j, "validation_fraction", what),
          .validation_every = field<int64_t>(j, "validation_every", what),
          .log_every = field<int64_t>(j, "log_every", what)};
}

namespace {

std::vector<int64_t> int64_list(const torch::Tensor& t) {
  const torch::Tensor flat = t.to(torch::kCPU).contiguous();
  return {flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel()};
}

/// The keys every network kind has.
template <class Options>
nlohmann::json common_network_json(const Options& o, const char* kind) {
  return {{"kind", kind},
          {"dim", o.dim()},
          {"species", int64_list(o.species())},
          {"layers", o.layers()},
          {"hidden", o.hidden()},
          {"activation", o.activation()},
          {"noise_features", o.noise_features()},
          {"num_rbf", o.num_rbf()},
          {"rbf_cutoff", o.rbf_cutoff()},
          {"cutoff", o.cutoff()},
          {"dtype", dtype_name(o.dtype())},
          {"chunk_size", o.chunk_size()},
          {"seed", o.seed()}};
}

/// Options of one kind with the keys every kind has read from `j`.
template <class Options>
Options common_network_options(const nlohmann::json& j) {
  constexpr const char* what = "model";
  const auto species = field<std::vector<int64_t>>(j, "species", what);
  return Options(field<int64_t>(j, "dim", what), torch::tensor(species, torch::kInt64))
      .layers(field<int64_t>(j, "layers", what))
      .hidden(field<int64_t>(j, "hidden", what))
      .activation(field<std::string>(j, "activation", what))
      .noise_features(field<int64_t>(j, "noise_features", what))
      .num_rbf(field<int64_t>(j, "num_rbf", what))
      .rbf_cutoff(field<double>(j, "rbf_cutoff", what))
      .cutoff(field<double>(j, "cutoff", what))
      .dtype(dtype_from_name(field<std::string>(j, "dtype", what)))
      .chunk_size(field<int64_t>(j, "chunk_size", what))
      .seed(field<uint64_t>(j, "seed", what));
}

}  // namespace

nlohmann::json to_json(const EgnnOptions& o) {
  nlohmann::json json = common_network_json(o, "egnn");
  json["attention"] = o.attention();
  json["tanh"] = o.tanh();
  json["coord_range"] = o.coord_range();
  return json;
}

EgnnOptions egnn_options_from_json(const nlohmann::json& j) {
  constexpr const char* what = "model";
  return common_network_options<EgnnOptions>(j)
      .attention(field<bool>(j, "attention", what))
      .tanh(field<bool>(j, "tanh", what))
      .coord_range(field<double>(j, "coord_range", what));
}

nlohmann::json to_json(const PainnOptions& o) {
  nlohmann::json json = common_network_json(o, "painn");
  json["num_input_rbf"] = o.num_input_rbf();
  json["neighbours"] = to_string(o.neighbours());
  json["bond_graph"] = o.bond_graph();
  json["graph"] = o.graph().defined() ? nlohmann::json(int64_list(o.graph())) : nullptr;
  json["conservative"] = o.conservative();
  return json;
}

PainnOptions painn_options_from_json(const nlohmann::json& j) {
  constexpr const char* what = "model";
  auto options =
      common_network_options<PainnOptions>(j)
          .num_input_rbf(field<int64_t>(j, "num_input_rbf", what))
          .neighbours(neighbour_mode_from_string(field<std::string>(j, "neighbours", what)))
          .bond_graph(field<bool>(j, "bond_graph", what))
          .conservative(field<bool>(j, "conservative", what));
  check(j.contains("graph"), "checkpoint: model options lack 'graph'");
  if (!j.at("graph").is_null()) {
    const int64_t n = options.species().size(0);
    const auto graph = field<std::vector<int64_t>>(j, "graph", what);
    check(
        static_cast<int64_t>(graph.size()) == n * n,
        fmt::format("checkpoint: the bond graph has {} entries, not {} x {}", graph.size(), n, n));
    options.graph(torch::tensor(graph, torch::kInt64).view({n, n}));
  }
  return options;
}

nlohmann::json to_json(const NetworkOptions& options) {
  return std::visit([](const auto& o) { return to_json(o); }, options);
}

NetworkOptions network_options_from_json(const nlohmann::json& j) {
  // Checkpoints written before there was more than one kind hold an EGNN without a "kind".
  const std::string kind = j.is_object() ? j.value("kind", "egnn") : "egnn";
  if (kind == "egnn") return egnn_options_from_json(j);
  if (kind == "painn") return painn_options_from_json(j);
  throw Error(fmt::format("checkpoint: unknown model kind '{}' (known: {})", kind,
                          fmt::join(network_kinds(), ", ")));
}

nlohmann::json to_json(const LossOptions& o) {
  return {{"sigma_min", o.schedule.sigma_min},
          {"sigma_max", o.schedule.sigma_max},
          {"distribution", to_string(o.schedule.distribution)},
          {"p_mean", o.schedule.p_mean},
          {"p_std", o.schedule.p_std},
          {"process", to_string(o.process)},
          {"crossover", to_string(o.crossover)},
          {"sigma_c", o.sigma_c ? nlohmann::json(*o.sigma_c) : nlohmann::json(nullptr)},
          {"crossover_exponent", o.crossover_exponent},
          {"weighting", to_string(o.weighting)},
          {"sigma_data", o.sigma_data},
          {"com_free", o.com_free}};
}

LossOptions loss_options_from_json(const nlohmann::json& j) {
  constexpr const char* what = "diffusion";
  check(j.is_object() && j.contains("sigma_c"), "checkpoint: diffusion options lack 'sigma_c'");
  const nlohmann::json& sigma_c = j.at("sigma_c");
  return {.schedule = {.sigma_min = field<double>(j, "sigma_min", what),
                       .sigma_max = field<double>(j, "sigma_max", what),
                       .distribution = sigma_distribution_from_string(
                           field<std::string>(j, "distribution", what)),
                       .p_mean = field<double>(j, "p_mean", what),
                       .p_std = field<double>(j, "p_std", what)},
          .process = noise_process_from_string(field<std::string>(j, "process", what)),
          .crossover = crossover_from_string(field<std::string>(j, "crossover", what)),
          .sigma_c = sigma_c.is_null() ? std::nullopt
                                       : std::optional<double>(field<double>(j, "sigma_c", what)),
          .crossover_exponent = field<double>(j, "crossover_exponent", what),
          .weighting = loss_weighting_from_string(field<std::string>(j, "weighting", what)),
          .sigma_data = field<double>(j, "sigma_data", what),
          .com_free = field<bool>(j, "com_free", what)};
}

}  // namespace psm
