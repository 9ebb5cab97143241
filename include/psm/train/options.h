#pragma once
// Options of a training run: the optimiser and its schedule (TrainerOptions), and JSON forms of
// every options struct a checkpoint must record to rebuild the model and its loss exactly.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "psm/diffusion/loss.h"
#include "psm/model/network.h"

namespace psm {

enum class OptimizerKind {
  adam,   ///< Adam, L2 penalty added to the gradient when weight_decay > 0
  adamw,  ///< AdamW, decoupled weight decay
};

struct TrainerOptions {
  int64_t steps = 20000;     ///< optimisation steps in total (a resumed run continues to this)
  int64_t batch_size = 256;  ///< frames per minibatch, drawn with replacement
  OptimizerKind optimizer = OptimizerKind::adam;
  double lr = 1e-3;            ///< peak learning rate, reached after warmup_steps
  double lr_min = 1e-5;        ///< the cosine decay ends here at the last step
  double weight_decay = 0.0;   ///< Adam: L2 penalty; AdamW: decoupled decay
  double beta1 = 0.9;          ///< Adam first-moment decay
  double beta2 = 0.999;        ///< Adam second-moment decay
  int64_t warmup_steps = 500;  ///< linear warm-up from lr / warmup_steps to lr
  double grad_clip = 1.0;      ///< maximum global gradient norm; 0 switches clipping off
  /// Decay of the exponential moving average of the weights. Early on the average uses
  /// min(ema_decay, (1 + step) / (10 + step)) so that it does not remember the random start.
  double ema_decay = 0.999;
  uint64_t seed = 0;                ///< initial weights, train/validation split, minibatches, noise
  int64_t checkpoint_every = 1000;  ///< steps between checkpoints; 0: only at the end
  double validation_fraction = 0.1;  ///< held-out frames (chosen by seed); 0: no validation
  int64_t validation_every = 500;    ///< steps between validation losses (also at the end)
  int64_t log_every = 50;            ///< steps averaged into one line of the metrics log

  /// Throws psm::Error naming `context` (a config section) and the option on a bad value.
  void validate(const std::string& context) const;
};

/// Warm-up then cosine: lr (step + 1) / warmup_steps for step < warmup_steps, then
/// lr_min + (lr - lr_min) (1 + cos(pi t)) / 2 with t the fraction of the remaining steps done.
/// `step` counts from 0 (the learning rate of the first update).
double learning_rate(const TrainerOptions& options, int64_t step);

std::string to_string(OptimizerKind value);
/// "adam" or "adamw"; throws psm::Error listing them.
OptimizerKind optimizer_from_string(const std::string& name);

// JSON forms for checkpoints. Every field is written; reading requires every field, so a
// checkpoint never silently falls back to a default that may have changed since.
nlohmann::json to_json(const TrainerOptions& options);
TrainerOptions trainer_options_from_json(const nlohmann::json& json);
nlohmann::json to_json(const EgnnOptions& options);
EgnnOptions egnn_options_from_json(const nlohmann::json& json);
nlohmann::json to_json(const PainnOptions& options);
PainnOptions painn_options_from_json(const nlohmann::json& json);
/// Either kind, with its "kind" field; a network record without one is an EGNN (checkpoints
/// written before there were two kinds).
nlohmann::json to_json(const NetworkOptions& options);
NetworkOptions network_options_from_json(const nlohmann::json& json);
nlohmann::json to_json(const LossOptions& options);
LossOptions loss_options_from_json(const nlohmann::json& json);

}  // namespace psm
