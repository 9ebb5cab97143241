#include "psm/train/model_likelihood.h"

#include <fmt/format.h>

#include <utility>

#include "psm/core/error.h"
#include "psm/core/progress.h"
#include "psm/diffusion/importance_weights.h"

namespace psm {

LikelihoodOptions likelihood_options_for(const CheckpointInfo& info, LikelihoodOptions base) {
  base.sigma_min = info.loss.schedule.sigma_min;
  base.sigma_max = info.loss.schedule.sigma_max;
  base.com_free = info.loss.com_free;
  return base;
}

void check_likelihood_sampler(const SamplerOptions& sampler, const std::string& context) {
  check(sampler.solver == Solver::heun && sampler.corrector_steps == 0,
        fmt::format("{}: likelihoods need samples of the probability-flow ODE (solver heun, no "
                    "corrector steps): the reverse SDE's samples have no tractable density",
                    context));
}

LikelihoodOptions likelihood_for_sampling(const CheckpointInfo& info, const SamplerOptions& sampler,
                                          LikelihoodOptions base, const std::string& context) {
  check_likelihood_sampler(sampler, context);
  LikelihoodOptions options = likelihood_options_for(info, std::move(base));
  options.denoised = sampler.denoise_final;
  options.batch_size = sampler.batch_size;
  options.seed = sampler.seed;
  options.validate(context);
  return options;
}

LogDensity trained_model_log_density(const TrainedModel& trained, const torch::Tensor& frames,
                                     const ModelLikelihood& likelihood) {
  check(frames.dim() == 3 &&
            frames.size(1) == static_cast<int64_t>(trained.info.species().size()) &&
            frames.size(2) == trained.info.dim(),
        fmt::format("likelihood: frames of {} atoms in {}-D do not match the checkpoint ({} atoms "
                    "in {}-D)",
                    frames.dim() == 3 ? frames.size(1) : 0, frames.dim() == 3 ? frames.size(2) : 0,
                    trained.info.species().size(), trained.info.dim()));
  LazyProgressBar bar(likelihood.label, likelihood.progress);
  LogDensity density = log_density(trained.score(), frames.to(likelihood.device, torch::kFloat64),
                                   likelihood.options, bar.callback());
  bar.finish();
  density.log_q = density.log_q.cpu();
  if (density.error.defined()) density.error = density.error.cpu();
  return density;
}

void add_likelihood(Dataset& samples, const TrainedModel& trained,
                    const ModelLikelihood& likelihood) {
  const LogDensity density = trained_model_log_density(trained, samples.positions, likelihood);
  samples.log_q = density.log_q;
  samples.log_q_error = density.error;
  samples.log_weights = samples.has_energies()
                            ? log_importance_weights(samples.energies, samples.kT, samples.log_q)
                            : torch::Tensor();
  nlohmann::json record = to_json(likelihood.options);
  record["divergence"] = to_string(divergence_method(
      likelihood.options,
      effective_dim(samples.num_atoms(), samples.dim(), likelihood.options.com_free)));
  samples.provenance["likelihood"] = record;
}

std::optional<double> effective_sample_fraction(const Dataset& samples) {
  if (!samples.log_weights.defined()) return std::nullopt;
  return kish_ess_fraction(samples.log_weights);
}

}  // namespace psm
