#include "psm/systems/xtb.h"

#include <fmt/format.h>

#include <numeric>

#include "systems/internal/pair_geometry.h"
#include "psm/core/error.h"
#include "psm/core/units.h"

#ifdef PSM_WITH_XTB
#include <omp.h>
#include <xtb.h>

#include <atomic>
#include <exception>
#include <mutex>
#include <string_view>
#include <thread>
#include <type_traits>
#endif

namespace psm {

#ifdef PSM_WITH_XTB

namespace {

void validate(const XtbOptions& options) {
  check(!options.species.empty(), "Xtb: no atoms (species is empty)");
  for (size_t i = 0; i < options.species.size(); ++i) {
    const int64_t z = options.species[i];
    check(z >= 1 && z <= 86,
          fmt::format("Xtb: unknown element Z = {} for atom {} (GFN2-xTB covers Z = 1..86)", z, i));
  }
  const int64_t electrons =
      std::accumulate(options.species.begin(), options.species.end(), int64_t{0}) - options.charge;
  check(electrons >= 1,
        fmt::format("Xtb: charge {} leaves {} electrons", options.charge, electrons));
  check(options.uhf >= 0 && options.uhf <= electrons,
        fmt::format("Xtb: uhf must be in 0..{} (the electron count), got {}", electrons,
                    options.uhf));
  check((electrons - options.uhf) % 2 == 0,
        fmt::format("Xtb: uhf = {} does not match the parity of the {} electrons", options.uhf,
                    electrons));
  check(options.accuracy > 0,
        fmt::format("Xtb: accuracy must be positive, got {}", options.accuracy));
  check(options.electronic_temperature > 0,
        fmt::format("Xtb: electronic_temperature must be positive (K), got {}",
                    options.electronic_temperature));
  check(options.max_iterations >= 1,
        fmt::format("Xtb: max_iterations must be at least 1, got {}", options.max_iterations));
  check(
      options.threads >= 0,
      fmt::format("Xtb: threads must be >= 0 (0: as many as torch uses), got {}", options.threads));
}

/// Positions as float64 [B, N, 3], checked for shape, finiteness and atoms closer than
/// xtb_min_distance_angstrom (which can make xtb fail in ways that are hard to read).
torch::Tensor checked_geometry(const torch::Tensor& positions, int64_t num_atoms) {
  const auto x = detail::checked_positions(positions, num_atoms, 3, "Xtb");
  check(torch::isfinite(x).all().item<bool>(), "Xtb: positions contain NaN or Inf");
  // pair_geometry pads the diagonal with 1 Å^2, above the threshold, so only real pairs show.
  const double min2 = xtb_min_distance_angstrom * xtb_min_distance_angstrom;
  const auto too_close = detail::pair_geometry(x).distance_squared < min2;
  if (too_close.any().item<bool>()) {
    const auto first = too_close.nonzero()[0];
    const int64_t frame = first[0].item<int64_t>(), i = first[1].item<int64_t>(),
                  j = first[2].item<int64_t>();
    throw Error(fmt::format("Xtb: atoms {} and {} of frame {} are {:.3f} Å apart (minimum {} Å)", i,
                            j, frame, (x[frame][i] - x[frame][j]).norm().item<double>(),
                            xtb_min_distance_angstrom));
  }
  return x;
}

// Owning handles for the xtb objects, released with the matching xtb_del* function.
template <class Handle, void (*Delete)(Handle*)>
struct HandleDeleter {
  void operator()(Handle handle) const { Delete(&handle); }
};
template <class Handle, void (*Delete)(Handle*)>
using Owned = std::unique_ptr<std::remove_pointer_t<Handle>, HandleDeleter<Handle, Delete>>;

using Environment = Owned<xtb_TEnvironment, xtb_delEnvironment>;
using Molecule = Owned<xtb_TMolecule, xtb_delMolecule>;
using Calculator = Owned<xtb_TCalculator, xtb_delCalculator>;
using Results = Owned<xtb_TResults, xtb_delResults>;

/// One xtb context (environment, molecule, GFN2 calculator), used by one thread
/// at a time. After a failure the environment keeps its error state, so a failed workspace is
/// dropped rather than reused.
class Workspace {
 public:
  /// @param positions_bohr [N * 3] of any valid geometry, Bohr (xtb needs one to set up)
  Workspace(const XtbOptions& options, const double* positions_bohr)
      : num_atoms_(static_cast<int>(options.species.size())), environment_(xtb_newEnvironment()) {
    check(environment_ != nullptr, "Xtb: could not create an xtb environment");
    xtb_setVerbosity(environment_.get(), XTB_VERBOSITY_MUTED);
    const std::vector<int> numbers(options.species.begin(), options.species.end());
    const double charge = static_cast<double>(options.charge);
    const int uhf = static_cast<int>(options.uhf);
    molecule_.reset(xtb_newMolecule(environment_.get(), &num_atoms_, numbers.data(), positions_bohr,
                                    &charge, &uhf, nullptr, nullptr));
    throw_on_error("setting up the molecule");
    calculator_.reset(xtb_newCalculator());
    xtb_loadGFN2xTB(environment_.get(), molecule_.get(), calculator_.get(), nullptr);
    throw_on_error("loading GFN2-xTB");
    xtb_setAccuracy(environment_.get(), calculator_.get(), options.accuracy);
    xtb_setElectronicTemp(environment_.get(), calculator_.get(), options.electronic_temperature);
    xtb_setMaxIter(environment_.get(), calculator_.get(), static_cast<int>(options.max_iterations));
    throw_on_error("configuring the calculator");
  }

