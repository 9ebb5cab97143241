// The stages that make the experiment's training sets and models: sets, train, sample.

#include <fmt/format.h>

#include <algorithm>

#include "experiment/internal/experiment_run.h"
#include "psm/core/atomic_file.h"
#include "psm/core/error.h"
#include "psm/core/random.h"
#include "psm/data/subsets.h"
#include "psm/systems/labelling.h"
#include "psm/train/checkpoint.h"
#include "psm/train/model_likelihood.h"
#include "psm/train/model_sampling.h"
#include "psm/train/training_run.h"

namespace psm::stages {

namespace {

/// Set `index` of the experiment made from the pool. Kinds temperature and basin sample new
/// frames: read_experiment_config lets them through only with a [system], whose potential they
/// use.
Dataset make_training_set(const ExperimentRun& run, size_t index, const fs::path& file) {
  const ExperimentConfig& experiment = run.experiment;
  const TrainingSetSpec& set = experiment.sets[index];
  const ExperimentSystem& system = *run.system;
  const Dataset& pool = run.pool;
  const uint64_t seed = derive_seed(derive_seed(experiment.seed, kSetStream), index);
  switch (set.kind) {
    case SubsetKind::limited:
      check(set.frames <= pool.num_frames(),
            fmt::format("set {}: frames = {} exceeds the pool's {} frames", set.name, set.frames,
                        pool.num_frames()));
      return limited_subset(pool, set.frames, seed);
    case SubsetKind::temperature: {
      const Dataset hot =
          simulated(system, reference_settings(run, *set.kT_data, set.frames, seed), file);
      return temperature_biased_subset(hot, system.kT, std::nullopt, seed);
    }
    case SubsetKind::basin:
      return basin_biased_subset(*system.system, pool,
                                 {.frames = set.frames, .kT = set.kT_data, .seed = seed});
    case SubsetKind::energy: {
      const Dataset selected = energy_selected_subset(pool, {.quantile = set.quantile});
      return limited_subset(selected, std::min(set.frames, selected.num_frames()), seed);
    }
    case SubsetKind::torsion:
      break;
  }
  throw Error(
      fmt::format("set {}: kind {} is not a kind of [[sets]]", set.name, to_string(set.kind)));
}

/// Trains (or finishes training) the model of `slot` into `dir`; returns its checkpoint.
fs::path train_model(const ExperimentRun& run, const ModelSlot& slot, const fs::path& dir) {
  // Under several ranks the lines of the models interleave: each names its set.
  const std::string variant = run.options.ranks.size() > 1
                                  ? run.set_of(slot).name + "/" + run.variant_of(slot)
                                  : run.variant_of(slot);
  const Config config = training_config(run.experiment, run.set_of(slot),
                                        run.set_files[slot.set].string(), run.variant_of(slot));
  const fs::path checkpoint = dir / "checkpoint.pt";
  const bool shared = run.options.spread == ModelSpread::data;
  const bool speaks = !shared || run.options.ranks.is_root();
  if (training_finished(config, dir)) {
    if (speaks) run.say(fmt::format("  {:<28} trained (exists: {})", variant, checkpoint.string()));
    return checkpoint;
  }
  const bool resume = fs::exists(checkpoint);
  TrainingRun training(config, dir,
                       {.resume = resume,
                        .progress = run.options.progress && run.options.ranks.is_root(),
                        .device = run.options.device,
                        .ranks = shared ? run.options.ranks : Communicator()});
  if (const auto note = training.sigma_max_note(); note && speaks) run.say("  note: " + *note);
  const int64_t first_step = training.trainer().step_count();
  const auto start = std::chrono::steady_clock::now();
  const int64_t steps = training.train();
  if (speaks) {
    run.say(fmt::format(
        "  {:<28} {} steps in {:.0f} s{} -> {}", variant, steps, seconds_since(start),
        resume ? fmt::format(" (resumed at step {})", first_step) : "", checkpoint.string()));
  }
  return checkpoint;
}

/// Every sample of a model diverged: the run reports the model as failed and goes on.
class SamplesDiverged : public Error {
  using Error::Error;
};

/// Beside a model's samples file: why its sampling failed, so that reruns report the failure
/// rather than sample again (--fresh clears it).
fs::path failure_marker(const fs::path& samples_file) {
  return fs::path(samples_file).replace_extension(".failed");
}

/// Samples the trained model of `slot`, labelled with the system's energies and forces.
/// Without a potential (no [system]) the samples have positions only. With sample.likelihood
/// also their log q and log importance weights.
Dataset sample_model(const ExperimentRun& run, const ModelSlot& slot, uint64_t seed,
                     const std::string& what) {
  const TrainedModel trained = load_trained_model(*slot.checkpoint, run.options.device);
  const bool progress = run.options.progress && run.options.ranks.is_root();
  SamplerOptions sampler = sampler_options_for(trained.info, run.experiment.sampler);
  sampler.seed = seed;
  std::optional<ModelLikelihood> likelihood;
  if (run.experiment.likelihood) {
    likelihood = ModelLikelihood{
        .options = likelihood_for_sampling(trained.info, sampler, *run.experiment.likelihood,
                                           "[sample] likelihood"),
        .device = run.options.device,
        .progress = progress,
        .label = "likelihood " + what};
  }
  ModelSamples drawn = sample_trained_model(trained, run.experiment.sample_count,
                                            {.checkpoint = *slot.checkpoint,
                                             .sampler = sampler,
                                             .device = run.options.device,
                                             .progress = progress,
                                             .label = "sample " + what});
  if (drawn.diverged == drawn.drawn) {
    throw SamplesDiverged(
        "every sample diverged (non-finite positions): try more sample.steps, or retrain");
  }
  if (drawn.diverged > 0) {
    run.say(
        fmt::format("  note: {} of {} samples of {} diverged (non-finite positions) and are left "
                    "out; the report counts the rest (try more sample.steps)",
                    drawn.diverged, drawn.drawn, what));
  }
  Dataset samples = std::move(drawn.dataset);
  samples.provenance["command"] = "psm run";
  const ExperimentSystem& system = *run.system;
  if (system.system) {
    const int64_t failed = label_dataset(*system.system, samples);
    if (failed > 0) {
      run.say(
          fmt::format("  note: {} of {} samples of {} have no finite energy (clashing atoms{})",
                      failed, samples.num_frames(), what,
                      system.units == Units::kcal_mol_angstrom ? ", or xtb failed on them" : ""));
    }
  }
  if (likelihood) {
    // After the energies: the importance weights need them.
    add_likelihood(samples, trained, *likelihood);
    const std::optional<double> ess = effective_sample_fraction(samples);
    run.say(fmt::format("  {:<28} mean log q {:.4g}{}", what, samples.log_q.mean().item<double>(),
                        ess ? fmt::format(", Kish ESS {:.3f}", *ess) : ""));
  }
  return samples;
}

/// Makes the samples of `slot` (`make`), or loads them or the record of why they failed.
void sample_slot(const ExperimentRun& run, ModelSlot& slot, bool make) {
  const std::string what = run.set_of(slot).name + "_" + run.variant_of(slot);
  const fs::path file = run.options.out / "samples" / (what + ".npz");
  const fs::path marker = failure_marker(file);
  if (fs::exists(marker)) {
    slot.failure = read_text(marker);
    if (make) {
      run.say(fmt::format("  {:<28} failed before: {} ({})", what, slot.failure, marker.string()));
    }
    return;
  }
  if (!make && !fs::exists(file)) return;
  const uint64_t seed =
      derive_seed(derive_seed(run.experiment.seed, kSampleStream), slot.set * 1000 + slot.variant);
  // Samples another rank made were reported there.
  const auto log = [&](const std::string& line) {
    if (make || !slot.selected) run.say(line);
  };
  try {
    slot.samples = cached_dataset(
        file, what, [&] { return sample_model(run, slot, seed, what); }, log);
  } catch (const SamplesDiverged& diverged) {
    write_text_atomically(marker, diverged.what());
    run.say(fmt::format("  {:<28} failed: {}", what, diverged.what()));
    slot.failure = diverged.what();
  }
}

}  // namespace

void sets_stage(ExperimentRun& run) {
  say("[2/5] training sets");
  for (size_t i = 0; i < run.experiment.sets.size(); ++i) {
    const TrainingSetSpec& set = run.experiment.sets[i];
    const fs::path file = run.set_file(set);
    run.set_files.push_back(file);
    if (!run.any_selected(i) && !fs::exists(file)) {
      run.set_frames.push_back(0);
      continue;
    }
    const std::string what = fmt::format("{} ({})", set.name, to_string(set.kind));
    run.set_frames.push_back(
        cached_dataset(file, what, [&] { return make_training_set(run, i, file); }).num_frames());
  }
}

void train_stage(ExperimentRun& run) {
  if (run.options.ranks.is_root()) say("[3/5] training");
  const auto dir_of = [&](const ModelSlot& slot) {
    return run.options.out / "models" / run.set_of(slot).name / run.variant_of(slot);
  };
  for (ModelSlot& slot : run.models) {
    if (slot.variant == 0 && run.any_selected(slot.set) && run.options.ranks.is_root()) {
      say(fmt::format("  set {}", run.set_of(slot).name));
    }
    if (run.trains_here(slot)) slot.checkpoint = train_model(run, slot, dir_of(slot));
  }
  run.options.ranks.wait_for_all();  // the models other ranks trained are done
  for (ModelSlot& slot : run.models) {
    if (!slot.checkpoint && fs::exists(dir_of(slot) / "checkpoint.pt")) {
      slot.checkpoint = dir_of(slot) / "checkpoint.pt";
    }
  }
}

void sample_stage(ExperimentRun& run) {
  if (run.options.ranks.is_root()) say("[4/5] sampling");
  for (ModelSlot& slot : run.models) {
    if (run.samples_here(slot) || (!slot.selected && run.options.ranks.is_root())) {
      sample_slot(run, slot, run.samples_here(slot));
    }
  }
  run.options.ranks.wait_for_all();  // the samples other ranks drew are written
  if (!run.options.ranks.is_root()) return;
  for (ModelSlot& slot : run.models) {
    if (slot.selected && !run.samples_here(slot)) sample_slot(run, slot, false);
  }
}

}  // namespace psm::stages
