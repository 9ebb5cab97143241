// psm._psm: the Python binding of the psm library, re-exported by the package psm
// (python/psm/__init__.py). Functions and small classes over the library calls that the `psm`
// commands make; no logic of its own. Arrays cross as numpy float64, tensors leave without a
// copy; long calls release the GIL and stop on Ctrl-C (see WithoutGil).

#include <fmt/format.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "psm/core/allocator.h"
#include "psm/core/error.h"
#include "psm/core/memory.h"
#include "psm/core/progress.h"
#include "psm/core/run_lock.h"
#include "psm/core/units.h"
#include "psm/data/subsets.h"
#include "psm/data/thermal_check.h"
#include "psm/diffusion/sampler.h"
#include "psm/diffusion/schedule.h"
#include "psm/eval/sample_evaluation.h"
#include "psm/eval/weighted_metrics.h"
#include "psm/io/dataset.h"
#include "psm/simulate/simulation.h"
#include "psm/systems/labelling.h"
#include "psm/systems/molecule.h"
#include "psm/systems/potential.h"
#include "psm/train/callbacks.h"
#include "psm/train/checkpoint.h"
#include "psm/train/model_likelihood.h"
#include "psm/train/model_sampling.h"
#include "psm/train/training_run.h"

namespace py = pybind11;
namespace fs = std::filesystem;

namespace psm::python {

namespace {

// ---- conversions -------------------------------------------------------------------------

/// JSON through Python's json module: dicts, lists, numbers, strings, booleans and None.
nlohmann::json to_json(const py::handle& object) {
  if (object.is_none()) return nullptr;
  const py::object dumps = py::module_::import("json").attr("dumps");
  const py::object plain = py::module_::import("psm._support").attr("json_default");
  const std::string text = dumps(object, py::arg("default") = plain).cast<std::string>();
  return nlohmann::json::parse(text);
}

py::object from_json(const nlohmann::json& value) {
  if (value.is_null()) return py::none();
  return py::module_::import("json").attr("loads")(value.dump());
}

/// The tensor's memory as a numpy array, without a copy: the array owns a reference to it.
py::object to_numpy(const torch::Tensor& tensor) {
  if (!tensor.defined()) return py::none();
  auto* owner = new torch::Tensor(tensor.cpu().contiguous());
  py::capsule capsule(owner, [](void* p) { delete static_cast<torch::Tensor*>(p); });
  py::dtype dtype = py::dtype::of<double>();
  switch (owner->scalar_type()) {
    case torch::kFloat64:
      break;
    case torch::kFloat32:
      dtype = py::dtype::of<float>();
      break;
    case torch::kInt64:
      dtype = py::dtype::of<int64_t>();
      break;
    default:
      throw Error(fmt::format("no numpy type for tensor type {}", toString(owner->scalar_type())));
  }
  std::vector<py::ssize_t> shape(owner->sizes().begin(), owner->sizes().end());
  std::vector<py::ssize_t> strides;
  for (const int64_t stride : owner->strides()) {
    strides.push_back(static_cast<py::ssize_t>(stride * owner->element_size()));
  }
  return py::array(dtype, shape, strides, owner->data_ptr(), capsule);
}

/// A float64 tensor holding a copy of `object` (any array-like of numbers; an ase.Atoms gives
/// its positions). Throws psm::Error naming `what` otherwise.
torch::Tensor to_tensor(const py::handle& object, const std::string& what) {
  py::object source = py::reinterpret_borrow<py::object>(object);
  if (py::hasattr(source, "get_positions")) source = source.attr("get_positions")();
  auto array = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(source);
  if (!array) {
    PyErr_Clear();
    throw Error(fmt::format("{}: expected an array of numbers, got {}", what,
                            py::str(py::type::of(source)).cast<std::string>()));
  }
  const std::vector<int64_t> shape(array.shape(), array.shape() + array.ndim());
  return torch::from_blob(const_cast<double*>(array.data()), shape, torch::kFloat64).clone();
}

/// Positions as a batch [B, N, D]: one configuration [N, D] (or one ase.Atoms) becomes B = 1,
/// a list of ase.Atoms is stacked. `single` tells the caller to drop the batch axis again.
torch::Tensor to_batch(const py::handle& object, const std::string& what, bool& single) {
  if (py::isinstance<py::list>(object) || py::isinstance<py::tuple>(object)) {
    const auto items = py::reinterpret_borrow<py::sequence>(object);
    if (py::len(items) > 0 && py::hasattr(items[0], "get_positions")) {
      std::vector<torch::Tensor> frames;
      for (const auto& item : items) frames.push_back(to_tensor(item, what));
      single = false;
      return torch::stack(frames);
    }
  }
  torch::Tensor positions = to_tensor(object, what);
  single = positions.dim() == 2;
  if (single) positions = positions.unsqueeze(0);
  check(positions.dim() == 3,
        fmt::format("{}: expected positions [N, D] or [B, N, D], got {} dimensions", what,
                    positions.dim()));
  return positions;
}

torch::Tensor optional_tensor(const py::object& object, const std::string& what) {
  return object.is_none() ? torch::Tensor() : to_tensor(object, what);
}

// ---- progress, the GIL and Ctrl-C --------------------------------------------------------

/// Runs `work` without the GIL. Every progress bar the library updates meanwhile (on this
/// thread) calls `progress(done, total)` at most 5 times a second, and the last update of each
/// bar, with the GIL held; a pending Ctrl-C (KeyboardInterrupt) is raised from there, which
/// unwinds the C++ work (files are written atomically, so none is left half-written) and
/// reaches Python as KeyboardInterrupt.
template <typename Work>
auto without_gil(const py::object& progress, Work&& work) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point last_call{};
  const py::handle callback = progress;  // borrowed: the caller keeps it alive
  ProgressObserverScope scope([&](const std::string&, int64_t done, int64_t total) {
    const auto now = Clock::now();
    if (done < total && now - last_call < std::chrono::milliseconds(200)) return;
    last_call = now;
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!callback.is_none()) callback(done, total);
  });
  py::gil_scoped_release release;
  return work();
}