  /// @param positions_bohr [N * 3], Bohr
  /// @param[out] gradient [N * 3], Hartree/Bohr
  /// @return energy, Hartree
  double singlepoint(const double* positions_bohr, double* gradient) {
    xtb_updateMolecule(environment_.get(), molecule_.get(), positions_bohr, nullptr);
    throw_on_error("updating the geometry");
    // Fresh results for every frame: reused ones would start the SCF from the previous frame's
    // wavefunction and make energies depend (at ~1e-12 Hartree) on the order of evaluation.
    const Results results(xtb_newResults());
    xtb_singlepoint(environment_.get(), molecule_.get(), calculator_.get(), results.get());
    throw_on_error("the single point");
    double energy = 0.0;
    xtb_getEnergy(environment_.get(), results.get(), &energy);
    xtb_getGradient(environment_.get(), results.get(), gradient);
    throw_on_error("reading the results");
    return energy;
  }

 private:
  /// Turns xtb's multi-line error log ("-2- scf: ...\n-1- ...") into one psm::Error line.
  void throw_on_error(std::string_view step) {
    if (xtb_checkEnvironment(environment_.get()) == 0) return;
    std::string buffer(2048, '\0');
    const int size = static_cast<int>(buffer.size());
    xtb_getError(environment_.get(), buffer.data(), &size);
    buffer.resize(buffer.find('\0'));
    std::string message;
    for (size_t start = 0; start < buffer.size();) {
      size_t end = buffer.find('\n', start);
      if (end == std::string::npos) end = buffer.size();
      std::string_view line(buffer.data() + start, end - start);
      if (line.starts_with('-')) line.remove_prefix(std::min(line.find(' ') + 1, line.size()));
      if (!line.empty()) message += fmt::format("{}{}", message.empty() ? "" : "; ", line);
      start = end + 1;
    }
    throw Error(
        fmt::format("xtb failed in {}: {}", step, message.empty() ? "no message" : message));
  }

  int num_atoms_;
  Environment environment_;  // declared first: destroyed after the objects created with it
  Molecule molecule_;
  Calculator calculator_;
};

}  // namespace

/// Idle workspaces, reused across calls and shared by concurrent callers.
struct Xtb::Impl {
  std::mutex mutex;
  std::vector<std::unique_ptr<Workspace>> idle;

  std::unique_ptr<Workspace> acquire(const XtbOptions& options, const double* positions_bohr) {
    {
      std::lock_guard lock(mutex);
      if (!idle.empty()) {
        auto workspace = std::move(idle.back());
        idle.pop_back();
        return workspace;
      }
    }
    return std::make_unique<Workspace>(options, positions_bohr);
  }

  void release(std::unique_ptr<Workspace> workspace) {
    std::lock_guard lock(mutex);
    idle.push_back(std::move(workspace));
  }
};

Xtb::Xtb(XtbOptions options) : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  validate(options_);
}

Xtb::~Xtb() = default;

Evaluation Xtb::evaluate(const torch::Tensor& positions, EvalRequest request) const {
  const auto num_atoms = static_cast<int64_t>(options_.species.size());
  const auto x = checked_geometry(positions, num_atoms);
  const auto bohr = (x / constants::bohr_in_angstrom).cpu().contiguous();
  const int64_t frames = x.size(0);
  auto energy = torch::empty({frames}, bohr.options());
  auto gradient = torch::empty({frames, num_atoms, 3}, bohr.options());

  const double* bohr_data = bohr.data_ptr<double>();
  double* energy_data = energy.data_ptr<double>();
  double* gradient_data = gradient.data_ptr<double>();
  const int64_t stride = num_atoms * 3;
  const int64_t workers =
      std::min<int64_t>(frames, options_.threads > 0 ? options_.threads : at::get_num_threads());

  // Workers take frames from a shared counter; the first failure stops the others.
  std::atomic<int64_t> next{0};
  std::vector<std::exception_ptr> failures(workers);
  auto work = [&](int64_t worker) {
    // xtb and OpenBLAS would start one OpenMP team per worker and oversubscribe the cores;
    // the setting is per thread, so the caller's own OpenMP settings are untouched.
    omp_set_num_threads(1);
    try {
      std::unique_ptr<Workspace> workspace;
      for (int64_t frame = next++; frame < frames; frame = next++) {
        const double* frame_bohr = bohr_data + frame * stride;
        try {
          if (!workspace) workspace = impl_->acquire(options_, frame_bohr);
          energy_data[frame] = workspace->singlepoint(frame_bohr, gradient_data + frame * stride);
        } catch (const Error& e) {
          throw Error(fmt::format("Xtb: frame {}: {}", frame, e.what()));
        }
      }
      if (workspace) impl_->release(std::move(workspace));
    } catch (...) {
      failures[worker] = std::current_exception();
      next = frames;
    }
  };
  {
    std::vector<std::jthread> threads;
    for (int64_t worker = 0; worker < workers; ++worker) threads.emplace_back(work, worker);
  }
  for (const auto& failure : failures) {
    if (failure) std::rethrow_exception(failure);
  }

  Evaluation out;
  out.energy = (energy * constants::hartree_in_kcal_mol).to(positions.device());
  if (request.forces) {
    constexpr double kcal_mol_angstrom_per_hartree_bohr =
        constants::hartree_in_kcal_mol / constants::bohr_in_angstrom;
    out.forces = (-kcal_mol_angstrom_per_hartree_bohr * gradient).to(positions.device());
  }
  return out;
}

#else  // !PSM_WITH_XTB

struct Xtb::Impl {};

Xtb::Xtb(XtbOptions options) : options_(std::move(options)) {
  throw Error("psm was built without xtb (reconfigure with -DPSM_WITH_XTB=ON and libxtb)");
}

Xtb::~Xtb() = default;

Evaluation Xtb::evaluate(const torch::Tensor&, EvalRequest) const {
  throw Error("psm was built without xtb");
}

#endif

}  // namespace psm
