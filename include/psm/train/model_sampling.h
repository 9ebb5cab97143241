#pragma once
// Samples of a trained checkpoint as a dataset with one provenance record: the one path that
// `psm sample` and the sampling stage of `psm run` both take.

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "psm/core/communicator.h"
#include "psm/diffusion/sampler.h"
#include "psm/io/dataset.h"
#include "psm/train/checkpoint.h"

namespace psm {

/// `base` with the noise range (sigma_min, sigma_max) and com_free of the checkpoint's training
/// schedule, where a sampler must start and stop for the model it integrates.
SamplerOptions sampler_options_for(const CheckpointInfo& info, SamplerOptions base);

struct ModelSampling {
  std::filesystem::path checkpoint;  ///< recorded in the provenance
  SamplerOptions sampler;            ///< as used (see sampler_options_for)
  torch::Device device = torch::kCPU;
  bool progress = false;         ///< progress bar on stderr
  std::string label = "sample";  ///< of the progress bar
  /// Ranks that share the sampler's chunks (sample_diffusion); rank 0 gets the samples.
  Communicator ranks{};
};

struct ModelSamples {
  /// The finite samples [F, N, D] float64 on the CPU, with the checkpoint's species, units, kT,
  /// temperature and system spec, and the provenance of sample_provenance (no energies).
  Dataset dataset;
  int64_t drawn = 0;     ///< samples integrated
  int64_t diverged = 0;  ///< of those, left out for non-finite positions
  /// Score evaluations per sample drawn, as counted (the adaptive solver's vary; also in the
  /// provenance as "score_evaluations")
  double score_evaluations = 0;
};

/// `count` configurations integrated from noise at sampler.sigma_max (sample_diffusion). Under
/// several sampling.ranks, rank 0 gets them all and the other ranks an empty dataset.
ModelSamples sample_trained_model(const TrainedModel& trained, int64_t count,
                                  const ModelSampling& sampling);

/// Partial diffusion: `frames` [B, N, D] float64 noised to sampler.sigma_max and integrated back
/// (renoise_and_integrate); the provenance names `frames_source`.
ModelSamples renoise_trained_model(const TrainedModel& trained, const torch::Tensor& frames,
                                   const std::string& frames_source, const ModelSampling& sampling);

/// The provenance of a samples file: the checkpoint, its training step and data, every sampler
/// option (to_json) and the number of diverged samples left out. The caller adds "command".
nlohmann::json sample_provenance(const CheckpointInfo& info, const ModelSampling& sampling,
                                 int64_t diverged);

}  // namespace psm