/// The progress callable for a call's `progress` argument: True gives psm's text bar on
/// sys.stderr labelled `label`, False or None nothing, a callable itself.
py::object progress_callable(const py::object& progress, const std::string& label) {
  if (progress.is_none()) return py::none();
  if (py::isinstance<py::bool_>(progress)) {
    if (!progress.cast<bool>()) return py::none();
    return py::module_::import("psm._support").attr("TextProgress")(label);
  }
  return progress;
}

// ---- datasets ----------------------------------------------------------------------------

std::string units_name(Units units) { return to_string(units); }

Dataset make_dataset(const py::object& positions, const py::object& species,
                     const py::object& forces, const py::object& energies, const std::string& units,
                     std::optional<double> kT, std::optional<double> temperature,
                     std::optional<double> sampled_kT, const py::object& system,
                     const py::object& provenance) {
  Dataset data;
  data.positions = to_tensor(positions, "positions");
  check(data.positions.dim() == 3,
        fmt::format("positions: expected [F, N, D], got {} dimensions", data.positions.dim()));
  if (species.is_none()) {
    data.species.assign(static_cast<size_t>(data.positions.size(1)), 0);
  } else {
    data.species = species.cast<std::vector<int64_t>>();
  }
  data.forces = optional_tensor(forces, "forces");
  data.energies = optional_tensor(energies, "energies");
  data.units = units_from_string(units);
  const Temperature target = read_temperature(kT, temperature, data.units, "dataset",
                                              {.kT = "kT", .kelvin = "temperature"})
                                 .value_or(default_temperature(data.units));
  data.kT = target.kT;
  data.temperature_kelvin = target.kelvin;
  data.sampled_kT = sampled_kT;
  data.system = to_json(system);
  data.provenance = provenance.is_none() ? nlohmann::json::object() : to_json(provenance);
  data.validate("dataset");
  return data;
}

/// A dataset argument: a psm.Dataset or the name of a file load_dataset reads.
struct DatasetArgument {
  Dataset data;
  fs::path source;
};

DatasetArgument dataset_argument(const py::object& object, const std::string& name) {
  if (py::isinstance<Dataset>(object)) return {object.cast<Dataset>(), name};
  const fs::path path = object.cast<fs::path>();
  return {load_dataset(path), path};
}

// ---- systems -----------------------------------------------------------------------------

/// A system and, for molecules given as a file, its frames as starting configurations.
struct PySystem {
  std::shared_ptr<const System> system;
  torch::Tensor start;
};

PySystem make_py_system(const std::string& name, const py::kwargs& options) {
  nlohmann::json spec = to_json(options);
  if (spec.is_null()) spec = nlohmann::json::object();
  spec["name"] = name;
  SystemWithStart made = make_system_with_molecule(spec);
  return {std::move(made.system), made.start};
}

PySystem system_argument(const py::object& object) {
  if (py::isinstance<PySystem>(object)) return object.cast<PySystem>();
  return make_py_system(object.cast<std::string>(), py::kwargs());
}

