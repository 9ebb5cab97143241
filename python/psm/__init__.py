"""psm from Python: Boltzmann sampling of atomic systems with Potential Score Matching.

The functions and classes are those of the psm library, as the ``psm`` commands use them:

- ``Dataset``, ``load``, ``save``: frames [F, N, D] float64 with energies [F], forces [F, N, D],
  species, units ("reduced" or "kcal/mol,angstrom") and kT; files in psm's .npz, rMD17/sGDML
  .npz or extended XYZ.
- ``System`` and ``systems``: LJ clusters, DW4, GFN2-xTB; energies and forces of arrays or
  ``ase.Atoms``.
- ``simulate``, ``subset``, ``train``, ``sample``, ``score``, ``eval``: as ``psm simulate``,
  ``psm data subset``, ``psm train``, ``psm sample``, a checkpoint's score, ``psm eval``.
- ``to_atoms``, ``from_atoms``: conversions to and from ``ase.Atoms`` (when ASE is installed).

Failures raise ``psm.Error`` (a RuntimeError) with psm's one-line message. Long calls release
the GIL, show progress (``progress=True``: a text bar on ``sys.stderr``; a callable
``progress(done, total)``; or ``False``) and stop on Ctrl-C with ``KeyboardInterrupt``.
"""

from psm._psm import (
    Dataset,
    Error,
    System,
    eval,
    load,
    sample,
    save,
    score,
    set_threads,
    simulate,
    subset,
    systems,
    train,
)
from psm.atoms import from_atoms, to_atoms

for _cls in (Dataset, Error, System):
    _cls.__module__ = "psm"  # psm.Error, not psm._psm.Error, in tracebacks and reprs
del _cls

__all__ = [
    "Dataset",
    "Error",
    "System",
    "eval",
    "from_atoms",
    "load",
    "sample",
    "save",
    "score",
    "set_threads",
    "simulate",
    "subset",
    "systems",
    "to_atoms",
    "train",
]
