#include "psm/train/checkpoint.h"

#include <fmt/format.h>

#include "psm/core/elements.h"
#include "psm/core/error.h"
#include "psm/diffusion/schedule.h"
#include "train/internal/checkpoint_archive.h"

namespace psm {

namespace {

constexpr const char* kFormat = "psm-checkpoint";

/// The first line of a LibTorch error (its messages carry a multi-line backtrace).
std::string first_line(const c10::Error& e) {
  const std::string message = e.what_without_backtrace();
  return message.substr(0, message.find('\n'));
}

}  // namespace

std::vector<int64_t> CheckpointInfo::species() const {
  return data.at("species").get<std::vector<int64_t>>();
}
int64_t CheckpointInfo::dim() const { return data.at("dim").get<int64_t>(); }
Units CheckpointInfo::units() const { return units_from_string(data.at("units")); }
double CheckpointInfo::kT() const { return data.at("kT").get<double>(); }
const nlohmann::json& CheckpointInfo::system() const { return data.at("system"); }

void CheckpointInfo::check_frames(const Dataset& frames, const std::string& file) const {
  check(frames.dim() == dim() && frames.num_atoms() == static_cast<int64_t>(species().size()),
        fmt::format("{}: its atoms ({} in {} dimensions) are not the checkpoint's ({} in {})", file,
                    frames.num_atoms(), frames.dim(), species().size(), dim()));
  if (frames.species == species()) return;
  const std::string theirs = chemical_formula(frames.species), ours = chemical_formula(species());
  throw Error(theirs != ours
                  ? fmt::format("{}: its atoms are {}, the checkpoint's are {}", file, theirs, ours)
                  : fmt::format("{}: its atoms ({}) are in another order than the checkpoint's",
                                file, ours));
}

nlohmann::json to_json(const CheckpointInfo& info) {
  return {{"format", kFormat},
          {"version", kCheckpointVersion},
          {"step", info.step},
          {"sigma_data", info.sigma_data},
          {"network", to_json(info.network)},
          {"loss", to_json(info.loss)},
          {"trainer", to_json(info.trainer)},
          {"config", info.config_toml},
          {"data", info.data}};
}

CheckpointInfo checkpoint_info_from_json(const nlohmann::json& json, const std::string& source) {
  check(json.is_object() && json.value("format", "") == kFormat,
        fmt::format("{}: not a psm checkpoint (metadata lacks format = \"{}\")", source, kFormat));
  check(json.value("version", int64_t{-1}) == kCheckpointVersion,
        fmt::format("{}: checkpoint version {} is not supported (this psm reads version {})",
                    source, json.value("version", nlohmann::json()).dump(), kCheckpointVersion));
  try {
    CheckpointInfo info{.step = json.at("step").get<int64_t>(),
                        .sigma_data = json.at("sigma_data").get<double>(),
                        .network = network_options_from_json(json.at("network")),
                        .loss = loss_options_from_json(json.at("loss")),
                        .trainer = trainer_options_from_json(json.at("trainer")),
                        .config_toml = json.at("config").get<std::string>(),
                        .data = json.at("data")};
    for (const char* key : {"species", "dim", "units", "kT", "system"}) {
      check(info.data.contains(key), fmt::format("checkpoint: data record lacks '{}'", key));
    }
    return info;
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: malformed checkpoint metadata ({})", source, e.what()));
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", source, e.what()));
  }
}

ScoreFn as_score_fn(ScoreModel model) {
  return [model](const torch::Tensor& x, const torch::Tensor& sigma) mutable {
    return model->forward(x, sigma);
  };
}

ScoreFn TrainedModel::score() const {
  ScoreFn score = as_score_fn(model);
  if (info.loss.process == NoiseProcess::variance_preserving) {
    return as_variance_exploding(std::move(score));
  }
  return score;
}

torch::serialize::InputArchive open_checkpoint_archive(const std::filesystem::path& path,
                                                       torch::Device device) {
  check(std::filesystem::is_regular_file(path),
        fmt::format("{}: no such checkpoint file", path.string()));
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string(), device);
  } catch (const c10::Error& e) {
    throw Error(fmt::format("{}: not a psm checkpoint ({})", path.string(), first_line(e)));
  }
  return archive;
}

CheckpointInfo checkpoint_info_from_archive(torch::serialize::InputArchive& archive,
                                            const std::filesystem::path& path) {
  c10::IValue metadata;
  check(archive.try_read(checkpoint_keys::kMetadata, metadata) && metadata.isString(),
        fmt::format("{}: not a psm checkpoint (no metadata entry)", path.string()));
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(metadata.toStringRef());
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: checkpoint metadata is not JSON ({})", path.string(), e.what()));
  }
  return checkpoint_info_from_json(json, path.string());
}

void read_module(torch::serialize::InputArchive& archive, const std::string& key,
                 torch::nn::Module& module, const std::filesystem::path& path) {
  try {
    torch::serialize::InputArchive module_archive;
    archive.read(key, module_archive);
    module.load(module_archive);
  } catch (const c10::Error& e) {
    throw Error(fmt::format("{}: the '{}' weights do not fit the model ({})", path.string(), key,
                            first_line(e)));
  }
}

CheckpointInfo read_checkpoint_info(const std::filesystem::path& path) {
  torch::serialize::InputArchive archive = open_checkpoint_archive(path);
  return checkpoint_info_from_archive(archive, path);
}

TrainedModel load_trained_model(const std::filesystem::path& path, torch::Device device) {
  torch::serialize::InputArchive archive = open_checkpoint_archive(path, device);
  CheckpointInfo info = checkpoint_info_from_archive(archive, path);
  ScoreModel model(ScoreModelOptions(info.network, info.sigma_data));
  model->to(device);
  read_module(archive, checkpoint_keys::kEma, *model, path);
  model->eval();
  for (auto& parameter : model->parameters()) parameter.set_requires_grad(false);
  return {std::move(model), std::move(info)};
}

}  // namespace psm