py::object evaluate(const PySystem& self, const py::object& positions, bool forces) {
  bool single = false;
  const torch::Tensor batch = to_batch(positions, "positions", single);
  const Evaluation result =
      without_gil(py::none(), [&] { return self.system->evaluate(batch, {.forces = forces}); });
  py::object energy =
      single ? py::object(py::float_(result.energy[0].item<double>())) : to_numpy(result.energy);
  if (!forces) return energy;
  return py::make_tuple(energy, to_numpy(single ? result.forces[0] : result.forces));
}

// ---- the commands ------------------------------------------------------------------------

Dataset simulate_system(const py::object& system_object, std::optional<double> kT,
                        std::optional<double> temperature, int64_t samples,
                        std::optional<std::string> sampler, std::optional<int64_t> chains,
                        std::optional<int64_t> burn_in, std::optional<int64_t> thin,
                        std::optional<double> step_size, std::optional<double> time_step,
                        std::optional<double> friction, double target_acceptance, bool forces,
                        uint64_t seed, const py::object& init, std::optional<fs::path> checkpoint,
                        int64_t checkpoint_every, bool resume, const py::object& progress,
                        std::optional<fs::path> out) {
  const PySystem chosen = system_argument(system_object);
  const System& system = *chosen.system;
  if (out) check_dataset_output(*out, system.dim());
  check(samples > 0, fmt::format("samples must be positive, got {}", samples));
  const Temperature target = read_temperature(kT, temperature, system.units(), system.name(),
                                              {.kT = "kT", .kelvin = "temperature"})
                                 .value_or(default_temperature(system.units()));
  SimulationSettings settings{.kT = target.kT,
                              .samples = samples,
                              .sampler = sampler,
                              .chains = chains,
                              .burn_in = burn_in,
                              .thin = thin,
                              .step_size = step_size,
                              .target_acceptance = target_acceptance,
                              .forces = forces,
                              .seed = seed,
                              .checkpoint = checkpoint.value_or(fs::path()),
                              .checkpoint_every = checkpoint_every,
                              .resume = resume,
                              .progress = false};
  set_langevin_time_from_user(settings, system.units(), time_step, friction);
  if (init.is_none()) {
    settings.initial_positions = chosen.start;
  } else if (py::isinstance<Dataset>(init)) {
    settings.initial_positions = init.cast<Dataset>().positions;
  } else {
    bool single = false;
    settings.initial_positions = to_batch(init, "init", single);
  }
  std::optional<RunLock> lock;
  if (checkpoint) lock = lock_state_file(*checkpoint);
  const py::object callback = progress_callable(progress, "simulate");
  SimulationOutcome outcome = without_gil(callback, [&] { return simulate(system, settings); });
  Dataset dataset = std::move(outcome.dataset);
  dataset.temperature_kelvin = target.kelvin;
  dataset.provenance["command"] = "psm.simulate";
  record_thermal_check(check_thermal_equilibrium(dataset, outcome.kinetic_series),
                       dataset.provenance);
  if (out) save_dataset(*out, dataset);
  return dataset;
}

Dataset make_subset(const py::object& source_object, const std::string& kind,
                    std::optional<int64_t> frames, std::optional<double> target_kT,
                    std::optional<double> energy_max, std::optional<double> quantile,
                    std::optional<std::array<int64_t, 4>> atoms,
                    std::optional<std::array<double, 2>> window, uint64_t seed,
                    std::optional<fs::path> out) {
  const DatasetArgument source = dataset_argument(source_object, "dataset");
  if (out) check_dataset_output(*out, source.data.dim());
  Dataset subset;
  switch (subset_kind_from_string(kind)) {
    case SubsetKind::limited:
      check(frames.has_value(), "subset limited needs frames");
      subset = limited_subset(source.data, *frames, seed);
      break;
    case SubsetKind::temperature:
      check(target_kT.has_value(), "subset temperature needs target_kT");
      subset = temperature_biased_subset(source.data, *target_kT, frames, seed);
      break;
    case SubsetKind::energy:
      subset = energy_selected_subset(source.data, {energy_max, quantile});
      break;
    case SubsetKind::torsion:
      check(atoms.has_value() && window.has_value(),
            "subset torsion needs atoms (a, b, c, d) and window (low, high)");
      subset = torsion_selected_subset(source.data, *atoms, (*window)[0], (*window)[1]);
      break;
    case SubsetKind::basin: {
      check(source.data.system.is_object(),
            fmt::format("{}: subset basin needs a dataset that names its system",
                        source.source.string()));
      const std::unique_ptr<System> system = make_system(source.data.system);
      BasinOptions options{.seed = seed};
      if (frames) options.frames = *frames;
      subset = without_gil(py::none(),
                           [&] { return basin_biased_subset(*system, source.data, options); });
      break;
    }
  }
  if (out) save_dataset(*out, subset);
  return subset;
}

