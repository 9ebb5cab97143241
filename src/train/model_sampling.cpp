#include "psm/train/model_sampling.h"

#include <optional>

#include "psm/core/progress.h"

namespace psm {

namespace {

std::optional<double> optional_number(const nlohmann::json& record, const char* key) {
  const nlohmann::json value = record.value(key, nlohmann::json());
  return value.is_number() ? std::optional<double>(value.get<double>()) : std::nullopt;
}

/// The trained model's score, counting the configurations it evaluates into `evaluated`.
ScoreFn counted_score(const TrainedModel& trained, int64_t& evaluated) {
  return [score = trained.score(), &evaluated](const torch::Tensor& x, const torch::Tensor& sigma) {
    evaluated += x.size(0);
    return score(x, sigma);
  };
}

/// The finite rows of `positions` as a dataset of the checkpoint's system; `evaluated`:
/// configurations the score evaluated to draw them.
ModelSamples as_model_samples(const torch::Tensor& positions, const CheckpointInfo& info,
                              const ModelSampling& sampling, int64_t evaluated) {
  ModelSamples out;
  out.drawn = positions.size(0);
  out.score_evaluations = static_cast<double>(evaluated) / static_cast<double>(out.drawn);
  Dataset& samples = out.dataset;
  samples.positions = finite_samples(positions.cpu());
  out.diverged = out.drawn - samples.positions.size(0);
  samples.species = info.species();
  samples.units = info.units();
  samples.kT = info.kT();
  samples.temperature_kelvin = optional_number(info.data, "temperature_kelvin");
  samples.system = info.system();
  samples.provenance = sample_provenance(info, sampling, out.diverged);
  samples.provenance["score_evaluations"] = out.score_evaluations;
  return out;
}

/// as_model_samples on rank 0 of sampling.ranks, with the score evaluations of all ranks; an
/// empty ModelSamples on the others.
ModelSamples gathered_samples(const torch::Tensor& positions, const CheckpointInfo& info,
                              const ModelSampling& sampling, int64_t evaluated) {
  const int64_t all_evaluated =
      sampling.ranks.allreduce_sum(torch::tensor(evaluated, torch::kInt64)).item<int64_t>();
  if (!sampling.ranks.is_root()) return {};
  return as_model_samples(positions, info, sampling, all_evaluated);
}

}  // namespace

SamplerOptions sampler_options_for(const CheckpointInfo& info, SamplerOptions base) {
  base.sigma_min = info.loss.schedule.sigma_min;
  base.sigma_max = info.loss.schedule.sigma_max;
  base.com_free = info.loss.com_free;
  return base;
}

ModelSamples sample_trained_model(const TrainedModel& trained, int64_t count,
                                  const ModelSampling& sampling) {
  const CheckpointInfo& info = trained.info;
  LazyProgressBar bar(sampling.label, sampling.progress);
  int64_t evaluated = 0;
  const torch::Tensor positions = sample_diffusion(
      counted_score(trained, evaluated), count, static_cast<int64_t>(info.species().size()),
      info.dim(), sampling.sampler, torch::dtype(torch::kFloat64).device(sampling.device),
      bar.callback(), sampling.ranks);
  bar.finish();
  return gathered_samples(positions, info, sampling, evaluated);
}

ModelSamples renoise_trained_model(const TrainedModel& trained, const torch::Tensor& frames,
                                   const std::string& frames_source,
                                   const ModelSampling& sampling) {
  LazyProgressBar bar(sampling.label, sampling.progress);
  int64_t evaluated = 0;
  const torch::Tensor positions =
      renoise_and_integrate(counted_score(trained, evaluated), frames.to(sampling.device),
                            sampling.sampler, bar.callback(), sampling.ranks);
  bar.finish();
  ModelSamples out = gathered_samples(positions, trained.info, sampling, evaluated);
  if (sampling.ranks.is_root()) out.dataset.provenance["renoised_frames"] = frames_source;
  return out;
}

nlohmann::json sample_provenance(const CheckpointInfo& info, const ModelSampling& sampling,
                                 int64_t diverged) {
  nlohmann::json record = {{"checkpoint", sampling.checkpoint.string()},
                           {"training_step", info.step},
                           {"training_data", info.data.value("source", "")}};
  record.update(to_json(sampling.sampler));
  record["diverged"] = diverged;
  return record;
}

}  // namespace psm
