#include "psm/train/trainer.h"

#include <fmt/format.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <chrono>
#include <cmath>
#include <limits>

#include "train/internal/checkpoint_archive.h"
#include "psm/core/atomic_file.h"
#include "psm/core/error.h"
#include "psm/core/random.h"

namespace psm {

namespace {

/// Frames [0, held_out) of a seeded permutation are held out; the rest train.
struct Split {
  torch::Tensor train;       ///< [F - K] int64
  torch::Tensor validation;  ///< [K] int64
};

Split split_frames(int64_t frames, double fraction, uint64_t seed) {
  const int64_t held_out =
      fraction > 0 ? std::max<int64_t>(1, std::llround(fraction * static_cast<double>(frames))) : 0;
  check(frames - held_out >= 1,
        fmt::format("data: {} frame(s) leave none to train on after holding out "
                    "validation_fraction = {} (lower it or add frames)",
                    frames, fraction));
  torch::Generator rng = make_generator(seed, Trainer::kSplitStream);
  const torch::Tensor order = torch::randperm(frames, rng, torch::kInt64);
  return {order.slice(0, held_out), order.slice(0, 0, held_out)};
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& params,
                                                        const TrainerOptions& o) {
  switch (o.optimizer) {
    case OptimizerKind::adam:
      return std::make_unique<torch::optim::Adam>(
          params,
          torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
    case OptimizerKind::adamw:
      return std::make_unique<torch::optim::AdamW>(
          params,
          torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
  }
  throw Error("invalid OptimizerKind");
}

nlohmann::json data_record(const Dataset& all, const Dataset& train, int64_t validation_frames,
                           const std::string& source) {
  const auto optional = [](const std::optional<double>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  return {{"source", source},
          {"frames", all.num_frames()},
          {"train_frames", train.num_frames()},
          {"validation_frames", validation_frames},
          {"species", all.species},
          {"dim", all.dim()},
          {"units", to_string(all.units)},
          {"kT", all.kT},
          {"sampled_kT", optional(all.sampled_kT)},
          {"temperature_kelvin", optional(all.temperature_kelvin)},
          {"system", all.system},
          {"provenance", all.provenance}};
}

/// The first top-level key of `keys` whose values differ between a and b, if any.
std::optional<std::string> first_difference(const nlohmann::json& a, const nlohmann::json& b,
                                            const std::vector<std::string>& keys) {
  for (const auto& key : keys) {
    if (a.value(key, nlohmann::json()) != b.value(key, nlohmann::json())) return key;
  }
  return std::nullopt;
}

}  // namespace

Trainer::Trainer(const Dataset& dataset, NetworkOptions network, LossOptions loss,
                 TrainerOptions options, RunRecord record, Communicator ranks)
    : options_(std::move(options)),
      record_(std::move(record)),
      rng_(make_generator(options_.seed, kMinibatchStream)),
      ranks_(std::move(ranks)) {
  options_.validate("train");
  check(options_.batch_size >= ranks_.size(),
        fmt::format("train: batch_size {} cannot be shared by {} ranks (each needs a frame)",
                    options_.batch_size, ranks_.size()));
  dataset.validate(record_.data_source.empty() ? "training data" : record_.data_source);
  const Split split =
      split_frames(dataset.num_frames(), options_.validation_fraction, options_.seed);
  const torch::Device device = dataset.positions.device();
  train_ = dataset.select(split.train.to(device));
  if (split.validation.numel() > 0) validation_ = dataset.select(split.validation.to(device));
  data_record_ = data_record(dataset, train_, split.validation.numel(), record_.data_source);

  sigma_data_ = estimate_sigma_data(train_.positions);
  loss.sigma_data = sigma_data_;
  loss_ = resolve_loss_options(std::move(loss), train_);

  network = with_atoms(std::move(network), train_.positions.cpu(), dataset.species);
  model_ = ScoreModel(ScoreModelOptions(std::move(network), sigma_data_));
  model_->to(device);
  ema_ = ScoreModel(std::dynamic_pointer_cast<ScoreModelImpl>(model_->clone(device)));
  for (auto& parameter : ema_->parameters()) parameter.set_requires_grad(false);
  optimizer_ = make_optimizer(model_->parameters(), options_);
}

void Trainer::add_callback(std::unique_ptr<Callback> callback) {
  callbacks_.push_back(std::move(callback));
}

void Trainer::train() {
  std::optional<double> initial;
  if (step_ == 0 && num_validation_frames() > 0) initial = validation_loss();
  for (const auto& callback : callbacks_) callback->on_train_begin(*this, initial);
  while (step_ < options_.steps) {
    StepInfo info = step();
    const bool validation_due = step_ % options_.validation_every == 0 || step_ == options_.steps;
    if (validation_due && num_validation_frames() > 0) info.validation_loss = validation_loss();
    for (const auto& callback : callbacks_) callback->on_step_end(*this, info);
  }
  for (const auto& callback : callbacks_) callback->on_train_end(*this);
}

StepInfo Trainer::step() {
  const double lr = learning_rate(options_, step_);
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);

  const torch::Tensor rows =
      torch::randint(train_.num_frames(), {options_.batch_size}, rng_, torch::kInt64)
          .to(train_.positions.device());
  const torch::Tensor x0 = train_.positions.index_select(0, rows);
  const torch::Tensor forces =
      train_.has_forces() ? train_.forces.index_select(0, rows) : torch::Tensor();
  const LossOutput out = loss_and_gradients(x0, forces);
  const double max_norm =
      options_.grad_clip > 0 ? options_.grad_clip : std::numeric_limits<double>::infinity();
  const double grad_norm = torch::nn::utils::clip_grad_norm_(model_->parameters(), max_norm);
  optimizer_->step();
  ++step_;
  update_ema();
  return {.step = step_,
          .learning_rate = lr,
          .loss = out.loss.item<double>(),
          .grad_norm = grad_norm,
          .per_sample_loss = out.per_sample.to(torch::kFloat64),
          .sigma = out.sigma.detach().to(torch::kFloat64),
          .validation_loss = std::nullopt};
}

LossOutput Trainer::loss_and_gradients(const torch::Tensor& x0, const torch::Tensor& forces) {
  optimizer_->zero_grad();
  if (ranks_.size() == 1) {
    LossOutput out = diffusion_loss(as_score_fn(model_), x0, forces, train_.kT, loss_, rng_);
    out.loss.backward();
    return out;
  }
  // The draws of diffusion_loss for the whole minibatch, in its order, on every rank.
  const int64_t batch = x0.size(0);
  const torch::Tensor sigma = sample_training_sigmas(loss_.schedule, batch, rng_, x0.options());
  const torch::Tensor noise = gaussian_noise(x0.sizes(), rng_, x0.options(), loss_.com_free);
  const auto [begin, end] = ranks_.block(batch);
  const auto block = [&](const torch::Tensor& t) {
    return t.defined() ? t.slice(0, begin, end) : t;
  };
  const LossOutput part = diffusion_loss(as_score_fn(model_), block(x0), block(forces),
                                         block(sigma), block(noise), train_.kT, loss_);
  // The block's share of the minibatch mean; summed over the ranks, the gradient of the mean.
  (part.loss * (static_cast<double>(end - begin) / static_cast<double>(batch))).backward();
  allreduce_gradients();
  // Rank 0, which reports, gets the whole minibatch's per-sample losses and noise levels.
  const torch::Tensor per_sample = ranks_.gather(part.per_sample.cpu());
  const torch::Tensor sigmas = ranks_.gather(part.sigma.detach().cpu());
  if (!ranks_.is_root()) return part;
  return {per_sample.mean(), per_sample, sigmas};
}

void Trainer::allreduce_gradients() {
  using Clock = std::chrono::steady_clock;
  const auto arrived = Clock::now();
  ranks_.barrier();
  const auto start = Clock::now();
  waiting_seconds_ += std::chrono::duration<double>(start - arrived).count();
  // A parameter the loss does not reach has no gradient, on every rank alike (the graph is the
  // architecture's); it stays without one, as for one process, where Adam skips it.
  std::vector<torch::Tensor> grads;
  for (const auto& parameter : model_->parameters()) {
    if (parameter.grad().defined()) grads.push_back(parameter.grad());
  }
  std::vector<torch::Tensor> flat_grads;
  for (const auto& grad : grads) flat_grads.push_back(grad.flatten());
  const torch::Tensor flat = torch::cat(flat_grads).cpu();
  communicated_bytes_ = static_cast<int64_t>(flat.nbytes());
  const torch::Tensor summed = ranks_.allreduce_sum(flat).to(grads.front().device());
  int64_t offset = 0;
  for (auto& grad : grads) {
    grad.copy_(summed.slice(0, offset, offset + grad.numel()).view_as(grad));
    offset += grad.numel();
  }
  communication_seconds_ += std::chrono::duration<double>(Clock::now() - start).count();
}

void Trainer::update_ema() {
  torch::NoGradGuard no_grad;
  const double warm = static_cast<double>(1 + step_) / static_cast<double>(10 + step_);
  const double decay = std::min(options_.ema_decay, warm);
  const auto params = model_->parameters();
  auto averages = ema_->parameters();
  for (size_t i = 0; i < params.size(); ++i) averages[i].mul_(decay).add_(params[i], 1 - decay);
}

double Trainer::validation_loss() const {
  check(num_validation_frames() > 0,
        "validation loss: the run has no validation frames (validation_fraction = 0)");
  torch::NoGradGuard no_grad;
  torch::Generator rng = make_generator(options_.seed, kValidationStream);
  const ScoreFn score = as_score_fn(ema_);
  double total = 0;
  const int64_t frames = validation_.num_frames();
  for (int64_t start = 0; start < frames; start += options_.batch_size) {
    const int64_t end = std::min(frames, start + options_.batch_size);
    const torch::Tensor forces =
        validation_.has_forces() ? validation_.forces.slice(0, start, end) : torch::Tensor();
    const LossOutput out = diffusion_loss(score, validation_.positions.slice(0, start, end), forces,
                                          validation_.kT, loss_, rng);
    total += out.per_sample.sum().item<double>();
  }
  return total / static_cast<double>(frames);
}

CheckpointInfo Trainer::info() const {
  return {.step = step_,
          .sigma_data = sigma_data_,
          .network = model_->options.network(),
          .loss = loss_,
          .trainer = options_,
          .config_toml = record_.config_toml,
          .data = data_record_};
}

void Trainer::save_checkpoint(const std::filesystem::path& path) const {
  torch::serialize::OutputArchive archive;
  archive.write(checkpoint_keys::kMetadata, c10::IValue(to_json(info()).dump()));
  torch::serialize::OutputArchive model_archive;
  model_->save(model_archive);
  archive.write(checkpoint_keys::kModel, model_archive);
  torch::serialize::OutputArchive ema_archive;
  ema_->save(ema_archive);
  archive.write(checkpoint_keys::kEma, ema_archive);
  torch::serialize::OutputArchive optimizer_archive;
  optimizer_->save(optimizer_archive);
  archive.write(checkpoint_keys::kOptimizer, optimizer_archive);
  archive.write(checkpoint_keys::kRngState, rng_.get_state());
  write_atomically(path, [&](const std::filesystem::path& tmp) { archive.save_to(tmp.string()); });
}

void Trainer::resume(const std::filesystem::path& path) {
  // The weights and optimizer state land on the device the run trains on; set_ keeps them there.
  torch::serialize::InputArchive archive = open_checkpoint_archive(path, train_.positions.device());
  const CheckpointInfo saved = checkpoint_info_from_archive(archive, path);
  const nlohmann::json mine = to_json(info());
  const nlohmann::json theirs = to_json(saved);
  if (const auto key = first_difference(mine, theirs, {"network", "loss", "sigma_data", "data"})) {
    throw Error(
        fmt::format("{}: cannot resume: the checkpoint's '{}' differs from this run's "
                    "(was it written with another config or dataset?)",
                    path.string(), *key));
  }
  nlohmann::json my_trainer = mine.at("trainer");
  nlohmann::json their_trainer = theirs.at("trainer");
  for (const char* free_key : {"steps", "checkpoint_every", "validation_every", "log_every"}) {
    my_trainer.erase(free_key);
    their_trainer.erase(free_key);
  }
  for (const auto& [key, value] : my_trainer.items()) {
    check(their_trainer.value(key, nlohmann::json()) == value,
          fmt::format("{}: cannot resume: train.{} differs from the checkpoint's ({} here, {} "
                      "there)",
                      path.string(), key, value.dump(),
                      their_trainer.value(key, nlohmann::json()).dump()));
  }
  check(saved.step <= options_.steps,
        fmt::format("{}: cannot resume: the checkpoint is at step {}, beyond train.steps = {}",
                    path.string(), saved.step, options_.steps));

  read_module(archive, checkpoint_keys::kModel, *model_, path);
  read_module(archive, checkpoint_keys::kEma, *ema_, path);
  torch::serialize::InputArchive optimizer_archive;
  archive.read(checkpoint_keys::kOptimizer, optimizer_archive);
  optimizer_->load(optimizer_archive);
  torch::Tensor rng_state;
  archive.read(checkpoint_keys::kRngState, rng_state);
  rng_.set_state(rng_state.cpu());  // the minibatch generator is a CPU one
  step_ = saved.step;
}

}  // namespace psm
