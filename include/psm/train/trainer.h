#pragma once
// Trains a ScoreModel on a Dataset with the diffusion loss (DSM, PSM or hybrid): random
// minibatches, Adam/AdamW with warm-up and cosine decay, global-norm gradient clipping, an
// exponential moving average (EMA) of the weights, validation on held-out frames, checkpoints
// that resume exactly. Logging, progress and checkpoint files are callbacks (LAMMPS fixes:
// virtual no-op hooks, a list walked once per step).
//
// Usage:
//   Trainer trainer(dataset, EgnnOptions(0, {}).layers(4), LossOptions{}, {.steps = 2000});
//   trainer.add_callback(std::make_unique<CheckpointWriter>("run/checkpoint.pt", 500));
//   trainer.train();

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "psm/core/communicator.h"
#include "psm/diffusion/loss.h"
#include "psm/io/dataset.h"
#include "psm/model/score_model.h"
#include "psm/train/checkpoint.h"
#include "psm/train/options.h"

namespace psm {

/// What one optimisation step did.
struct StepInfo {
  int64_t step = 0;                       ///< steps done, this one included (1 ... options.steps)
  double learning_rate = 0;               ///< used by this step
  double loss = 0;                        ///< minibatch loss before the update
  double grad_norm = 0;                   ///< global gradient norm before clipping
  torch::Tensor per_sample_loss;          ///< [B] float64, detached
  torch::Tensor sigma;                    ///< [B] float64, the noise levels of the minibatch
  std::optional<double> validation_loss;  ///< EMA weights after this step, when it was due
};

class Trainer;

/// Hooks into Trainer::train(); each is a no-op unless overridden.
class Callback {
 public:
  virtual ~Callback() = default;
  /// Before the first step. `validation_loss`: the EMA validation loss at the starting weights,
  /// present when the run starts fresh (not resumed) and has validation frames.
  virtual void on_train_begin(const Trainer&, std::optional<double> validation_loss) {
    (void)validation_loss;
  }
  virtual void on_step_end(const Trainer&, const StepInfo&) {}
  virtual void on_train_end(const Trainer&) {}
};

/// Where a run's inputs came from, recorded in its checkpoints.
struct RunRecord {
  std::string config_toml;  ///< the full configuration, as TOML text
  std::string data_source;  ///< the training data file
};

class Trainer {
 public:
  /// Stream ids for make_generator(options.seed, stream).
  static constexpr uint64_t kSplitStream = 0x73706c6974;       // "split": validation frames
  static constexpr uint64_t kMinibatchStream = 0x6261746368;   // "batch": indices, sigma, noise
  static constexpr uint64_t kValidationStream = 0x76616c6964;  // "valid": fixed each evaluation

  /// Holds out options.validation_fraction of the frames (chosen by options.seed), estimates
  /// sigma_data from the rest, resolves `loss` (sigma_c from their forces when unset) and builds
  /// the model, its EMA copy and the optimiser.
  /// @param dataset  positions [F, N, D] float64 with forces [F, N, D] unless crossover = dsm;
  ///                 kT, species, units and system spec are recorded in checkpoints
  /// @param network  architecture; dim and species are taken from `dataset`; initial weights
  ///                 are drawn from network.seed()
  /// @param loss     loss.sigma_data is overwritten with the estimate
  /// @param ranks    data-parallel training: every rank builds the same Trainer; each step every
  ///                 rank draws the whole minibatch (indices, σ, noise) from the same generator,
  ///                 computes the gradient of its block of it, and one allreduce sums the
  ///                 gradients, so that all ranks take the step of one process up to rounding
  /// Throws psm::Error on options or data that cannot train.
  Trainer(const Dataset& dataset, NetworkOptions network, LossOptions loss, TrainerOptions options,
          RunRecord record = {}, Communicator ranks = Communicator());

  void add_callback(std::unique_ptr<Callback> callback);

  /// Steps until options().steps, validating every validation_every steps and at the end, and
  /// calls the callbacks.
  void train();
  /// One optimisation step (no callbacks, no validation).
  StepInfo step();
  /// Mean loss of the EMA weights over the validation frames, with noise levels and noise from
  /// a generator reset at every call (the same draws each time, so values compare across steps).
  /// Throws psm::Error when the run has no validation frames.
  double validation_loss() const;

  /// Writes a checkpoint atomically (see checkpoint.h).
  void save_checkpoint(const std::filesystem::path& path) const;
  /// Restores weights, EMA, optimiser, generator and step from a checkpoint of this same run.
  /// Throws psm::Error naming the file and the first setting that differs (the model, the loss,
  /// the data or the trainer options other than steps and the logging intervals).
  void resume(const std::filesystem::path& path);

  int64_t step_count() const { return step_; }
  const TrainerOptions& options() const { return options_; }
  const LossOptions& loss_options() const { return loss_; }
  double sigma_data() const { return sigma_data_; }
  ScoreModel model() const { return model_; }
  ScoreModel ema_model() const { return ema_; }
  int64_t num_train_frames() const { return train_.num_frames(); }
  int64_t num_validation_frames() const {
    return validation_.positions.defined() ? validation_.num_frames() : 0;
  }
  /// What a checkpoint written now would record.
  CheckpointInfo info() const;
  /// The ranks that share each minibatch.
  const Communicator& ranks() const { return ranks_; }
  /// Wall seconds this process has spent in the gradient allreduce, and the bytes it sends per
  /// step (zero for one process).
  double communication_seconds() const { return communication_seconds_; }
  /// Wall seconds this process has waited for slower ranks before the allreduce (a barrier),
  /// kept apart from the transfer itself.
  double waiting_seconds() const { return waiting_seconds_; }
  int64_t communicated_bytes_per_step() const { return communicated_bytes_; }

 private:
  void update_ema();
  /// The minibatch loss at x0, forces [B, N, D] with its gradients in the parameters' grad
  /// (zeroed first); under several ranks each computes its block and the gradients are summed.
  LossOutput loss_and_gradients(const torch::Tensor& x0, const torch::Tensor& forces);
  /// Sums the parameters' gradients over the ranks: one allreduce of one flat buffer.
  void allreduce_gradients();

  Dataset train_;
  Dataset validation_;  ///< positions undefined when validation_fraction = 0
  TrainerOptions options_;
  double sigma_data_;
  LossOptions loss_;
  RunRecord record_;
  nlohmann::json data_record_;
  ScoreModel model_{nullptr};
  ScoreModel ema_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  torch::Generator rng_;
  int64_t step_ = 0;
  std::vector<std::unique_ptr<Callback>> callbacks_;
  Communicator ranks_;
  double communication_seconds_ = 0;
  double waiting_seconds_ = 0;
  int64_t communicated_bytes_ = 0;
};

}  // namespace psm
