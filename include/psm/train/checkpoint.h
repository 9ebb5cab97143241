#pragma once
// Training checkpoints: one file (a LibTorch archive) holding the model and EMA weights, the
// optimiser state, the step, the minibatch generator's state and a JSON "metadata" entry with
// everything needed to rebuild the model, resume the run or sample from it (options, sigma_data,
// the resolved sigma_c, the full config as TOML, species, units, kT, system spec, provenance).
//
// Archive entries (their names are the format; changing one needs a version bump):
//   metadata   string, JSON (CheckpointInfo, see to_json)
//   model      the trained ScoreModel's parameters and buffers
//   ema        the exponential moving average of those parameters
//   optimizer  the torch::optim state
//   rng_state  uint8 tensor: the minibatch generator's get_state()

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "psm/core/units.h"
#include "psm/diffusion/loss.h"
#include "psm/diffusion/score.h"
#include "psm/io/dataset.h"
#include "psm/model/score_model.h"
#include "psm/train/options.h"

namespace psm {

inline constexpr int64_t kCheckpointVersion = 1;

/// What a checkpoint records about its run (the "metadata" entry).
struct CheckpointInfo {
  int64_t step = 0;         ///< optimisation steps done
  double sigma_data = 1.0;  ///< length units, from the training frames
  NetworkOptions network = EgnnOptions(0, torch::Tensor());  ///< atoms set from the data
  LossOptions loss;  ///< resolved: sigma_c set for the hybrid
  TrainerOptions trainer;
  std::string config_toml;  ///< the full configuration of the run, overrides applied
  /// The training data: species, dim, units, kT, sampled_kT, temperature_kelvin, system
  /// (spec for make_system, may be null), provenance (the dataset's), source (path), frames,
  /// train_frames, validation_frames.
  nlohmann::json data = nlohmann::json::object();

  std::vector<int64_t> species() const;
  int64_t dim() const;
  Units units() const;
  double kT() const;
  const nlohmann::json& system() const;

  /// Throws psm::Error naming `file` unless `frames` has this run's species and dimension.
  void check_frames(const Dataset& frames, const std::string& file) const;
};

nlohmann::json to_json(const CheckpointInfo& info);
/// Throws psm::Error naming `source` when a field is missing or has the wrong type.
CheckpointInfo checkpoint_info_from_json(const nlohmann::json& json, const std::string& source);

/// The model a diffusion sampler or the loss calls: s(x, sigma) of `model` (shared, not copied).
ScoreFn as_score_fn(ScoreModel model);

/// A trained model ready to sample: the EMA weights, in eval mode, parameters frozen.
struct TrainedModel {
  ScoreModel model{nullptr};
  CheckpointInfo info;

  /// The variance-exploding score that the samplers integrate: the model itself, or
  /// as_variance_exploding of it when it was trained on the variance-preserving process.
  ScoreFn score() const;
};

/// The metadata of a checkpoint file. Throws psm::Error naming `path` when it is missing, not a
/// psm checkpoint or of an unknown version.
CheckpointInfo read_checkpoint_info(const std::filesystem::path& path);

/// Loads the EMA weights of a checkpoint, saved from any device, into a freshly built model on
/// `device`.
TrainedModel load_trained_model(const std::filesystem::path& path,
                                torch::Device device = torch::kCPU);

}  // namespace psm