py::dict train_model(const py::object& config_object, std::optional<fs::path> out,
                     const std::vector<std::string>& overrides, bool resume,
                     const py::object& progress) {
  Config config;
  fs::path run_dir;
  if (py::isinstance<py::dict>(config_object)) {
    config.tree = to_json(config_object);
    config.source = "<dict>";
    check(out.has_value(), "train: a config given as a dict needs out (the run directory)");
  } else {
    const fs::path path = config_object.cast<fs::path>();
    config = Config::from_toml_file(path);
    run_dir = fs::path("runs") / path.stem();
  }
  for (const auto& assignment : overrides) config.set(assignment);
  if (out) run_dir = *out;
  const RunLock lock = open_run_directory(run_dir, resume);
  const py::object callback = progress_callable(progress, "train");
  std::optional<double> validation;
  int64_t steps = 0;
  fs::path checkpoint;
  without_gil(callback, [&] {
    TrainingRun training(config, run_dir, {.resume = resume, .progress = false});
    training.trainer().add_callback(std::make_unique<LastValidationLoss>(validation));
    steps = training.train();
    checkpoint = training.checkpoint();
    return 0;
  });
  py::dict result;
  result["checkpoint"] = checkpoint.string();
  result["steps"] = steps;
  result["validation_loss"] = validation ? py::object(py::float_(*validation)) : py::none();
  return result;
}

Dataset sample_model(const fs::path& checkpoint, std::optional<int64_t> count, int64_t steps,
                     const std::string& solver, const std::string& grid, double rho,
                     std::optional<double> sigma_min, std::optional<double> sigma_max,
                     int64_t corrector_steps, double corrector_sigma_min,
                     std::optional<double> corrector_max_step, double snr, double churn,
                     double churn_sigma_min, std::optional<double> churn_sigma_max,
                     double churn_noise, double tolerance, const py::object& from, int64_t batch,
                     uint64_t seed, bool energies, bool likelihood, int64_t likelihood_steps,
                     std::optional<std::string> divergence, int64_t probes,
                     const py::object& progress, std::optional<fs::path> out) {
  int64_t n = count.value_or(10000);
  check(n > 0, fmt::format("psm.sample: n must be positive, got {}", n));
  if (out) check_dataset_output(*out);
  const TrainedModel trained = load_trained_model(checkpoint);
  const CheckpointInfo& info = trained.info;
  if (out) check_dataset_output(*out, info.dim());
  check_memory_fits(4.0 * static_cast<double>(n) * static_cast<double>(info.species().size()) *
                        static_cast<double>(info.dim()) * 8.0,
                    fmt::format("psm.sample: n {} of {} atoms", n, info.species().size()));
  SamplerOptions base{.steps = steps,
                      .rho = rho,
                      .corrector_steps = corrector_steps,
                      .snr = snr,
                      .corrector_sigma_min = corrector_sigma_min,
                      .batch_size = batch,
                      .seed = seed};
  if (corrector_max_step) base.corrector_max_step = *corrector_max_step;
  base.churn = churn;
  base.churn_sigma_min = churn_sigma_min;
  if (churn_sigma_max) base.churn_sigma_max = *churn_sigma_max;
  base.churn_noise = churn_noise;
  base.tolerance = tolerance;
  SamplerOptions sampler = sampler_options_for(info, base);
  sampler.solver = solver_from_string(solver);
  sampler.grid = sigma_grid_from_string(grid);
  sampler.sigma_min = sigma_min.value_or(sampler.sigma_min);
  sampler.sigma_max = sigma_max.value_or(sampler.sigma_max);
  sampler.validate("psm.sample");
  std::optional<ModelLikelihood> model_likelihood;
  if (likelihood) {
    check(from.is_none(),
          "psm.sample: likelihood and from_ exclude each other (renoised frames have no model "
          "density)");
    LikelihoodOptions base{.steps = likelihood_steps, .probes = probes};
    if (divergence) base.divergence = divergence_method_from_string(*divergence);
    model_likelihood = ModelLikelihood{
        .options = likelihood_for_sampling(info, sampler, base, "psm.sample(likelihood=True)")};
  }
  const ModelSampling sampling{.checkpoint = checkpoint, .sampler = sampler};
  torch::Tensor frames;
  std::string frames_source;
  if (!from.is_none()) {
    check(sigma_max.has_value(),
          "psm.sample: from needs sigma_max (the noise level to start from)");
    const DatasetArgument source = dataset_argument(from, "from");
    info.check_frames(source.data, source.source.string());
    if (!count) n = std::min(n, source.data.num_frames());
    check(n <= source.data.num_frames(),
          fmt::format("psm.sample: n {} but {} has {} frames", n, source.source.string(),
                      source.data.num_frames()));
    frames = source.data.positions.narrow(0, 0, n).to(torch::kFloat64);
    frames_source = source.source.string();
  }
  const py::object callback = progress_callable(progress, "sample");
  Dataset samples = without_gil(callback, [&] {
    ModelSamples drawn = frames.defined()
                             ? renoise_trained_model(trained, frames, frames_source, sampling)
                             : sample_trained_model(trained, n, sampling);
    check(drawn.diverged == 0,
          fmt::format("{}: sampling produced non-finite positions (try more steps or another "
                      "checkpoint)",
                      checkpoint.string()));
    drawn.dataset.provenance["command"] = "psm.sample";
    if (energies && !info.system().is_null()) {
      // As `psm sample`: samples stay unlabelled when the system cannot be built here or some
      // sample has a non-finite energy.
      std::unique_ptr<System> system;
      try {
        system = make_system(info.system());
      } catch (const Error&) {
      }
      if (system) label_dataset(*system, drawn.dataset, sampler.batch_size);
    }
    if (model_likelihood) add_likelihood(drawn.dataset, trained, *model_likelihood);
    return std::move(drawn.dataset);
  });
  if (out) save_dataset(*out, samples);
  return samples;
}

