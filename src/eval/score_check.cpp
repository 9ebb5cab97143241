#include "psm/eval/score_check.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "psm/core/error.h"
#include "psm/core/random.h"

namespace psm {

namespace {

ForceErrors force_errors(const torch::Tensor& forces, const torch::Tensor& reference) {
  const torch::Tensor difference = forces - reference;
  return {.mae = difference.abs().mean().item<double>(),
          .rms = difference.square().mean().sqrt().item<double>()};
}

}  // namespace

ScoreCheck check_score(const ScoreFn& score, const Dataset& frames,
                       const ScoreCheckOptions& options) {
  check(frames.num_frames() >= 2,
        fmt::format("score check: needs >= 2 frames, got {}", frames.num_frames()));
  check(options.sigma > 0, fmt::format("score check: sigma must be > 0, got {}", options.sigma));
  const double kT = frames.frames_kT();
  torch::NoGradGuard no_grad;
  torch::Generator rng = make_generator(options.seed);
  const torch::Tensor x0 = frames.positions.to(torch::kFloat64);
  const torch::Tensor noised =
      x0 + options.sigma * gaussian_noise(x0.sizes(), rng, x0.options(), options.com_free);
  std::vector<torch::Tensor> scores;
  for (int64_t start = 0; start < noised.size(0); start += options.batch_size) {
    const torch::Tensor x =
        noised.narrow(0, start, std::min(options.batch_size, noised.size(0) - start));
    scores.push_back(
        score(x, torch::full({x.size(0)}, options.sigma, x.options())).to(torch::kFloat64));
  }
  const torch::Tensor model_forces = kT * torch::cat(scores);
  check(torch::isfinite(model_forces).all().item<bool>(),
        "score check: the model gives non-finite scores on these frames");

  ScoreCheck result{.score_virial = virial_temperature(noised, model_forces)};
  torch::Tensor noised_forces;
  if (options.system != nullptr) {
    noised_forces = options.system->evaluate(noised).forces.to(torch::kFloat64);
    check(torch::isfinite(noised_forces).all().item<bool>(),
          "score check: the system gives non-finite forces on the noised frames");
    result.network_errors = force_errors(model_forces, noised_forces);
  }
  if (!frames.has_forces()) return result;
  result.forces_virial = virial_temperature(frames);
  const torch::Tensor forces = frames.forces.to(torch::kFloat64);
  result.slope = ((model_forces * forces).sum() / forces.square().sum()).item<double>();
  result.residual_rms = (model_forces - forces).square().mean().sqrt().item<double>();
  result.force_rms = forces.square().mean().sqrt().item<double>();
  result.force_errors = force_errors(model_forces, forces);
  if (noised_forces.defined()) result.exact_score_errors = force_errors(noised_forces, forces);
  return result;
}

std::string describe_score_strength(double score_virial_kT, double frames_kT) {
  const double strength = score_virial_kT / frames_kT;
  if (!(strength > 0)) {
    return "not positive: on average the score points away from the centre, which no Boltzmann "
           "distribution's score does";
  }
  return fmt::format(
      "the score is {:.4g} times as strong as the frames' (1 exact); a score c "
      "times too strong samples at about kT / c = {:.4g}",
      strength, frames_kT / strength);
}

}  // namespace psm
