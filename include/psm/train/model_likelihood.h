#pragma once
// The log-density of frames under a trained checkpoint, and the importance weights of its
// samples: the one path that `psm sample --likelihood`, `psm likelihood` and `psm eval` share.

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "psm/diffusion/likelihood.h"
#include "psm/diffusion/sampler.h"
#include "psm/io/dataset.h"
#include "psm/train/checkpoint.h"

namespace psm {

/// `base` with the noise range (sigma_min, sigma_max) and com_free of the checkpoint's training
/// schedule: the density is that of the model's probability-flow ODE over its own range.
LikelihoodOptions likelihood_options_for(const CheckpointInfo& info, LikelihoodOptions base);

struct ModelLikelihood {
  LikelihoodOptions options;  ///< as used (see likelihood_options_for)
  torch::Device device = torch::kCPU;
  bool progress = false;             ///< progress bar on stderr
  std::string label = "likelihood";  ///< of the progress bar
};

/// log q of `frames` [F, N, D] (float64) under the trained model (its EMA weights), on the CPU.
/// Throws psm::Error when the frames do not match the checkpoint's atoms.
LogDensity trained_model_log_density(const TrainedModel& trained, const torch::Tensor& frames,
                                     const ModelLikelihood& likelihood);

/// Sets samples.log_q and log_q_error from the trained model and, when the samples have
/// energies, log_weights = -U/kT - log q at samples.kT; records the likelihood options in the
/// provenance ("likelihood"). The samples must have been drawn by the probability-flow ODE
/// (check_likelihood_sampler), with the final denoising step exactly when
/// likelihood.options.denoised, for q to be their density.
void add_likelihood(Dataset& samples, const TrainedModel& trained,
                    const ModelLikelihood& likelihood);

/// Throws psm::Error naming `context` unless `sampler` draws samples whose density the
/// probability-flow ODE gives: the heun solver without corrector steps.
void check_likelihood_sampler(const SamplerOptions& sampler, const std::string& context);

/// The likelihood options for samples about to be drawn with `sampler`: checks it
/// (check_likelihood_sampler), and returns `base` for the checkpoint (likelihood_options_for)
/// with the sampler's batch size, seed and final denoising step, validated. Errors name
/// `context`.
LikelihoodOptions likelihood_for_sampling(const CheckpointInfo& info, const SamplerOptions& sampler,
                                          LikelihoodOptions base, const std::string& context);

/// Kish ESS fraction of samples.log_weights, or none when they have no weights.
std::optional<double> effective_sample_fraction(const Dataset& samples);

}  // namespace psm