py::object score_of(const fs::path& checkpoint, const py::object& positions,
                    const py::object& sigma) {
  const TrainedModel trained = load_trained_model(checkpoint);
  bool single = false;
  const torch::Tensor x = to_batch(positions, "positions", single);
  Dataset frames;
  frames.positions = x;
  frames.species = trained.info.species();
  frames.units = trained.info.units();
  trained.info.check_frames(frames, "positions");
  torch::Tensor sigmas = to_tensor(sigma, "sigma").reshape({-1});
  if (sigmas.numel() == 1) sigmas = sigmas.expand({x.size(0)}).contiguous();
  check(sigmas.numel() == x.size(0),
        fmt::format("sigma: expected one value or one per configuration ({}), got {}", x.size(0),
                    sigmas.numel()));
  check((sigmas > 0).all().item<bool>(), "sigma: noise levels must be positive");
  const torch::Tensor score = without_gil(py::none(), [&] {
    torch::NoGradGuard no_grad;
    return trained.score()(x, sigmas).to(torch::kFloat64);
  });
  return to_numpy(single ? score[0] : score);
}

py::object evaluate_sets(const py::object& samples_object, const py::object& reference_object,
                         const fs::path& out, const py::object& system_object, int64_t n,
                         int64_t equivariant_n, int64_t xtb_frames, bool plots, bool weights,
                         double min_ess) {
  DatasetArgument samples = dataset_argument(samples_object, "samples");
  DatasetArgument reference = dataset_argument(reference_object, "reference");
  SampleEvaluationOptions options{.n = n,
                                  .equivariant_n = equivariant_n,
                                  .xtb_frames = xtb_frames,
                                  .plots = plots,
                                  .weights = weights,
                                  .min_ess = min_ess,
                                  .context = {{"command", "psm.eval"},
                                              {"samples", samples.source.string()},
                                              {"reference", reference.source.string()},
                                              {"n", n},
                                              {"xtb_frames", xtb_frames}}};
  if (!system_object.is_none()) {
    const PySystem system = system_argument(system_object);
    options.system = system.system;
    options.system_name = system.system->name();
  }
  const std::vector<int64_t> species = reference.data.species;
  const SampleEvaluation result = without_gil(py::none(), [&] {
    return evaluate_samples({std::move(samples.data), samples.source},
                            {std::move(reference.data), reference.source}, out, options);
  });
  py::dict metrics = from_json(result.row.metrics.to_json());
  if (result.row.molecular)
    metrics["molecular"] = from_json(result.row.molecular->to_json(species));
  if (result.weighted) metrics["weighted"] = from_json(result.weighted->to_json());
  return metrics;
}

}  // namespace

}  // namespace psm::python

