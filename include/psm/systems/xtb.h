#pragma once
// GFN2-xTB energies and forces through libxtb. The xtb C API lives behind a private Impl, so
// this header does not need xtb.h; in a build without PSM_WITH_XTB the constructor throws.

#include <cstdint>
#include <memory>
#include <vector>

#include "psm/systems/potential.h"

namespace psm {

struct XtbOptions {
  std::vector<int64_t> species;           ///< atomic number Z of each atom, 1..86 (H..Rn)
  int64_t charge = 0;                     ///< total molecular charge, e
  int64_t uhf = 0;                        ///< number of unpaired electrons
  double accuracy = 1.0;                  ///< xtb accuracy factor (smaller is tighter)
  double electronic_temperature = 300.0;  ///< Fermi smearing temperature, K
  int64_t max_iterations = 250;           ///< SCF iteration limit
  int64_t threads = 0;                    ///< frames run in parallel; 0: at::get_num_threads()
};

/// Atoms closer than this (Å) are rejected before xtb sees them.
inline constexpr double xtb_min_distance_angstrom = 0.5;

/// GFN2-xTB for one molecule (fixed species, charge and spin), in vacuum.
///
/// A batch is split over `threads` worker threads; each uses its own xtb environment, molecule,
/// calculator and results (xtb objects must not be shared between threads), kept in a pool and
/// reused by later calls. evaluate() may be called from several threads at once.
class Xtb final : public Potential {
 public:
  /// Throws psm::Error on an element outside 1..86, a negative uhf, a uhf whose parity does not
  /// match the electron count, a non-positive accuracy, temperature or iteration limit, or when
  /// psm was built without xtb.
  explicit Xtb(XtbOptions options);
  ~Xtb() override;

  /// @param positions [B, N, 3], Å (any floating dtype; computed in float64)
  /// @return energy [B] float64, kcal/mol (GFN2-xTB total energy); forces [B, N, 3] float64,
  ///         kcal/mol/Å, present iff request.forces
  /// Throws psm::Error (with xtb's message) on a wrong shape, non-finite coordinates, atoms
  /// closer than xtb_min_distance_angstrom, or a failed xtb calculation (e.g. SCF not converged).
  Evaluation evaluate(const torch::Tensor& positions, EvalRequest request = {}) const override;

  const XtbOptions& options() const { return options_; }

 private:
  struct Impl;
  XtbOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace psm