PYBIND11_MODULE(_psm, m) {
  using namespace psm;
  using namespace psm::python;
  using py::arg;
  m.doc() = "psm: Boltzmann sampling of atomic systems with Potential Score Matching (native part)";
  // As the psm program does: without it each sampling or training step's large tensors are fresh,
  // page-faulting memory, which cost psm.sample about 5 % against the CLI.
  keep_freed_memory_for_reuse();

  // psm.Error: every psm::Error, with its one-line message.
  py::register_exception<Error>(m, "Error", PyExc_RuntimeError);

  py::class_<Dataset>(m, "Dataset", R"doc(
Frames of an atomic system with optional energy and force labels, their units and temperature.

Dataset(positions, species=None, *, forces=None, energies=None, units="reduced", kT=None,
        temperature=None, sampled_kT=None, system=None, provenance=None)

positions [F, N, D] float64 (reduced length, or Å for units "kcal/mol,angstrom"); species [N]
atomic numbers (0: identical model particles, the default); forces [F, N, D] (energy/length,
-dU/dx); energies [F]; kT the target k_B T in energy units, or temperature in K for molecules
(default kT 1 in reduced units, 500 K for molecules); sampled_kT the k_B T the frames were drawn
at when it differs; system the spec that rebuilds the potential, e.g. {"name": "lj13"}.
The arrays are copied in; the attributes return numpy views of the dataset's memory.)doc")
      .def(py::init(&make_dataset), arg("positions"), arg("species") = py::none(), py::kw_only(),
           arg("forces") = py::none(), arg("energies") = py::none(), arg("units") = "reduced",
           arg("kT") = py::none(), arg("temperature") = py::none(), arg("sampled_kT") = py::none(),
           arg("system") = py::none(), arg("provenance") = py::none())
      .def_property_readonly(
          "positions", [](const Dataset& d) { return to_numpy(d.positions); },
          "[F, N, D] float64 positions")
      .def_property_readonly(
          "forces", [](const Dataset& d) { return to_numpy(d.forces); },
          "[F, N, D] float64 forces, or None")
      .def_property_readonly(
          "energies", [](const Dataset& d) { return to_numpy(d.energies); },
          "[F] float64 energies, or None")
      .def_property_readonly(
          "log_q", [](const Dataset& d) { return to_numpy(d.log_q); },
          "[F] float64 log-density (nats) under the model that drew the frames, or None")
      .def_property_readonly(
          "log_q_error", [](const Dataset& d) { return to_numpy(d.log_q_error); },
          "[F] float64 estimated integration error of log_q (nats), or None")
      .def_property_readonly(
          "log_weights", [](const Dataset& d) { return to_numpy(d.log_weights); },
          "[F] float64 log importance weights -U/kT - log q (-inf: weight 0), or None")
      .def_readonly("species", &Dataset::species, "[N] atomic numbers (0: model particles)")
      .def_property_readonly(
          "units", [](const Dataset& d) { return units_name(d.units); },
          "'reduced' or 'kcal/mol,angstrom'")
      .def_readonly("kT", &Dataset::kT, "target k_B T, energy units")
      .def_readonly("sampled_kT", &Dataset::sampled_kT, "k_B T the frames were drawn at, or None")
      .def_readonly("temperature", &Dataset::temperature_kelvin, "target temperature in K, or None")
      .def_property_readonly(
          "system", [](const Dataset& d) { return from_json(d.system); },
          "spec of the system, e.g. {'name': 'lj13'}, or None")
      .def_property_readonly("provenance", [](const Dataset& d) { return from_json(d.provenance); })
      .def_property_readonly("num_frames", &Dataset::num_frames)
      .def_property_readonly("num_atoms", &Dataset::num_atoms)
      .def_property_readonly("dim", &Dataset::dim)
      .def("__len__", &Dataset::num_frames)
      .def(
          "select",
          [](const Dataset& d, const py::object& indices) {
            const torch::Tensor index =
                to_tensor(indices, "indices").to(torch::kInt64).reshape({-1});
            check(index.numel() == 0 || (index.min().item<int64_t>() >= 0 &&
                                         index.max().item<int64_t>() < d.num_frames()),
                  fmt::format("select: indices must lie in [0, {})", d.num_frames()));
            return d.select(index);
          },
          arg("indices"), "The frames at `indices` (ints), metadata kept.")
      .def(
          "save", [](const Dataset& d, const fs::path& path) { save_dataset(path, d); },
          arg("path"), "Writes .npz (psm's format) or extended XYZ (.xyz, .extxyz), atomically.")
      .def("__repr__", [](const Dataset& d) {
        return fmt::format("psm.Dataset({} frames, {} atoms x {}D, {} units, kT = {:.6g}{}{})",
                           d.num_frames(), d.num_atoms(), d.dim(), units_name(d.units), d.kT,
                           d.has_energies() ? ", energies" : "", d.has_forces() ? ", forces" : "");
      });

  m.def(
      "load",
      [](const fs::path& path, std::optional<double> temperature) {
        return load_dataset(path, {.temperature_kelvin = temperature});
      },
      arg("path"), arg("temperature") = py::none(),
      R"doc(Reads a dataset: psm .npz, rMD17 or sGDML .npz, or extended XYZ. `temperature` (K)
replaces the temperature the file declares (molecular data).)doc");
  m.def(
      "save", [](const Dataset& d, const fs::path& path) { save_dataset(path, d); }, arg("dataset"),
      arg("path"), "Writes `dataset` to `path` (.npz, .xyz, .extxyz), atomically.");

  py::class_<PySystem>(m, "System", R"doc(
A physical system with batched energies and forces: System(name, **options), e.g.
System("lj13"), System("lj", n=38), System("dw4"), System("xtb", molecule="ethanol.xyz").
The names are those of `psm systems` (psm.systems()); options are those of --system-option.)doc")
      .def(py::init(&make_py_system), arg("name"))
      .def_property_readonly("name", [](const PySystem& s) { return s.system->name(); })
      .def_property_readonly("species", [](const PySystem& s) { return s.system->species(); })
      .def_property_readonly("num_atoms", [](const PySystem& s) { return s.system->num_atoms(); })
      .def_property_readonly("dim", [](const PySystem& s) { return s.system->dim(); })
      .def_property_readonly("units",
                             [](const PySystem& s) { return units_name(s.system->units()); })
      .def_property_readonly("spec", [](const PySystem& s) { return from_json(s.system->spec()); })
      .def_property_readonly(
          "start", [](const PySystem& s) { return to_numpy(s.start); },
          "[F, N, D] frames of the molecule file, or None")
      .def(
          "energy", [](const PySystem& s, const py::object& x) { return evaluate(s, x, false); },
          arg("positions"),
          "Energies: positions [N, D] or an ase.Atoms -> float; [B, N, D] or a list of "
          "ase.Atoms -> [B]. Energy units of the system (kcal/mol for molecules).")
      .def(
          "energy_and_forces",
          [](const PySystem& s, const py::object& x) { return evaluate(s, x, true); },
          arg("positions"),
          "(energies, forces): as energy(), with forces -dU/dx [N, D] or [B, N, D].")
      .def("__repr__", [](const PySystem& s) {
        return fmt::format("psm.System({})", s.system->spec().dump());
      });

  m.def(
      "systems",
      [] {
        SystemRegistry registry("system");
        register_builtin_systems(registry);
        std::map<std::string, std::string> out;
        for (const auto& name : registry.names()) out[name] = registry.summary(name);
        return out;
      },
      "The systems System() accepts: {name: summary}.");

  m.def("simulate", &simulate_system, arg("system"), py::kw_only(), arg("kT") = py::none(),
        arg("temperature") = py::none(), arg("samples") = 10000, arg("sampler") = py::none(),
        arg("chains") = py::none(), arg("burn_in") = py::none(), arg("thin") = py::none(),
        arg("step_size") = py::none(), arg("time_step") = py::none(), arg("friction") = py::none(),
        arg("target_acceptance") = 0.5, arg("forces") = true, arg("seed") = 0,
        arg("init") = py::none(), arg("checkpoint") = py::none(), arg("checkpoint_every") = 10000,
        arg("resume") = false, arg("progress") = true, arg("out") = py::none(),
        R"doc(Reference samples by Metropolis MCMC or BAOAB Langevin dynamics, as `psm simulate`.

system: a System or a system name. kT (energy units) or temperature (K, molecules).
time_step in fs and friction in 1/ps for molecules (reduced units otherwise). init: a Dataset or
positions [F, N, D] starting the chains. checkpoint: a state file to resume from (resume=True).
progress: True (a text bar on stderr), False, or a callable progress(done, total).
out: also write the dataset there. Returns a Dataset with energies (and forces).)doc");

  m.def("subset", &make_subset, arg("dataset"), arg("kind"), py::kw_only(),
        arg("frames") = py::none(), arg("target_kT") = py::none(), arg("energy_max") = py::none(),
        arg("quantile") = py::none(), arg("atoms") = py::none(), arg("window") = py::none(),
        arg("seed") = 0, arg("out") = py::none(),
        R"doc(A limited or biased training set, as `psm data subset`.

kind: "limited" (frames), "temperature" (target_kT, optional frames), "energy" (energy_max or
quantile), "torsion" (atoms (a, b, c, d), window (low, high) in degrees) or "basin" (frames; the
dataset must name its system). dataset: a Dataset or a file name. Returns a Dataset.)doc");

  m.def("train", &train_model, arg("config"), py::kw_only(), arg("out") = py::none(),
        arg("set") = std::vector<std::string>(), arg("resume") = false, arg("progress") = true,
        R"doc(Trains a score model into a run directory, as `psm train`.

config: a TOML file name or a dict of the same tree ({"data": {"train": "lj13.npz"}, ...}).
set: overrides "key.path=value" (as --set). out: the run directory (default runs/<config
stem>; required for a dict). resume: continue from out/checkpoint.pt. progress: True (text bar
on stderr with the loss), False, or a callable progress(done, total).
Returns {"checkpoint": path, "steps": steps taken, "validation_loss": last or None}.
Ctrl-C stops training; the last periodic checkpoint remains and resume=True goes on from it.)doc");

  m.def("sample", &sample_model, arg("checkpoint"), py::kw_only(), arg("n") = py::none(),
        arg("steps") = 100, arg("solver") = "heun", arg("grid") = "edm", arg("rho") = 7.0,
        arg("sigma_min") = py::none(), arg("sigma_max") = py::none(), arg("corrector_steps") = 0,
        arg("corrector_sigma_min") = 0.0, arg("corrector_max_step") = py::none(), arg("snr") = 0.16,
        arg("churn") = 0.0, arg("churn_sigma_min") = 0.0, arg("churn_sigma_max") = py::none(),
        arg("churn_noise") = 1.0, arg("tolerance") = 0.02, arg("from_") = py::none(),
        arg("batch") = 1000, arg("seed") = 0, arg("energies") = true, arg("likelihood") = false,
        arg("likelihood_steps") = 100, arg("divergence") = py::none(), arg("probes") = 1,
        arg("progress") = true, arg("out") = py::none(),
        R"doc(Samples from a checkpoint (EMA weights), as `psm sample`; same options and defaults.

solver "heun" (probability-flow ODE), "sde", "edm" (stochastic Heun with churn in the band
[churn_sigma_min, churn_sigma_max]), "dpm2" (DPM-Solver++(2M)) or "adaptive" (Heun with
step-size control to tolerance); grid "edm" or "geometric"; sigma_min/sigma_max
default to the training schedule's. n: samples (default 10000; with from_, at most its
frames). from_: partial diffusion of a Dataset's (or file's) first n
frames from sigma_max. energies: label the samples with the checkpoint's system.
likelihood: also log q of each sample (probability-flow ODE of likelihood_steps Heun steps; needs
solver "heun"; q includes the final denoising step; divergence "exact" or "hutchinson" with
`probes` probes) and, with energies, the log importance weights: Dataset.log_q, log_q_error,
log_weights. Returns a
Dataset (positions [n, N, D] float64 without a copy); out: also write it there.)doc");

  m.def("score", &score_of, arg("checkpoint"), arg("positions"), arg("sigma"),
        R"doc(The model's score ∇_x log p_σ(x) (1/length) at positions [N, D] or [B, N, D] (or
ase.Atoms) and noise level(s) sigma (one value or [B], length units). Returns the same shape.)doc");

  m.def("eval", &evaluate_sets, arg("samples"), arg("reference"), py::kw_only(), arg("out"),
        arg("system") = py::none(), arg("n") = 0, arg("equivariant_n") = 0, arg("xtb_frames") = 200,
        arg("plots") = false, arg("weights") = false, arg("min_ess") = kDefaultMinEssFraction,
        R"doc(Metrics of samples against a reference, as `psm eval`: writes metrics.json and
report.md (and histograms when plots=True and gnuplot is installed) into `out`, and returns the
metrics as a dict (energy_w1, energy_w2, distance_tvd, ...; "molecular" for molecules).
samples, reference: Datasets or file names. system: computes energies for sets without them.
weights: also the metrics of the samples reweighted by their importance weights (samples from
sample(likelihood=True)), as result["weighted"] (ESS, degenerate, metrics, mean energies);
min_ess: the ESS fraction below which the weights are degenerate and not used.)doc");

  m.def(
      "set_threads", [](int threads) { torch::set_num_threads(std::max(1, threads)); },
      arg("threads"), "CPU threads for tensor work (as psm --threads).");
}
